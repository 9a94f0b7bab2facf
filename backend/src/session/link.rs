//! A link to a running session runner, whatever carries it: requests go in on one stream, output is split into
//! calls at their end markers, replies come as frames (see [`protocol`](super::protocol)). The embedded backend
//! links to a sandbox's pipes ([`SessionLink::from_streams`]); Kubernetes to a Pod's attached standard input and
//! output, where the runner muxes everything into one stream ([`SessionLink::from_mux`]).

use std::time::Duration;

use pyexec_core::model::OutputFile;
use pyexec_core::session::SessionCall;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::protocol::{CallOutput, FrameError, Replies, frame, marker};

/// How long an interrupted call may take to stop before the interpreter is replaced.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// How long a file request may take.
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(120);

/// A reply: its header and payload.
type Reply = Result<(serde_json::Value, Vec<u8>), FrameError>;

/// The requests side of a link.
pub type Requests = Box<dyn AsyncWrite + Send + Unpin>;

/// What only the carrier of a session can do.
pub trait SessionControl: Send + Sync {
    /// Interrupts the running cell out of band (a signal), when the carrier can; `false` asks the link to send
    /// the interrupt in band, as a request the runner's reader thread acts on.
    fn interrupt(&self) -> bool;
    /// Processes of the session the kernel killed for memory so far (0 where unknown).
    fn oom_kills(&self) -> u64;
}

/// See the module documentation.
pub struct SessionLink {
    requests: Requests,
    /// One token per reply awaited: replies are read only when one is awaited, so a program that writes frames of
    /// its own between calls makes the backend hold nothing (its writes just block).
    want: mpsc::Sender<()>,
    replies: mpsc::Receiver<Reply>,
    /// A request went unanswered in time: a late reply could be taken for the next one's, so the link is done.
    broken: bool,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
    /// Output that came after the last call's marker (from processes it left running).
    early: [Vec<u8>; 2],
    tasks: Vec<JoinHandle<()>>,
    /// Largest payload a reply may carry.
    max_payload: u64,
}

/// What a call observed, before it becomes a result.
#[derive(Debug, Default)]
pub struct CallObserved {
    /// Standard output of the call (capped).
    pub stdout: CapturedText,
    /// Standard error of the call (capped).
    pub stderr: CapturedText,
    /// The cell's exit code (0, 1 for an exception, 130 interrupted, a SystemExit's code).
    pub exit: Option<i32>,
    /// The eval report (result and display outputs), when there is one.
    pub result_channel: Option<Vec<u8>>,
    /// The tar of the files the call wrote.
    pub files_tar: Option<Vec<u8>>,
    /// The call's timeout passed (and it was interrupted).
    pub timed_out: bool,
    /// The interpreter is gone or would not stop: the session must be rebuilt.
    pub lost: bool,
    /// The kernel killed a process of the session for memory during the call.
    pub oom_killed: bool,
    /// Memory the runner's cgroup used after the call, as the runner read it (`None` where it cannot: no cgroup
    /// file in its view). A Pod's runner sees its container's cgroup; the embedded backend measures its own.
    pub memory_bytes: Option<u64>,
}

impl CallObserved {
    /// A call that could not run: the interpreter is gone.
    pub fn lost() -> Self {
        CallObserved { lost: true, ..Default::default() }
    }
}

/// One output stream of a call.
#[derive(Debug, Default)]
pub struct CapturedText {
    /// The bytes kept.
    pub bytes: Vec<u8>,
    /// Output beyond the cap was dropped.
    pub truncated: bool,
}

/// The caps of a call.
#[derive(Debug, Clone, Copy)]
pub struct CallCaps {
    /// Bytes of standard output and of standard error kept.
    pub output_bytes: usize,
    /// Bytes of files kept with the call.
    pub files_bytes: u64,
    /// Files kept with the call.
    pub files_count: usize,
}

#[derive(Deserialize)]
struct EvalReply {
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    exit: i32,
    #[serde(default)]
    result_n: u64,
    #[serde(default)]
    write_error: Option<String>,
    #[serde(default)]
    memory: Option<u64>,
}

/// Why a file request failed.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// No regular file there (links are never followed).
    #[error("no such file")]
    NotFound,
    /// A path that cannot name a file of `/work`.
    #[error("invalid path")]
    InvalidPath,
    /// A directory is there.
    #[error("a directory, not a file")]
    IsDirectory,
    /// Over the size a request moves.
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// `/work` is full.
    #[error("no space left in the session's /work (raise disk_mb)")]
    NoSpace,
    /// Anything else (the message says what).
    #[error("{0}")]
    Failed(String),
    /// The interpreter is gone.
    #[error(transparent)]
    Lost(#[from] FrameError),
}

