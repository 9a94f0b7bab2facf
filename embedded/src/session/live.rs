//! One running session interpreter: requests go in on its standard input, output is split into calls at their end
//! markers, replies come from its control descriptor (see [`protocol`](super::protocol)).

use std::time::Duration;

use pyexec_core::model::OutputFile;
use pyexec_core::session::SessionCall;
use pyexec_sandbox::{Interactive, Outputs};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::protocol::{CallOutput, FrameError, Replies, frame, marker};
use crate::EnvLease;

/// How long an interrupted call may take to stop before the interpreter is replaced.
pub(crate) const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// How long a file request may take.
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(120);

/// A reply: its header and payload.
type Reply = Result<(serde_json::Value, Vec<u8>), FrameError>;

/// See the module documentation.
pub(crate) struct LiveSession {
    sandbox: Interactive,
    replies: mpsc::Receiver<Reply>,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
    /// Output that came after the last call's marker (from processes it left running).
    early: [Vec<u8>; 2],
    readers: Vec<JoinHandle<()>>,
    /// Held as long as the session lives, so the environment cache keeps it.
    _env: Option<EnvLease>,
    /// Largest payload a reply may carry.
    max_payload: u64,
}

/// What a call observed, before it becomes a result.
#[derive(Debug, Default)]
pub(crate) struct CallObserved {
    pub stdout: CapturedText,
    pub stderr: CapturedText,
    /// The cell's exit code (0, 1 for an exception, 130 interrupted, a SystemExit's code).
    pub exit: Option<i32>,
    /// The eval result object, when there is one.
    pub result_channel: Option<Vec<u8>>,
    /// The tar of the files the call wrote.
    pub files_tar: Option<Vec<u8>>,
    /// The call's timeout passed (and it was interrupted).
    pub timed_out: bool,
    /// The interpreter is gone or would not stop: the session must be rebuilt.
    pub lost: bool,
    /// The kernel killed a process of the session for memory during the call.
    pub oom_killed: bool,
}

/// One output stream of a call.
#[derive(Debug, Default)]
pub(crate) struct CapturedText {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

#[derive(Deserialize)]
struct EvalReply {
    #[serde(default)]
    exit: i32,
    #[serde(default)]
    result_n: u64,
    #[serde(default)]
    write_error: Option<String>,
}

/// Why a file request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileOpError {
    #[error("no such file")]
    NotFound,
    #[error("invalid path")]
    InvalidPath,
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("no space left in the session's /work (raise disk_mb)")]
    NoSpace,
    #[error("{0}")]
    Failed(String),
    /// The interpreter is gone.
    #[error(transparent)]
    Lost(#[from] FrameError),
}

impl LiveSession {
    pub(crate) fn new(mut sandbox: Interactive, env: Option<EnvLease>, max_payload: u64) -> Self {
        let (reply_tx, replies) = mpsc::channel(4);
        let (out_tx, stdout) = mpsc::channel(64);
        let (err_tx, stderr) = mpsc::channel(64);
        let mut readers = Vec::new();
        if let Some(Outputs { stdout, stderr, extras }) = sandbox.take_outputs() {
            readers.push(tokio::spawn(forward(stdout, out_tx)));
            readers.push(tokio::spawn(forward(stderr, err_tx)));
            if let Some(control) = extras.into_iter().next() {
                readers.push(tokio::spawn(read_replies(Replies::new(control), reply_tx, max_payload)));
            }
        }
        Self { sandbox, replies, stdout, stderr, early: Default::default(), readers, _env: env, max_payload }
    }

