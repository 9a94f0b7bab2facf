//! Hostile programs: each case tries to escape or exhaust the host and asserts it was contained. They run with the
//! real sandbox and real CPython; as root (what CI does) they check full isolation.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::TcpListener;

use common::*;
use pyexec_core::ExecutionStatus;
use pyexec_testkit::{require, skip};

/// Runs `code`, which prints one verdict per line, and returns the lines.
async fn verdicts(code: &str, metadata: &str) -> Vec<String> {
    let r = exec(&format!("{HOST_UID_PRELUDE}{PROBE}{code}"), metadata).await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    assert_eq!(r.exit_code, 0, "{r:?}");
    if let Some(uid) = host_uid_of(&r.stdout) {
        assert!(uid != 0, "the program ran as host root");
        assert!(sandbox_processes(Some(uid)).is_empty(), "survivors: {:?}", sandbox_processes(Some(uid)));
    }
    r.stdout.lines().filter(|l| !l.starts_with("host-uid")).map(str::to_owned).collect()
}

/// `attempt(name, fn)` prints `name: allowed` or `name: blocked <exception>`.
const PROBE: &str = r#"
def attempt(name, f):
    try:
        f()
        print(f"{name}: allowed")
    except BaseException as e:
        print(f"{name}: blocked {type(e).__name__} {getattr(e, 'errno', '')}")
"#;

fn blocked(lines: &[String], name: &str) {
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name}: no verdict in {lines:?}"));
    assert!(line.contains("blocked"), "{line}");
}

#[tokio::test]
async fn the_program_is_an_unprivileged_user_never_host_root() {
    let lines = verdicts(
        "import os\nprint('ids', os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n\
         print(open('/proc/self/uid_map').read().split())\n\
         print([l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs', 'Seccomp:'))])",
        "{}",
    )
    .await;
    assert_eq!(lines[0], "ids 1000 1000 1000 []");
    let map: Vec<u64> = lines[1]
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|s| s.trim_matches('\'').parse().unwrap())
        .collect();
    assert_eq!(map[0], 1000);
    assert_ne!(map[1], 0, "uid 1000 maps to a non-root host uid");
    assert_eq!(map[2], 1, "only one uid is mapped");
    assert_eq!(lines[2], "['0000000000000000', '0000000000000000', '1', '2']");
}

#[tokio::test]
async fn host_kernel_settings_cannot_be_written() {
    let lines = verdicts(
        "attempt('core_pattern', lambda: open('/proc/sys/kernel/core_pattern', 'w').write('|/tmp/x'))\n\
         attempt('printk_ratelimit', lambda: open('/proc/sys/kernel/printk_ratelimit', 'w').write('5'))\n\
         attempt('drop_caches', lambda: open('/proc/sys/vm/drop_caches', 'w').write('3'))\n\
         attempt('sysrq', lambda: open('/proc/sysrq-trigger', 'w').write('b'))\n\
         attempt('kcore', lambda: open('/proc/kcore', 'rb').read(1))\n\
         attempt('sys', lambda: __import__('os').listdir('/sys'))",
        "{}",
    )
    .await;
    for name in ["core_pattern", "printk_ratelimit", "drop_caches", "sysrq", "kcore", "sys"] {
        blocked(&lines, name);
    }
}

#[tokio::test]
async fn host_files_and_the_servers_files_are_invisible() {
    let exe = std::env::current_exe().unwrap();
    let state = state_dir();
    let code = format!(
        "import os\n\
         attempt('shadow', lambda: open('/etc/shadow').read())\n\
         attempt('root home', lambda: open('/root/.profile').read())\n\
         attempt('server binary', lambda: open({exe:?}, 'rb').read(1))\n\
         attempt('server state', lambda: os.listdir({state:?}))\n\
         attempt('host passwd has host users', lambda: [][0] if 'sandbox' in open('/etc/passwd').read() else None)\n\
         print('root:', sorted(os.listdir('/')))\n\
         print('etc:', sorted(os.listdir('/etc')))",
        exe = exe.display().to_string(),
        state = state.display().to_string(),
    );
    let lines = verdicts(&code, "{}").await;
    for name in ["shadow", "root home", "server binary", "server state", "host passwd has host users"] {
        blocked(&lines, name);
    }
    let root = lines.iter().find(|l| l.starts_with("root:")).unwrap();
    for absent in ["'home'", "'var'", "'run'", "'sys'", "'boot'", "'srv'", "'mnt'"] {
        assert!(!root.contains(absent), "{root}");
    }
}

