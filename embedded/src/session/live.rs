//! One running session interpreter in a sandbox of this machine: the shared [`SessionLink`] over the sandbox's
//! pipes, interrupts by signal, and the sandbox's OOM count.

use pyexec_backend::session::{CallCaps, CallObserved, FileOpError, SessionControl, SessionLink};
use pyexec_core::model::OutputFile;
use pyexec_core::session::SessionCall;
use pyexec_sandbox::{Interactive, Outputs};

use crate::EnvLease;

/// See the module documentation.
pub(crate) struct LiveSession {
    sandbox: Interactive,
    link: SessionLink,
    /// Held as long as the session lives, so the environment cache keeps it.
    _env: Option<EnvLease>,
}

/// Interrupts by SIGINT to the interpreter; the OOM count of the sandbox's cgroup.
struct SandboxControl<'a>(&'a Interactive);

impl SessionControl for SandboxControl<'_> {
    fn interrupt(&self) -> bool {
        self.0.interrupt() > 0
    }

    fn oom_kills(&self) -> u64 {
        self.0.oom_kills()
    }
}

impl LiveSession {
    /// Links to the session runner in `sandbox`; `None` when its outputs were taken already.
    pub(crate) fn new(mut sandbox: Interactive, env: Option<EnvLease>, max_payload: u64) -> Option<Self> {
        let Outputs { stdout, stderr, extras } = sandbox.take_outputs()?;
        let control = extras.into_iter().next()?;
        let requests = sandbox.take_stdin()?;
        let link = SessionLink::from_streams(Box::new(requests), stdout, stderr, control, max_payload);
        Some(Self { sandbox, link, _env: env })
    }

    /// Memory the session holds now, when cgroups are used.
    pub(crate) fn memory_bytes(&self) -> Option<u64> {
        self.sandbox.memory_bytes()
    }

    /// Largest payload a reply may carry.
    pub(crate) fn max_payload(&self) -> u64 {
        self.link.max_payload()
    }

    /// Runs one call.
    pub(crate) async fn call(&mut self, call: &SessionCall, caps: CallCaps) -> CallObserved {
        self.link.call(call, caps, &SandboxControl(&self.sandbox)).await
    }

    /// The regular files under `/work` now.
    pub(crate) async fn list(&mut self, max_count: usize) -> Result<(Vec<OutputFile>, bool), FileOpError> {
        self.link.list(max_count).await
    }

    /// One file's bytes.
    pub(crate) async fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, FileOpError> {
        self.link.get(path, max).await
    }

    /// Writes `size` bytes from `source` to `path`.
    pub(crate) async fn put(
        &mut self,
        path: &str,
        size: u64,
        source: impl tokio::io::AsyncRead + Unpin,
    ) -> Result<OutputFile, FileOpError> {
        self.link.put(path, size, source).await
    }

    /// Ends the interpreter and tears the sandbox down.
    pub(crate) async fn destroy(self) {
        drop(self.link);
        self.sandbox.destroy().await;
    }
}
