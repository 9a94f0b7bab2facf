//! The eval runner (`python/eval_runner.py`) with a real CPython, outside any sandbox: how a program ends. The
//! runner exits without tearing the interpreter down, so these check that everything a program can observe of
//! Python's shutdown still happens: threads joined, atexit handlers, objects of the program's modules finalized,
//! files it left open flushed, exit statuses as Python gives them.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pyexec_core::eval::EVAL_RUNNER_SOURCE;

/// The host's python3, or the interpreter named by `PYEXEC_TEST_PYTHON` (to run these against every supported
/// version).
fn python() -> PathBuf {
    if let Some(chosen) = std::env::var_os("PYEXEC_TEST_PYTHON") {
        return chosen.into();
    }
    for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no python3 in /usr/bin or /usr/local/bin");
}

/// Runs `files` (the first is the program) through the runner in a fresh directory; returns the output and the
/// directory (to look at what the program left).
fn run(files: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("eval_runner.py");
    std::fs::write(&runner, EVAL_RUNNER_SOURCE).unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let output = Command::new(python())
        .arg(&runner)
        .arg(dir.path().join(files[0].0))
        .current_dir(dir.path())
        .env_clear()
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn what_python_does_at_exit_still_happens() {
    let program = r#"
import atexit, os, sys, threading, time
import helper

class Noisy:
    def __del__(self):
        print("finalized", flush=True)

kept = Noisy()
log = open("left-open.txt", "w")
log.write("written but never closed")
helper.start()

def late():
    time.sleep(0.2)
    print("thread finished", flush=True)

threading.Thread(target=late).start()
atexit.register(lambda: print("atexit ran", flush=True))
print("main done")
"#;
    let helper = "handle = None\ndef start():\n    global handle\n    handle = open('helper-open.txt', 'w')\n    handle.write('from a module')\n";
    let (out, dir) = run(&[("main.py", program), ("helper.py", helper)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "main done\nthread finished\natexit ran\nfinalized\n");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("left-open.txt"), "written but never closed");
    assert_eq!(read("helper-open.txt"), "from a module");
}

#[test]
fn exit_statuses_are_pythons() {
    let cases: [(&str, i32, &str); 6] = [
        ("print('ok')", 0, ""),
        ("import sys\nsys.exit(3)", 3, ""),
        ("import sys\nsys.exit(None)", 0, ""),
        ("import sys\nsys.exit('bye')", 1, "bye\n"),
        ("import sys\nsys.exit(-1)", 255, ""),
        ("raise ValueError('boom')", 1, "ValueError: boom\n"),
    ];
    for (code, status, stderr_end) in cases {
        let (out, _dir) = run(&[("main.py", code)]);
        assert_eq!(out.status.code(), Some(status), "{code:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).ends_with(stderr_end), "{code:?}: {:?}", text(&out.stderr));
    }
}

#[test]
fn a_failed_flush_of_stdout_exits_120_as_python_does() {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("eval_runner.py");
    std::fs::write(&runner, EVAL_RUNNER_SOURCE).unwrap();
    std::fs::write(dir.path().join("main.py"), "import sys\n_ = sys.stdout.write('x' * 10)").unwrap();
    // Buffered stdout to a full device: the write is kept in the buffer, the flush at exit fails.
    let out = Command::new(python())
        .arg(&runner)
        .arg(dir.path().join("main.py"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(120), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("OSError: [Errno 28] No space left on device"), "{}", text(&out.stderr));
}

// --- Rich outputs and files out ----------------------------------------------------------------------------------

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pyexec_core::eval::{EvalReport, apply_report_channel, split_report_marker};
use pyexec_core::files_out::{self, FilesOut, read_tar, sha256_hex};
use pyexec_core::model::DisplayOutput;

/// How [`run_full`] starts the runner.
#[derive(Default)]
struct Options {
    /// Report on a descriptor (as the backends do) rather than with the marker on standard output.
    result_fd: bool,
    /// Ask for the changed files (PYEXEC_FILES_FD).
    files_fd: bool,
    /// More environment variables.
    env: Vec<(&'static str, String)>,
}

/// One run of the runner, outside its workspace: `dir/work` holds the program's files, `dir/result` and
/// `dir/files.tar` what the runner wrote on its descriptors.
struct Ran {
    out: Output,
    dir: tempfile::TempDir,
    /// Standard output without the report.
    stdout: String,
    report: Option<EvalReport>,
    files: Vec<u8>,
}

impl Ran {
    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn outputs(&self) -> &[DisplayOutput] {
        self.report.as_ref().map(|r| r.outputs.as_slice()).unwrap_or_default()
    }

    fn result(&self) -> Option<&str> {
        self.report.as_ref().and_then(|r| r.result.as_deref())
    }

    fn files_out(&self) -> FilesOut {
        read_tar(&self.files, files_out::DEFAULT_MAX_BYTES, files_out::DEFAULT_MAX_COUNT).unwrap()
    }

    fn stderr(&self) -> String {
        text(&self.out.stderr)
    }
}

fn run_full(files: &[(&str, &str)], options: Options) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("eval_runner.py");
    std::fs::write(&runner, EVAL_RUNNER_SOURCE).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for (name, content) in files {
        let path = work.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    // Descriptors 4 and 5 are open in every run, as a backend's pipes would be; the variables say whether the
    // runner is to use them.
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"exec "$@" 4>"$0/result" 5>"$0/files.tar""#)
        .arg(dir.path())
        .arg(python())
        .arg(&runner)
        .arg(work.join(files[0].0))
        .current_dir(&work)
        .env_clear()
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env(files_out::FILES_ROOT_ENV, &work)
        .stdin(Stdio::null());
    if options.result_fd {
        command.env("PYEXEC_RESULT_FD", "4");
    }
    if options.files_fd {
        command.env(files_out::FILES_FD_ENV, "5");
    }
    for (key, value) in &options.env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    let channel = std::fs::read(dir.path().join("result")).unwrap();
    let files = std::fs::read(dir.path().join("files.tar")).unwrap();
    let (stdout, report) = if options.result_fd {
        assert!(!text(&out.stdout).contains("___PYEXEC_RESULT___"), "no marker with a descriptor");
        let mut stdout = text(&out.stdout);
        let report = if channel.is_empty() { None } else { Some(apply_report_channel(&mut stdout, &channel).unwrap()) };
        (stdout, report)
    } else {
        assert!(channel.is_empty());
        split_report_marker(&text(&out.stdout))
    };
    Ran { out, dir, stdout, report, files }
}

fn decoded(output: &DisplayOutput) -> Vec<u8> {
    assert_eq!(output.kind, "image/png");
    STANDARD.decode(&output.data).unwrap()
}

fn item(kind: &str, data: &str) -> DisplayOutput {
    DisplayOutput { kind: kind.into(), data: data.into() }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[test]
fn display_shows_the_richest_repr() {
    let program = r#"
class Png:
    def _repr_png_(self):
        return b"\x89PNG\r\n\x1a\nxyz"
class Svg:
    def _repr_svg_(self):
        return "<svg/>"
class Html:
    def _repr_html_(self):
        return "<b>hi</b>"
class Plain:
    def __repr__(self):
        return "Plain()"
class Broken:
    def _repr_png_(self):
        raise RuntimeError("no")
    def _repr_svg_(self):
        return None
    def _repr_html_(self):
        return "<i>fallback</i>"
display(Png(), Svg())
display(Html(), Plain(), Broken())
print("done")
"#;
    for result_fd in [false, true] {
        let ran = run_full(&[("main.py", program)], Options { result_fd, ..Options::default() });
        assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
        assert_eq!(ran.stdout, "done\n", "outputs alone leave the output as it was");
        assert_eq!(ran.result(), None);
        let outputs = ran.outputs();
        assert_eq!(decoded(&outputs[0]), b"\x89PNG\r\n\x1a\nxyz");
        assert_eq!(
            outputs[1..],
            [
                item("image/svg+xml", "<svg/>"),
                item("text/html", "<b>hi</b>"),
                item("text/plain", "Plain()"),
                item("text/html", "<i>fallback</i>"),
            ]
        );
    }
}

#[test]
fn a_rich_last_expression_gives_its_repr_and_an_output() {
    let program = "class Table:\n    def _repr_html_(self):\n        return '<table>é</table>'\n    def __repr__(self):\n        return 'Table()'\nprint('x')\nTable()\n";
    for result_fd in [false, true] {
        let ran = run_full(&[("main.py", program)], Options { result_fd, ..Options::default() });
        assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
        assert_eq!(ran.stdout, "x");
        assert_eq!(ran.result(), Some("Table()"));
        assert_eq!(ran.outputs(), [item("text/html", "<table>é</table>")]);
    }
    let ran = run_full(&[("main.py", "1 + 1")], Options::default());
    assert_eq!(ran.report, Some(EvalReport { result: Some("2".into()), outputs: vec![] }));
    let ran = run_full(&[("main.py", "x = 1")], Options { result_fd: true, ..Options::default() });
    assert_eq!((ran.report, ran.stdout.as_str()), (None, ""), "nothing to report: nothing written");
}

#[test]
fn outputs_are_bounded() {
    let ran = run_full(&[("main.py", "for i in range(20):\n    display(i)\n")], Options::default());
    let outputs = ran.outputs();
    assert_eq!(outputs.len(), 17);
    assert_eq!(outputs[15], item("text/plain", "15"));
    assert_eq!(outputs[16], item("text/plain", "[... more outputs truncated]"));

    let program = r#"
class Big:
    def __init__(self, mib):
        self.mib = mib
    def _repr_html_(self):
        return "x" * (self.mib << 20)
display(Big(5), Big(3), Big(3), Big(3), "small")
"#;
    let ran = run_full(&[("main.py", program)], Options { result_fd: true, ..Options::default() });
    assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
    let kinds: Vec<(&str, usize)> = ran.outputs().iter().map(|o| (o.kind.as_str(), o.data.len())).collect();
    assert_eq!(
        kinds,
        [("text/html", 3 << 20), ("text/html", 3 << 20), ("text/plain", 7), ("text/plain", 28)],
        "over 4 MiB alone, or over 8 MiB in all: dropped"
    );
}

#[test]
fn outputs_shown_before_an_error_are_kept() {
    let ran = run_full(&[("main.py", "display(1)\nraise ValueError('boom')\n")], Options::default());
    assert_eq!(ran.out.status.code(), Some(1));
    assert!(ran.stderr().ends_with("ValueError: boom\n"), "{}", ran.stderr());
    assert!(ran.stderr().contains("line 2"), "{}", ran.stderr());
    assert_eq!(ran.report, Some(EvalReport { result: None, outputs: vec![item("text/plain", "1")] }));
    let ran = run_full(
        &[("main.py", "import sys\ndisplay(2)\nsys.exit(4)\n")],
        Options { result_fd: true, ..Options::default() },
    );
    assert_eq!(ran.out.status.code(), Some(4));
    assert_eq!(ran.outputs(), [item("text/plain", "2")]);
}

/// A stand-in for matplotlib (not installed here): what the runner uses of pyplot, with figures whose PNG is the
/// signature followed by the figure's number.
const FAKE_PYPLOT: &str = r#"
_figures = {}
_next = [1]

class Figure:
    def __init__(self, num):
        self.num = num
    def savefig(self, fname, format=None, **kwargs):
        assert format == "png"
        fname.write(b"\x89PNG\r\n\x1a\n" + b"fig%d" % self.num)

def figure(num=None):
    if num is None:
        num = _next[0]
        _next[0] += 1
    if num not in _figures:
        _figures[num] = Figure(num)
    return _figures[num]

def get_fignums():
    return sorted(_figures)

def close(fig=None):
    _figures.pop(fig.num if isinstance(fig, Figure) else fig, None)

def show(*args, **kwargs):
    print("the original show ran")
"#;

#[test]
fn plt_show_and_figures_left_open_are_captured() {
    let program = r#"
import os
import matplotlib.pyplot as plt
plt.figure()
plt.show()
print(plt.get_fignums(), os.environ["MPLBACKEND"])
plt.figure()
fig = plt.figure()
"#;
    let fake = tempfile::tempdir().unwrap();
    std::fs::create_dir(fake.path().join("matplotlib")).unwrap();
    std::fs::write(fake.path().join("matplotlib/__init__.py"), "").unwrap();
    std::fs::write(fake.path().join("matplotlib/pyplot.py"), FAKE_PYPLOT).unwrap();
    let pythonpath = fake.path().display().to_string();
    // Imported by the program, then imported before the runner starts (as a warm sandbox's preimports do).
    for preimported in [false, true] {
        std::fs::write(
            fake.path().join("sitecustomize.py"),
            if preimported { "import matplotlib.pyplot\n" } else { "" },
        )
        .unwrap();
        let env = vec![("PYTHONPATH", pythonpath.clone())];
        let ran = run_full(&[("main.py", program)], Options { env, ..Options::default() });
        assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
        assert_eq!(ran.stdout, "[] Agg\n", "preimported: {preimported}");
        let pngs: Vec<Vec<u8>> = ran.outputs().iter().map(decoded).collect();
        let want: Vec<Vec<u8>> = (1..=3).map(|n| [PNG_SIGNATURE, format!("fig{n}").as_bytes()].concat()).collect();
        assert_eq!(pngs, want, "preimported: {preimported}");
    }
    let env = vec![("PYTHONPATH", pythonpath), ("MPLBACKEND", "svg".into())];
    let ran = run_full(&[("main.py", "import os\nos.environ['MPLBACKEND']")], Options { env, ..Options::default() });
    assert_eq!(ran.result(), Some("'svg'"), "the run's own choice stays");
}

#[test]
fn changed_files_are_sent_as_a_tar() {
    let program = r#"
import os
os.makedirs("out")
with open("out/a.txt", "w") as f:
    f.write("hello")
with open("input.txt", "w") as f:
    f.write("IN")
os.symlink("same.txt", "link.txt")
os.symlink("/etc", "etc-link")
left_open = open("late.txt", "w")
left_open.write("flushed at exit")
print(sorted(k for k in os.environ if k.startswith("PYEXEC")))
"#;
    let inputs = [("main.py", program), ("input.txt", "in"), ("same.txt", "same")];
    let ran = run_full(&inputs, Options { files_fd: true, ..Options::default() });
    assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
    assert_eq!(ran.stdout, "[]\n", "the program never sees the runner's variables");
    let out = ran.files_out();
    assert!(!out.truncated);
    let got: Vec<(&str, &[u8])> = out.files.iter().map(|(f, d)| (f.path.as_str(), d.as_slice())).collect();
    assert_eq!(got, [("input.txt", b"IN".as_slice()), ("late.txt", b"flushed at exit"), ("out/a.txt", b"hello")]);
    for (file, data) in &out.files {
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.sha256, sha256_hex(data));
        assert_eq!(std::fs::read(ran.work().join(&file.path)).unwrap(), *data);
    }
    assert_eq!(out.files[2].0.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");

    // Without the variable, nothing is written and the run is the same.
    let ran = run_full(&inputs, Options::default());
    assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
    assert_eq!((ran.stdout.as_str(), ran.files.len()), ("[]\n", 0));
}

#[test]
fn files_over_the_caps_are_left_out() {
    let program = "for name in 'abc':\n    open(name, 'w').write(name * 10)\n";
    let env = vec![("PYEXEC_FILES_MAX_COUNT", "2".to_owned())];
    let ran = run_full(&[("main.py", program)], Options { files_fd: true, env, ..Options::default() });
    let out = ran.files_out();
    assert_eq!(out.files.iter().map(|(f, _)| f.path.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(out.truncated);
    let env = vec![("PYEXEC_FILES_MAX_BYTES", "15".to_owned())];
    let ran = run_full(&[("main.py", program)], Options { files_fd: true, env, ..Options::default() });
    let out = ran.files_out();
    assert_eq!(out.files.iter().map(|(f, _)| f.path.as_str()).collect::<Vec<_>>(), ["a"]);
    assert!(out.truncated);
    // Nothing changed: nothing written at all.
    let ran = run_full(&[("main.py", "x = 1")], Options { files_fd: true, ..Options::default() });
    assert_eq!(ran.files.len(), 0);
}

#[test]
fn files_of_a_failed_run_are_kept_and_of_a_killed_one_not() {
    let ran = run_full(
        &[("main.py", "open('a', 'w').write('1')\nraise KeyError('k')\n")],
        Options { files_fd: true, ..Options::default() },
    );
    assert_eq!(ran.out.status.code(), Some(1));
    assert_eq!(ran.files_out().files.len(), 1);
    let program = "import os\nopen('a', 'w').write('1')\nos._exit(3)\n";
    let ran = run_full(&[("main.py", program)], Options { files_fd: true, result_fd: true, ..Options::default() });
    assert_eq!(ran.out.status.code(), Some(3));
    assert_eq!((ran.files.len(), ran.stderr().as_str()), (0, ""));
    assert_eq!(ran.report, None);
}

#[test]
fn long_and_unusual_names_travel() {
    let long = format!("{}/é file.txt", "d".repeat(120));
    let program = format!("import os\nos.makedirs({dir:?})\nopen({long:?}, 'w').write('x')\n", dir = "d".repeat(120));
    let ran = run_full(&[("main.py", &program)], Options { files_fd: true, ..Options::default() });
    assert_eq!(ran.out.status.code(), Some(0), "{}", ran.stderr());
    let out = ran.files_out();
    assert_eq!(out.files.iter().map(|(f, _)| f.path.as_str()).collect::<Vec<_>>(), [long.as_str()]);
}