#[tokio::test]
async fn host_processes_are_invisible_and_unsignalable() {
    let me = std::process::id();
    let code = format!(
        "import os, signal\n\
         print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n\
         attempt('signal server', lambda: os.kill({me}, 0))\n\
         attempt('signal init', lambda: os.kill(1, signal.SIGKILL))"
    );
    let lines = verdicts(&code, "{}").await;
    assert_eq!(lines[0], "pids [1, 2]", "only the sandbox's init and the program exist");
    blocked(&lines, "signal server");
    blocked(&lines, "signal init");
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    let code = "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('forked', n, type(e).__name__)\n";
    let started = std::time::Instant::now();
    let lines = verdicts(code, r#"{"config":{"timeout_seconds":30}}"#).await;
    let forked: u64 = lines[0].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(forked < 256, "{lines:?}");
    assert!(lines[0].ends_with("BlockingIOError"), "{lines:?}");
    assert!(started.elapsed().as_secs() < 20, "sleeping children did not outlive the program");
}

#[tokio::test]
async fn shell_fork_bomb_is_killed_at_the_timeout_with_no_survivors() {
    let code = format!(
        "{HOST_UID_PRELUDE}import subprocess\nsubprocess.run(['/bin/sh', '-c', ':(){{ :|:& }};:'])\nimport time\ntime.sleep(60)"
    );
    let r = exec(&code, r#"{"config":{"timeout_seconds":3}}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124), "{r:?}");
    let uid = host_uid_of(&r.stdout);
    assert!(uid.is_some());
    assert!(sandbox_processes(uid).is_empty(), "{:?}", sandbox_processes(uid));
}

#[tokio::test]
async fn busy_loop_with_forked_children_leaves_no_survivor_at_timeout() {
    let code = format!(
        "{HOST_UID_PRELUDE}import os\nfor _ in range(4):\n    if os.fork() == 0:\n        os.setsid()\n        while True:\n            pass\nwhile True:\n    pass"
    );
    let r = exec(&code, r#"{"config":{"timeout_seconds":2}}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124));
    assert_eq!(r.error.as_deref(), Some("execution timeout after 2s"));
    let uid = host_uid_of(&r.stdout);
    assert!(uid.is_some());
    assert!(sandbox_processes(uid).is_empty(), "{:?}", sandbox_processes(uid));
}

#[tokio::test]
async fn daemons_die_with_the_program() {
    let code = format!(
        "{HOST_UID_PRELUDE}import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(120)\n    os._exit(0)\nprint('parent done')"
    );
    let r = exec(&code, "{}").await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let uid = host_uid_of(&r.stdout);
    assert!(sandbox_processes(uid).is_empty(), "{:?}", sandbox_processes(uid));
}

#[tokio::test]
async fn memory_bomb_is_killed() {
    if !full_isolation().await {
        return skip(require::FULL_ISOLATION, "memory_bomb_is_killed", "needs cgroups (reduced isolation)");
    }
    let r = exec("x = []\nwhile True:\n    x.append(' ' * (1 << 24))", r#"{"config":{"memory_mb":100}}"#).await;
    assert_eq!((r.status, r.exit_code, r.oom_killed), (ExecutionStatus::Completed, 137, true));
    // Files in tmpfs count towards memory too: /dev/shm cannot be used to escape the limit.
    let r = exec(
        "import os\nfor i in range(64):\n    open(f'/dev/shm/f{i}', 'wb').write(os.urandom(1 << 20))\nx = bytearray(80 << 20)",
        r#"{"config":{"memory_mb":100}}"#,
    )
    .await;
    assert_eq!((r.exit_code, r.oom_killed), (137, true), "{r:?}");
}

#[tokio::test]
async fn disk_and_tmpfs_fill_stop_at_their_caps() {
    let code = "def fill(path):\n    n = 0\n    try:\n        with open(path, 'wb') as f:\n            while True:\n                f.write(b'x' * (1 << 20))\n                f.flush()\n                n += 1\n    except OSError as e:\n        print(path, n, e.errno)\n\
                fill('/work/big')\nfill('/tmp/big')\nfill('/dev/shm/big')";
    let lines = verdicts(code, r#"{"config":{"disk_mb":8,"memory_mb":512}}"#).await;
    let mib = |l: &str| -> u64 { l.split_whitespace().nth(1).unwrap().parse().unwrap() };
    assert!(lines[0].starts_with("/work/big") && mib(&lines[0]) <= 8 && lines[0].ends_with(" 28"), "{lines:?}");
    // ENOSPC (28) from the tmpfs, or EFBIG (27) from the file-size limit, whichever comes first.
    let full = |l: &str| l.ends_with(" 28") || l.ends_with(" 27");
    assert!(lines[1].starts_with("/tmp/big") && mib(&lines[1]) <= 100 && full(&lines[1]), "{lines:?}");
    assert!(lines[2].starts_with("/dev/shm/big") && mib(&lines[2]) <= 100 && full(&lines[2]), "{lines:?}");
}

#[tokio::test]
async fn writing_outside_work_and_tmp_fails() {
    let lines = verdicts(
        "import os\n\
         attempt('usr', lambda: open('/usr/evil', 'w'))\n\
         attempt('etc', lambda: open('/etc/passwd', 'a'))\n\
         attempt('root', lambda: os.mkdir('/evil'))\n\
         attempt('dev', lambda: open('/dev/evil', 'w'))\n\
         attempt('chmod', lambda: os.chmod('/etc/passwd', 0o777))\n\
         attempt('work', lambda: open('/work/ok', 'w').write('x'))\n\
         attempt('tmp', lambda: open('/tmp/ok', 'w').write('x'))\n\
         attempt('devnull', lambda: open('/dev/null', 'w').write('x'))",
        "{}",
    )
    .await;
    for name in ["usr", "etc", "root", "dev", "chmod"] {
        blocked(&lines, name);
    }
    for name in ["work", "tmp", "devnull"] {
        assert!(lines.iter().any(|l| l == &format!("{name}: allowed")), "{name}: {lines:?}");
    }
}

#[tokio::test]
async fn dangerous_system_calls_are_refused() {
    let lines = verdicts(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         def call(name, *args):\n    r = getattr(libc, name)(*args)\n    if r == -1:\n        raise OSError(ctypes.get_errno(), name)\n\
         attempt('ptrace', lambda: call('ptrace', 0, 0, 0, 0))\n\
         attempt('mount', lambda: call('mount', b'none', b'/tmp', b'tmpfs', 0, None))\n\
         attempt('unshare user', lambda: call('unshare', 0x10000000))\n\
         attempt('unshare net', lambda: call('unshare', 0x40000000))\n\
         attempt('keyctl', lambda: call('syscall', 250, 0, 0, 0, 0))\n\
         attempt('bpf', lambda: call('syscall', 321, 0, 0, 0))\n\
         attempt('userfaultfd', lambda: call('syscall', 323, 0))\n\
         attempt('io_uring', lambda: call('syscall', 425, 1, 0))\n\
         attempt('perf_event_open', lambda: call('syscall', 298, 0, 0, -1, -1, 0))\n\
         attempt('setns', lambda: call('setns', os.open('/proc/1/ns/net', os.O_RDONLY), 0))\n\
         attempt('chroot', lambda: call('chroot', b'/tmp'))\n\
         attempt('sethostname', lambda: call('sethostname', b'evil', 4))\n\
         attempt('x32 abi', lambda: call('syscall', 0x40000000 + 39))\n\
         attempt('thread', lambda: __import__('threading').Thread(target=print).start())",
        "{}",
    )
    .await;
    for name in [
        "ptrace",
        "mount",
        "unshare user",
        "unshare net",
        "keyctl",
        "bpf",
        "userfaultfd",
        "io_uring",
        "perf_event_open",
        "setns",
        "chroot",
        "sethostname",
        "x32 abi",
    ] {
        blocked(&lines, name);
    }
    assert!(lines.iter().any(|l| l == "thread: allowed"), "threads still work: {lines:?}");
}

#[tokio::test]
async fn nested_user_namespaces_and_setuid_binaries_grant_nothing() {
    let lines = verdicts(
        "import subprocess, os, stat\n\
         r = subprocess.run(['/usr/bin/unshare', '-U', '-r', 'id', '-u'], capture_output=True, text=True)\n\
         print('unshare', r.returncode != 0)\n\
         setuid = [p for p in ('/usr/bin/mount', '/usr/bin/su', '/usr/bin/passwd', '/usr/bin/chfn', '/usr/bin/newgrp') \
                   if os.path.exists(p) and os.stat(p).st_mode & stat.S_ISUID]\n\
         print('setuid binaries', len(setuid) > 0)\n\
         for p in setuid:\n\
         \x20   r = subprocess.run([p, '-c', 'id -u'] if p.endswith('su') else [p, '-t', 'tmpfs', 'none', '/tmp'] if p.endswith('mount') else [p], capture_output=True, text=True, input='id -u\\n')\n\
         \x20   print(p, 'root' if r.stdout.strip() == '0' else 'denied', r.returncode)",
        "{}",
    )
    .await;
    assert_eq!(lines[0], "unshare True");
    for line in &lines[2..] {
        assert!(line.contains("denied"), "a setuid binary gained privileges: {line}");
    }
    eprintln!("setuid binaries tried: {:?}", &lines[2..]);
}

#[tokio::test]
async fn the_host_network_is_unreachable_with_network_off() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_ip = host_address();
    let code = format!(
        "import socket\n\
         attempt('host loopback', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=3))\n\
         attempt('host address', lambda: socket.create_connection(('{host_ip}', {port}), timeout=3))\n\
         attempt('metadata', lambda: socket.create_connection(('169.254.169.254', 80), timeout=3))\n\
         attempt('internet', lambda: socket.create_connection(('1.1.1.1', 443), timeout=3))\n\
         attempt('dns', lambda: socket.getaddrinfo('pypi.org', 443))\n\
         attempt('own loopback', lambda: socket.socket().bind(('127.0.0.1', 8000)))"
    );
    let lines = verdicts(&code, "{}").await;
    for name in ["host loopback", "host address", "metadata", "internet", "dns"] {
        blocked(&lines, name);
    }
    assert!(lines.iter().any(|l| l == "own loopback: allowed"), "{lines:?}");
    let mut buf = [0u8; 1];
    match listener.accept() {
        Ok((mut s, _)) => panic!("the sandbox reached the host: {:?}", s.read(&mut buf)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}

#[tokio::test]
async fn egress_reaches_neither_host_nor_private_ranges() {
    let runner = runner().await;
    let mut spec = pyexec_core::Policy::default()
        .spec_from_metadata(serde_json::from_str(r#"{"config":{"network_disabled":false}}"#).unwrap())
        .unwrap();
    spec.entrypoint = Some("main.py".into());
    if let Err(e) = runner.check(&spec) {
        assert!(e.message.contains("cannot give it safely"), "{}", e.message);
        return skip(require::EGRESS, "egress_reaches_neither_host_nor_private_ranges", &e.message);
    }
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_ip = host_address();
    let code = format!(
        "import socket\n\
         attempt('host loopback', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=3))\n\
         attempt('host address', lambda: socket.create_connection(('{host_ip}', {port}), timeout=3))\n\
         attempt('metadata', lambda: socket.create_connection(('169.254.169.254', 80), timeout=3))\n\
         attempt('private 10/8', lambda: socket.create_connection(('10.0.0.1', 80), timeout=3))\n\
         attempt('private 192.168/16', lambda: socket.create_connection(('192.168.0.1', 80), timeout=3))\n\
         attempt('ipv6 loopback', lambda: socket.create_connection(('::1', {port}), timeout=3))\n\
         attempt('nft flush', lambda: __import__('subprocess').run(['nft', 'flush', 'ruleset'], check=True, capture_output=True))"
    );
    let lines = verdicts(&code, r#"{"config":{"network_disabled":false}}"#).await;
    for name in [
        "host loopback",
        "host address",
        "metadata",
        "private 10/8",
        "private 192.168/16",
        "ipv6 loopback",
        "nft flush",
    ] {
        blocked(&lines, name);
    }
    assert!(listener.accept().is_err(), "the sandbox reached the host");
}

/// A non-loopback address of this host.
fn host_address() -> String {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks the route and the source address.
    match socket.connect("192.0.2.1:9") {
        Ok(()) => socket.local_addr().unwrap().ip().to_string(),
        Err(_) => "127.0.0.2".into(),
    }
}

#[tokio::test]
async fn pid_1_shows_nothing_of_the_server() {
    // The server here is this test binary: its command line names the binary and the test filter.
    let own_cmdline = std::fs::read("/proc/self/cmdline").unwrap();
    assert!(own_cmdline.iter().any(|&b| b != 0));
    let lines = verdicts(
        "cmd = open('/proc/1/cmdline', 'rb').read()\n\
         print('cmdline', len(cmd), sum(1 for b in cmd if b))\n\
         print('comm', open('/proc/1/comm').read().strip())\n\
         attempt('environ', lambda: open('/proc/1/environ', 'rb').read() or 1/0)\n\
         attempt('exe', lambda: __import__('os').readlink('/proc/1/exe'))\n\
         attempt('mem', lambda: open('/proc/1/mem', 'rb').read(1))",
        "{}",
    )
    .await;
    let cmdline: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(cmdline[2], "0", "pid 1's command line holds only zeros: {lines:?}");
    assert_eq!(lines[1], "comm init");
    for name in ["environ", "exe", "mem"] {
        blocked(&lines, name);
    }
}

#[tokio::test]
async fn socket_families_outside_the_network_namespace_are_refused() {
    let lines = verdicts(
        "import socket, errno\n\
         def family(name, fam, kind=socket.SOCK_STREAM, proto=0):\n    \
             try:\n        \
                 socket.socket(fam, kind, proto).close()\n        \
                 print(f'{name}: allowed')\n    \
             except OSError as e:\n        \
                 print(f'{name}: blocked {errno.errorcode.get(e.errno)}')\n\
         family('vsock', 40)\n\
         family('vsock-dgram', 40, socket.SOCK_DGRAM)\n\
         family('packet', 17, socket.SOCK_RAW)\n\
         family('alg', 38, socket.SOCK_SEQPACKET)\n\
         family('bluetooth', 31, socket.SOCK_RAW)\n\
         family('can', 29, socket.SOCK_RAW)\n\
         family('rds', 21, socket.SOCK_SEQPACKET)\n\
         family('tipc', 30, socket.SOCK_RDM)\n\
         family('xdp', 44, socket.SOCK_RAW)\n\
         family('netlink-audit', 16, socket.SOCK_RAW, 9)\n\
         family('netlink-uevent', 16, socket.SOCK_DGRAM, 15)\n\
         family('unix', socket.AF_UNIX)\n\
         family('inet', socket.AF_INET)\n\
         family('inet6', socket.AF_INET6)\n\
         family('netlink-route', 16, socket.SOCK_RAW, 0)\n\
         try:\n    \
             socket.socketpair(40, socket.SOCK_STREAM)\n    \
             print('socketpair-vsock: allowed')\n\
         except OSError as e:\n    \
             print(f'socketpair-vsock: blocked {errno.errorcode.get(e.errno)}')\n\
         print('if_nameindex', [n for _, n in socket.if_nameindex()])",
        "{}",
    )
    .await;
    for name in [
        "vsock",
        "vsock-dgram",
        "packet",
        "alg",
        "bluetooth",
        "can",
        "rds",
        "tipc",
        "xdp",
        "netlink-audit",
        "netlink-uevent",
        "socketpair-vsock",
    ] {
        assert!(lines.contains(&format!("{name}: blocked EAFNOSUPPORT")), "{name}: {lines:?}");
    }
    for name in ["unix", "inet", "inet6", "netlink-route"] {
        assert!(lines.contains(&format!("{name}: allowed")), "{name}: {lines:?}");
    }
    assert!(lines.contains(&"if_nameindex ['lo']".to_string()), "{lines:?}");
}

#[tokio::test]
async fn the_interpreter_shows_no_host_layout() {
    let runner = runner().await;
    let interpreter = runner.interpreters().get(None).unwrap();
    let r = exec(
        "import os, sys, json\n\
         print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, os.__file__, sys.path]))\n\
         json.loads('{')",
        "{}",
    )
    .await;
    assert_eq!(r.exit_code, 1, "{r:?}");
    let host_prefix = interpreter.executable.parent().and_then(|bin| bin.parent()).unwrap();
    if !host_prefix.starts_with("/usr") {
        let host = host_prefix.to_string_lossy();
        assert!(!r.stdout.contains(host.as_ref()) && !r.stderr.contains(host.as_ref()), "{host} shows: {r:?}");
        assert!(r.stdout.contains("\"/usr/local/lib/python3."), "{}", r.stdout);
        assert!(
            r.stderr.contains("File \"/usr/local/lib/python3."),
            "tracebacks read like the original's: {}",
            r.stderr
        );
    } else {
        eprintln!(
            "!!! NOTE: the interpreter lives under /usr here ({}): relocation not exercised",
            host_prefix.display()
        );
    }
    assert!(!r.stdout.contains("pyenv") && !r.stderr.contains("pyenv"), "{r:?}");
}

#[tokio::test]
async fn font_users_print_no_fontconfig_errors() {
    let r = exec(
        "import shutil, subprocess\n\
         assert shutil.which('fc-list'), 'fontconfig (fc-list) is installed on this host'\n\
         for _ in range(2):\n    \
             p = subprocess.run(['fc-list'], capture_output=True, text=True)\n    \
             print(p.returncode, repr(p.stderr))",
        "{}",
    )
    .await;
    assert_eq!(r.stdout, "0 ''\n0 ''\n", "{r:?}");
}
