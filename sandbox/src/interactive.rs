//! A sandbox whose program keeps running and talks with its owner: [`Interactive`].
//!
//! A [`Prepared`](crate::Prepared) sandbox normally gets one piece of work and runs to its end. A session's
//! interpreter instead serves many requests over its life, so its owner needs the pipes themselves: standard input
//! to send requests, standard output and error to read what the program prints, and the extra outputs for
//! replies. The sandbox's limits (memory, processes, disk, CPU) hold for its whole life; the owner decides what a
//! timeout means for a request and can interrupt the program ([`Interactive::interrupt`]) or destroy it all.

use std::time::Duration;

use tokio::net::unix::pipe;

use crate::SandboxError;
use crate::prepared::Prepared;

/// See the module documentation.
#[derive(Debug)]
pub struct Interactive {
    /// Still owns the child, its cgroups, uid and namespaces; destroying it tears all of them down.
    prepared: Prepared,
    /// The program's standard input, until the owner takes it.
    stdin: Option<pipe::Sender>,
    /// The program's outputs, until the owner takes them.
    outputs: Option<Outputs>,
}

/// What a sandboxed program writes: standard output, standard error and the extra outputs (descriptor 3 +
/// index).
#[derive(Debug)]
pub struct Outputs {
    /// Standard output.
    pub stdout: pipe::Receiver,
    /// Standard error.
    pub stderr: pipe::Receiver,
    /// Extra outputs.
    pub extras: Vec<pipe::Receiver>,
}

impl Interactive {
    pub(crate) fn new(
        prepared: Prepared,
        stdin: pipe::Sender,
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
        extras: Vec<pipe::Receiver>,
    ) -> Self {
        Self { prepared, stdin: Some(stdin), outputs: Some(Outputs { stdout, stderr, extras }) }
    }

    /// The program's standard input, for the owner's requests (`None` once taken).
    pub fn take_stdin(&mut self) -> Option<pipe::Sender> {
        self.stdin.take()
    }

    /// The program's outputs, for reader tasks (`None` once taken).
    pub fn take_outputs(&mut self) -> Option<Outputs> {
        self.outputs.take()
    }

    /// Whether the program (and so the sandbox) is still running.
    pub fn is_alive(&self) -> bool {
        self.prepared.is_alive()
    }

    /// Waits until the sandbox's first process has exited, or `timeout` passed; says whether it exited.
    pub async fn exited_within(&self, timeout: Duration) -> bool {
        match self.prepared.child() {
            Ok(child) => tokio::time::timeout(timeout, child.exited()).await.is_ok(),
            Err(_) => true,
        }
    }

    /// Sends SIGINT to the program: every direct child of the sandbox's init (the program it started). Python
    /// turns it into `KeyboardInterrupt`. Returns how many processes were signalled.
    pub fn interrupt(&self) -> usize {
        let Ok(child) = self.prepared.child() else { return 0 };
        let pid = child.pid;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut sent = 0;
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let Some(pid) = rustix::process::Pid::from_raw(pid) else { continue };
            if rustix::process::kill_process(pid, rustix::process::Signal::INT).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// How many processes of the sandbox the kernel's OOM killer killed so far (0 without cgroups).
    pub fn oom_kills(&self) -> u64 {
        self.prepared.cgroup().map_or(0, |c| c.oom_kills())
    }

    /// Memory the sandbox holds now, when cgroups are used.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.prepared.memory_bytes()
    }

    /// Kills everything, reaps it, removes the cgroups and gives the host uid back.
    pub async fn destroy(self) {
        let Interactive { prepared, stdin, outputs } = self;
        drop((stdin, outputs));
        prepared.destroy().await;
    }
}

impl Prepared {
    /// Turns a prepared sandbox into an [`Interactive`] one: its pipes go to the caller, and the sandbox lives
    /// until [`Interactive::destroy`] (or until it is dropped, which kills it too).
    pub fn into_interactive(mut self) -> Result<Interactive, SandboxError> {
        let (stdin, stdout, stderr, extras) = self.take_program_pipes()?;
        let stdin = pipe::Sender::from_owned_fd(stdin)?;
        let stdout = pipe::Receiver::from_owned_fd(stdout)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr)?;
        let extras = extras.into_iter().map(pipe::Receiver::from_owned_fd).collect::<Result<Vec<_>, _>>()?;
        Ok(Interactive::new(self, stdin, stdout, stderr, extras))
    }
}