impl SessionLink {
    /// A link over a runner's separate streams: its standard input, output and error, and its control
    /// descriptor.
    pub fn from_streams<O, E, C>(requests: Requests, stdout: O, stderr: E, control: C, max_payload: u64) -> Self
    where
        O: AsyncRead + Unpin + Send + 'static,
        E: AsyncRead + Unpin + Send + 'static,
        C: AsyncRead + Unpin + Send + 'static,
    {
        let (want, want_rx) = mpsc::channel(1);
        let (reply_tx, replies) = mpsc::channel(1);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (err_tx, err_rx) = mpsc::channel(64);
        let tasks = vec![
            tokio::spawn(forward(stdout, out_tx)),
            tokio::spawn(forward(stderr, err_tx)),
            tokio::spawn(read_replies(Replies::new(control), want_rx, reply_tx, max_payload)),
        ];
        let (stdout, stderr) = (out_rx, err_rx);
        Self { requests, want, replies, broken: false, stdout, stderr, early: Default::default(), tasks, max_payload }
    }

    /// A link over a runner in mux mode: one stream of frames carries its output, error and replies.
    pub fn from_mux<M>(requests: Requests, muxed: M, max_payload: u64) -> Self
    where
        M: AsyncRead + Unpin + Send + 'static,
    {
        let (want, want_rx) = mpsc::channel(1);
        let (reply_tx, replies) = mpsc::channel(1);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (err_tx, err_rx) = mpsc::channel(64);
        // The control stream comes out of the mux as bytes, read by the same frame reader as a descriptor's.
        let (control_w, control_r) = tokio::io::duplex(1 << 20);
        let tasks = vec![
            tokio::spawn(demux(muxed, out_tx, err_tx, control_w, max_payload)),
            tokio::spawn(read_replies(Replies::new(control_r), want_rx, reply_tx, max_payload)),
        ];
        let (stdout, stderr) = (out_rx, err_rx);
        Self { requests, want, replies, broken: false, stdout, stderr, early: Default::default(), tasks, max_payload }
    }

    /// Largest payload a reply may carry.
    pub fn max_payload(&self) -> u64 {
        self.max_payload
    }

