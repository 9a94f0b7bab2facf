//! What to run in a sandbox and what came out of it.

use std::path::PathBuf;
use std::time::Duration;

/// A host path made visible inside the sandbox (read-only unless `writable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Skip silently when the source does not exist.
    pub optional: bool,
    /// Writable (for trusted runs only, such as the dependency installer); `nosuid` and `nodev` always.
    pub writable: bool,
}

impl Bind {
    /// Read-only, same path inside as outside.
    pub fn same(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self { source: path.clone(), target: path, optional: false, writable: false }
    }

    /// Read-only, at `target` inside.
    pub fn at(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Self { source: source.into(), target: target.into(), optional: false, writable: false }
    }
}

/// A host name the sandbox may reach, with its addresses (pinned in the sandbox's `/etc/hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The name the program resolves (through `/etc/hosts` only).
    pub name: String,
    /// Its addresses, resolved by the server.
    pub addrs: Vec<std::net::IpAddr>,
}

/// What network a run gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// An empty network namespace (only its own loopback).
    #[default]
    None,
    /// Egress to the public internet; never the host, private ranges or metadata.
    Internet,
    /// Egress to these hosts only (no DNS: the names are pinned in `/etc/hosts`).
    Hosts(Vec<HostEntry>),
}

impl Network {
    /// Whether any egress is given.
    pub fn is_on(&self) -> bool {
        !matches!(self, Network::None)
    }
}

/// Which host uid a run gets (when the server is root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Identity {
    /// A fresh uid per run (user programs).
    #[default]
    PerRun,
    /// The sandbox's stable service uid, so that files it writes to writable binds stay writable for later runs
    /// of the same kind (the dependency installer and its cache).
    Service,
}

/// Most extra output descriptors of one run.
pub const MAX_EXTRA_OUTPUTS: usize = 4;

/// A file created inside the sandbox's read-only root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Absolute path inside the sandbox.
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// Permission bits, applied as given (the umask does not apply).
    pub mode: u32,
}

/// Limits of one run. Every one holds against a hostile program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Wall clock; the whole process tree is killed when it passes.
    pub timeout: Duration,
    /// Memory, including the files the program writes to its tmpfs mounts.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
    /// CPU weight, 1024 = one CPU (also a quota of `cpu_shares / 1024` CPUs).
    pub cpu_shares: u64,
    /// Size of the writable `/work`.
    pub workspace_bytes: u64,
    /// Size of the writable `/tmp` (and of `/dev/shm`).
    pub tmp_bytes: u64,
    /// Standard output kept; the rest is read and dropped.
    pub stdout_bytes: usize,
    /// Standard error kept; the rest is read and dropped.
    pub stderr_bytes: usize,
    /// Bytes kept of each extra output (at least 1 MiB and the standard output's cap): what a result channel,
    /// or a tar of the files a run wrote, may take.
    pub extra_bytes: usize,
    /// The lowest CPU weight (the quota stays): a sandbox built ahead of demand never slows running programs.
    /// A hand-over with `false` restores the normal weight.
    pub background: bool,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            memory_bytes: 1 << 30,
            pids: 256,
            cpu_shares: 1024,
            workspace_bytes: 2 << 30,
            tmp_bytes: 100 << 20,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
            extra_bytes: 1 << 20,
            background: false,
        }
    }
}

/// One program to run in a fresh sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Absolute path of the executable inside the sandbox.
    pub program: PathBuf,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited from the server).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// Bytes written to standard input, then end-of-file.
    pub stdin: Vec<u8>,
    /// A host directory whose contents are copied into `/work` (never shared: the program's writes stay inside).
    pub workspace: Option<PathBuf>,
    /// Extra host paths (interpreters, environments), read-only unless marked writable.
    pub binds: Vec<Bind>,
    /// Files created in the root (read-only to the program).
    pub files: Vec<GeneratedFile>,
    pub limits: RunLimits,
    /// Network access; none by default.
    pub network: Network,
    /// Which host uid the run gets when the server is root.
    pub identity: Identity,
    /// Extra output pipes on descriptors 3, 4, ... (at most [`MAX_EXTRA_OUTPUTS`]), returned in
    /// [`Outcome::extras`].
    pub extra_outputs: usize,
}

impl RunSpec {
    /// A spec with default limits, no network and `/work` as working directory.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/work"),
            stdin: Vec::new(),
            workspace: None,
            binds: Vec::new(),
            files: Vec::new(),
            limits: RunLimits::default(),
            network: Network::None,
            identity: Identity::PerRun,
            extra_outputs: 0,
        }
    }
}

/// How the program's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with a code.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

/// Bytes captured from one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes, up to the cap.
    pub bytes: Vec<u8>,
    /// Whether more was written (and dropped).
    pub truncated: bool,
    /// Everything the program wrote, kept or not.
    pub total: u64,
}

/// What happened in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How the main process ended (SIGKILL when the sandbox killed it).
    pub status: ExitStatus,
    /// The wall-clock limit passed and the tree was killed.
    pub timed_out: bool,
    /// The run was cancelled (kill request, client gone) and the tree was killed.
    pub cancelled: bool,
    /// The memory limit was hit and the kernel killed a process.
    pub oom_killed: bool,
    /// What the program wrote to standard output, kept up to [`RunLimits::stdout_bytes`].
    pub stdout: Captured,
    /// What the program wrote to standard error, kept up to [`RunLimits::stderr_bytes`].
    pub stderr: Captured,
    /// What was written to each extra output descriptor (3, 4, ...).
    pub extras: Vec<Vec<u8>>,
    /// From the go-ahead to the reaping of the tree.
    pub duration: Duration,
}

/// Which stream a live chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of output, delivered as it is produced (only what is kept under the caps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    /// Output that is kept: nothing past the stream's cap is sent.
    pub bytes: Vec<u8>,
}