    /// Runs one call (see docs/sessions.md for timeouts and interrupts).
    pub(crate) async fn call(
        &mut self,
        call: &SessionCall,
        output_cap: usize,
        files_max_bytes: u64,
        files_max_count: usize,
    ) -> CallObserved {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut payload = Vec::new();
        let mut files = Vec::new();
        for f in &call.files {
            files.push(json!({"p": f.name, "n": f.content.len(), "m": 0o644}));
            payload.extend_from_slice(f.content.as_bytes());
        }
        let stdin = call.stdin.as_deref().unwrap_or("").as_bytes();
        payload.extend_from_slice(stdin);
        let header = json!({
            "op": "eval", "code": call.code, "eval": call.eval_last_expr, "files": files, "stdin_n": stdin.len(),
            "nonce": nonce, "files_max_bytes": files_max_bytes, "files_max_count": files_max_count,
        });
        let oom_before = self.sandbox.oom_kills();
        let mut observed = CallObserved::default();
        let end = marker(&nonce);
        let mut outs = [CallOutput::new(end.clone(), output_cap), CallOutput::new(end, output_cap)];
        let mut done = [false, false];
        for (i, out) in outs.iter_mut().enumerate() {
            let early = std::mem::take(&mut self.early[i]);
            if !early.is_empty()
                && let Some(rest) = out.push(&early)
            {
                self.early[i] = rest;
                done[i] = true;
            }
        }

        let deadline = tokio::time::Instant::now() + call.timeout;
        let send = self.send(header, &payload);
        let sent = tokio::time::timeout_at(deadline, send).await;
        let mut reply: Option<(EvalReply, Vec<u8>)> = None;
        let mut interrupted_at: Option<tokio::time::Instant> = None;
        if !matches!(sent, Ok(Ok(()))) {
            // The interpreter is gone, or did not even take the request in time.
            observed.lost = true;
        }
        let complete = |done: &[bool; 2], reply: &Option<_>| done[0] && done[1] && reply.is_some();
        while !observed.lost && !complete(&done, &reply) {
            let grace_end = interrupted_at.map(|at| at + INTERRUPT_GRACE);
            tokio::select! {
                chunk = self.stdout.recv(), if !done[0] => match chunk {
                    Some(c) => if let Some(rest) = outs[0].push(&c) { self.early[0] = rest; done[0] = true; },
                    None => observed.lost = true,
                },
                chunk = self.stderr.recv(), if !done[1] => match chunk {
                    Some(c) => if let Some(rest) = outs[1].push(&c) { self.early[1] = rest; done[1] = true; },
                    None => observed.lost = true,
                },
                r = self.replies.recv(), if reply.is_none() => match r {
                    Some(Ok((header, data))) => match serde_json::from_value::<EvalReply>(header) {
                        Ok(parsed) => reply = Some((parsed, data)),
                        Err(_) => observed.lost = true,
                    },
                    Some(Err(_)) | None => observed.lost = true,
                },
                () = tokio::time::sleep_until(deadline), if interrupted_at.is_none() => {
                    observed.timed_out = true;
                    interrupted_at = Some(tokio::time::Instant::now());
                    if self.sandbox.interrupt() == 0 {
                        observed.lost = true;
                    }
                },
                () = sleep_until_opt(grace_end), if grace_end.is_some() => observed.lost = true,
            }
        }
        observed.oom_killed = self.sandbox.oom_kills() > oom_before;
        if observed.lost {
            for out in &mut outs {
                out.flush();
            }
            // What is still in the pipes belongs to this call.
            for (i, rx) in [&mut self.stdout, &mut self.stderr].into_iter().enumerate() {
                while let Ok(c) = rx.try_recv() {
                    outs[i].push(&c);
                }
                outs[i].flush();
            }
        }
        let [out, err] = outs;
        observed.stdout = CapturedText { bytes: out.kept, truncated: out.truncated };
        observed.stderr = CapturedText { bytes: err.kept, truncated: err.truncated };
        if let Some((reply, data)) = reply {
            if let Some(why) = reply.write_error {
                observed
                    .stderr
                    .bytes
                    .extend_from_slice(format!("the call's files could not be written: {why}\n").as_bytes());
                observed.exit = Some(1);
                return observed;
            }
            observed.exit = Some(reply.exit);
            let split = usize::try_from(reply.result_n).unwrap_or(usize::MAX).min(data.len());
            let (channel, tar) = data.split_at(split);
            observed.result_channel = (!channel.is_empty()).then(|| channel.to_vec());
            observed.files_tar = (!tar.is_empty()).then(|| tar.to_vec());
        }
        observed
    }