    /// Runs one call (see docs/sessions.md for timeouts and interrupts).
    pub async fn call(&mut self, call: &SessionCall, caps: CallCaps, control: &dyn SessionControl) -> CallObserved {
        let nonce = random_nonce();
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
            "nonce": nonce, "files_max_bytes": caps.files_bytes, "files_max_count": caps.files_count,
        });
        let oom_before = control.oom_kills();
        let mut observed = CallObserved::default();
        let end = marker(&nonce);
        let mut outs = [CallOutput::new(end.clone(), caps.output_bytes), CallOutput::new(end, caps.output_bytes)];
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

        if self.broken || self.want.send(()).await.is_err() {
            return CallObserved::lost();
        }
        let deadline = tokio::time::Instant::now() + call.timeout;
        let sent = tokio::time::timeout_at(deadline, self.send(header, &payload)).await;
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
                        // Another call's reply (a program can write frames of its own): the link is out of step.
                        Ok(parsed) if parsed.nonce == nonce => reply = Some((parsed, data)),
                        Ok(_) | Err(_) => observed.lost = true,
                    },
                    Some(Err(_)) | None => observed.lost = true,
                },
                () = tokio::time::sleep_until(deadline), if interrupted_at.is_none() => {
                    observed.timed_out = true;
                    interrupted_at = Some(tokio::time::Instant::now());
                    if !control.interrupt() {
                        let sent = tokio::time::timeout(INTERRUPT_GRACE, self.send(json!({"op": "interrupt"}), &[])).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            observed.lost = true;
                        }
                    }
                },
                () = sleep_until_opt(grace_end), if grace_end.is_some() => observed.lost = true,
            }
        }
        observed.oom_killed = control.oom_kills() > oom_before;
        if observed.lost {
            self.broken = true;
            // What is still in the streams belongs to this call.
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
                let note = format!("the call's files could not be written: {why}\n");
                observed.stderr.bytes.extend_from_slice(note.as_bytes());
                observed.exit = Some(1);
                return observed;
            }
            observed.exit = Some(reply.exit);
            observed.memory_bytes = reply.memory;
            let split = usize::try_from(reply.result_n).unwrap_or(usize::MAX).min(data.len());
            let (channel, tar) = data.split_at(split);
            observed.result_channel = (!channel.is_empty()).then(|| channel.to_vec());
            observed.files_tar = (!tar.is_empty()).then(|| tar.to_vec());
        }
        observed
    }

    /// The regular files under `/work` now (at most `max_count`), and whether some were left out.
    pub async fn list(&mut self, max_count: usize) -> Result<(Vec<OutputFile>, bool), FileOpError> {
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

    /// One file's bytes (at most `max`).
    pub async fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, FileOpError> {
        let (header, data) = self.request(json!({"op": "get", "path": path, "max": max}), &[]).await?;
        check_reply(&header, max)?;
        Ok(data)
    }

    /// Writes `size` bytes read from `source` to `path` (parent directories created).
    pub async fn put(
        &mut self,
        path: &str,
        size: u64,
        mut source: impl AsyncRead + Unpin,
    ) -> Result<OutputFile, FileOpError> {
        self.expect_reply().await?;
        let head = frame(json!({"op": "put", "path": path}), usize::try_from(size).unwrap_or(usize::MAX));
        let requests = &mut self.requests;
        let writing = async {
            requests.write_all(&head).await?;
            let copied = tokio::io::copy(&mut (&mut source).take(size), requests).await?;
            if copied != size {
                return Err(std::io::Error::other("the upload ended early"));
            }
            requests.flush().await
        };
        let written = tokio::time::timeout(FILE_OP_TIMEOUT, writing).await;
        if !matches!(written, Ok(Ok(()))) {
            // Part of the payload may be in the pipe: the runner would read the next request as file bytes.
            self.broken = true;
        }
        written
            .map_err(|_| FileOpError::Failed("the session did not take the upload in time".into()))?
            .map_err(FrameError::Io)?;
        let (header, _) = self.reply().await?;
        check_reply(&header, size)?;
        let sha256 = header.get("sha256").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        Ok(OutputFile { path: path.to_owned(), size, sha256 })
    }

    async fn send(&mut self, header: serde_json::Value, payload: &[u8]) -> std::io::Result<()> {
        let head = frame(header, payload.len());
        self.requests.write_all(&head).await?;
        self.requests.write_all(payload).await?;
        self.requests.flush().await
    }

    async fn request(
        &mut self,
        header: serde_json::Value,
        payload: &[u8],
    ) -> Result<(serde_json::Value, Vec<u8>), FileOpError> {
        self.expect_reply().await?;
        let sent = tokio::time::timeout(FILE_OP_TIMEOUT, self.send(header, payload)).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.broken = true;
        }
        sent.map_err(|_| FileOpError::Failed("the session did not take the request in time".into()))?
            .map_err(FrameError::Io)?;
        self.reply().await
    }

    /// Asks the reader for the next reply; fails when the link is done.
    async fn expect_reply(&mut self) -> Result<(), FileOpError> {
        if self.broken || self.want.send(()).await.is_err() {
            return Err(FileOpError::Lost(FrameError::Closed));
        }
        Ok(())
    }

    async fn reply(&mut self) -> Result<(serde_json::Value, Vec<u8>), FileOpError> {
        let reply = match tokio::time::timeout(FILE_OP_TIMEOUT, self.replies.recv()).await {
            Err(_) => Err(FileOpError::Failed("the session did not answer in time".into())),
            Ok(None) => Err(FileOpError::Lost(FrameError::Closed)),
            Ok(Some(r)) => r.map_err(FileOpError::from),
        };
        if reply.is_err() {
            self.broken = true;
        }
        reply
    }
}

impl Drop for SessionLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn check_reply(header: &serde_json::Value, max: u64) -> Result<(), FileOpError> {
    match header.get("error").and_then(|e| e.as_str()) {
        None => Ok(()),
        Some("not_found") => Err(FileOpError::NotFound),
        Some("invalid_path") => Err(FileOpError::InvalidPath),
        Some("is_directory") => Err(FileOpError::IsDirectory),
        Some("too_large") => Err(FileOpError::TooLarge(max)),
        Some("no_space") => Err(FileOpError::NoSpace),
        Some(other) => Err(FileOpError::Failed(other.to_owned())),
    }
}

/// 128 random bits as hex, from the kernel: a program cannot guess where its call's output ends.
fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Moves a stream's chunks to `tx` until end-of-file.
async fn forward(mut rx: impl AsyncRead + Unpin, tx: mpsc::Sender<Vec<u8>>) {
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

/// Reads one reply whole per reply awaited and passes it on, until the runner closes its side.
async fn read_replies<R: AsyncRead + Unpin>(
    mut replies: Replies<R>,
    mut want: mpsc::Receiver<()>,
    tx: mpsc::Sender<Reply>,
    max_payload: u64,
) {
    while want.recv().await.is_some() {
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

/// Splits a runner's muxed output into its streams, until it ends (or sends something that is not a frame).
async fn demux<M: AsyncRead + Unpin>(
    muxed: M,
    out: mpsc::Sender<Vec<u8>>,
    err: mpsc::Sender<Vec<u8>>,
    mut control: tokio::io::DuplexStream,
    max_payload: u64,
) {
    #[derive(Deserialize)]
    struct Piece {
        s: String,
    }
    let mut frames = Replies::new(muxed);
    // One piece is at most what the runner reads at once; a reply travels in several.
    let max_piece = max_payload.min(1 << 20);
    loop {
        let Ok((piece, n)) = frames.header::<Piece>().await else { return };
        let Ok(data) = frames.payload(n, max_piece).await else { return };
        let sent = match piece.s.as_str() {
            "out" => out.send(data).await.is_ok(),
            "err" => err.send(data).await.is_ok(),
            "ctl" => control.write_all(&data).await.is_ok(),
            _ => true,
        };
        if !sent {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSignals;

    impl SessionControl for NoSignals {
        fn interrupt(&self) -> bool {
            false
        }
        fn oom_kills(&self) -> u64 {
            0
        }
    }

    fn piece(stream: &str, data: &[u8]) -> Vec<u8> {
        let mut f = frame(json!({"s": stream}), data.len());
        f.extend_from_slice(data);
        f
    }

    /// A runner answering one call, in mux mode: its output, markers and reply arrive as pieces of one stream.
    #[tokio::test]
    async fn a_muxed_call_is_split_into_its_streams_and_reply() {
        let (requests_w, mut requests_r) = tokio::io::duplex(1 << 16);
        let (mut runner_out, muxed) = tokio::io::duplex(1 << 16);
        let mut link = SessionLink::from_mux(Box::new(requests_w), muxed, 1 << 20);
        let runner = tokio::spawn(async move {
            let mut frames = Replies::new(&mut requests_r);
            let (header, n): (serde_json::Value, u64) = frames.header().await.unwrap();
            frames.payload(n, 1 << 20).await.unwrap();
            let end = marker(header["nonce"].as_str().unwrap());
            let report = br#"{"result": "42", "outputs": []}"#;
            let mut reply = frame(json!({"nonce": header["nonce"], "exit": 0, "result_n": report.len()}), report.len());
            reply.extend_from_slice(report);
            for p in [
                piece("out", b"hel"),
                piece("out", b"lo\n"),
                piece("out", &end),
                piece("err", &end),
                piece("ctl", &reply[..5]),
                piece("ctl", &reply[5..]),
            ] {
                runner_out.write_all(&p).await.unwrap();
            }
            assert_eq!(header["code"], "x + 1");
            runner_out
        });
        let call = SessionCall {
            code: "x + 1".into(),
            eval_last_expr: true,
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let caps = CallCaps { output_bytes: 1 << 20, files_bytes: 0, files_count: 0 };
        let observed = link.call(&call, caps, &NoSignals).await;
        let _keep_open = runner.await.unwrap();
        assert!(!observed.lost && !observed.timed_out);
        assert_eq!(observed.stdout.bytes, b"hello\n");
        assert_eq!(observed.stderr.bytes, b"");
        assert_eq!(observed.exit, Some(0));
        assert_eq!(observed.result_channel.as_deref(), Some(&br#"{"result": "42", "outputs": []}"#[..]));
    }

    /// A runner that never answers: the interrupt goes in band, and after the grace the call is lost.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_call_is_interrupted_in_band_then_lost() {
        let (requests_w, mut requests_r) = tokio::io::duplex(1 << 16);
        let (_runner_out, muxed) = tokio::io::duplex(1 << 16);
        let mut link = SessionLink::from_mux(Box::new(requests_w), muxed, 1 << 20);
        let call =
            SessionCall { code: "while True: pass".into(), timeout: Duration::from_secs(1), ..Default::default() };
        let caps = CallCaps { output_bytes: 1024, files_bytes: 0, files_count: 0 };
        let observed = link.call(&call, caps, &NoSignals).await;
        assert!(observed.timed_out && observed.lost);
        let mut frames = Replies::new(&mut requests_r);
        let (first, n): (serde_json::Value, u64) = frames.header().await.unwrap();
        frames.payload(n, 1 << 20).await.unwrap();
        let (second, _): (serde_json::Value, u64) = frames.header().await.unwrap();
        assert_eq!((first["op"].as_str(), second["op"].as_str()), (Some("eval"), Some("interrupt")));
    }
}