    /// The regular files under `/work` now.
    pub(crate) async fn list(&mut self, max_count: usize) -> Result<(Vec<OutputFile>, bool), FileOpError> {
        #[derive(Deserialize)]
        struct Listing {
            files: Vec<OutputFile>,
            truncated: bool,
        }
        let (header, _) = self.request(json!({"op": "list", "max_count": max_count}), &[]).await?;
        let listing: Listing =
            serde_json::from_value(header).map_err(|e| FileOpError::Failed(format!("bad listing: {e}")))?;
        Ok((listing.files, listing.truncated))
    }

    /// One file's bytes.
    pub(crate) async fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, FileOpError> {
        let (header, data) = self.request(json!({"op": "get", "path": path, "max": max}), &[]).await?;
        check_reply(&header, max)?;
        Ok(data)
    }

    /// Writes `data` (read from `source`, `size` bytes) to `path`.
    pub(crate) async fn put(
        &mut self,
        path: &str,
        size: u64,
        mut source: impl tokio::io::AsyncRead + Unpin,
    ) -> Result<OutputFile, FileOpError> {
        let head = frame(json!({"op": "put", "path": path}), usize::try_from(size).unwrap_or(usize::MAX));
        let writing = async {
            self.sandbox.stdin.write_all(&head).await?;
            let copied = tokio::io::copy(&mut (&mut source).take(size), &mut self.sandbox.stdin).await?;
            if copied != size {
                return Err(std::io::Error::other("the upload ended early"));
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(FILE_OP_TIMEOUT, writing)
            .await
            .map_err(|_| FileOpError::Failed("the session did not take the upload in time".into()))?
            .map_err(FrameError::Io)?;
        let (header, _) = self.reply().await?;
        check_reply(&header, size)?;
        let sha256 = header.get("sha256").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        Ok(OutputFile { path: path.to_owned(), size, sha256 })
    }

    async fn send(&mut self, header: serde_json::Value, payload: &[u8]) -> std::io::Result<()> {
        let head = frame(header, payload.len());
        self.sandbox.stdin.write_all(&head).await?;
        self.sandbox.stdin.write_all(payload).await
    }

    async fn request(
        &mut self,
        header: serde_json::Value,
        payload: &[u8],
    ) -> Result<(serde_json::Value, Vec<u8>), FileOpError> {
        tokio::time::timeout(FILE_OP_TIMEOUT, self.send(header, payload))
            .await
            .map_err(|_| FileOpError::Failed("the session did not take the request in time".into()))?
            .map_err(FrameError::Io)?;
        self.reply().await
    }

    async fn reply(&mut self) -> Result<(serde_json::Value, Vec<u8>), FileOpError> {
        match tokio::time::timeout(FILE_OP_TIMEOUT, self.replies.recv()).await {
            Err(_) => Err(FileOpError::Failed("the session did not answer in time".into())),
            Ok(None) => Err(FileOpError::Lost(FrameError::Closed)),
            Ok(Some(r)) => Ok(r?),
        }
    }

    /// Ends the interpreter and tears the sandbox down.
    pub(crate) async fn destroy(self) {
        for reader in &self.readers {
            reader.abort();
        }
        self.sandbox.destroy().await;
    }

    /// Largest payload a reply may carry.
    pub(crate) fn max_payload(&self) -> u64 {
        self.max_payload
    }
}

fn check_reply(header: &serde_json::Value, max: u64) -> Result<(), FileOpError> {
    match header.get("error").and_then(|e| e.as_str()) {
        None => Ok(()),
        Some("not_found") => Err(FileOpError::NotFound),
        Some("invalid_path") => Err(FileOpError::InvalidPath),
        Some("too_large") => Err(FileOpError::TooLarge(max)),
        Some("no_space") => Err(FileOpError::NoSpace),
        Some(other) => Err(FileOpError::Failed(other.to_owned())),
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Moves a stream's chunks to `tx` until end-of-file.
async fn forward(mut rx: pipe::Receiver, tx: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads replies whole and passes them on, until the interpreter closes its side.
async fn read_replies(mut replies: Replies, tx: mpsc::Sender<Reply>, max_payload: u64) {
    loop {
        let reply = match replies.header::<serde_json::Value>().await {
            Ok((header, n)) => replies.payload(n, max_payload).await.map(|data| (header, data)),
            Err(e) => Err(e),
        };
        let end = reply.is_err();
        if tx.send(reply).await.is_err() || end {
            return;
        }
    }
}
