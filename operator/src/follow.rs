//! Reading the runner's frames while the program runs, so that a result does not depend on the container log
//! surviving until the end: the kubelet rotates a container's log file when it outgrows `containerLogMaxSize`, and
//! a read once the program ended then sees only the file's last part.
//!
//! One follower per execution Pod whose main container runs: a task following the main container's log
//! (`follow=true`) that decodes frames as they arrive and keeps them in a [`FollowedLog`]. A dropped stream is
//! followed again from the head of the current log file; frames carry sequence numbers
//! (`pyexec_core::pod::protocol`), so the ones already kept are skipped and a missing one (rotated away while no
//! stream was open) is noticed rather than papered over. When the execution is collected, a follower that saw every
//! frame up to the end frame gives the result without reading the log again; otherwise [`merge`] completes what it
//! has with a read of the log, or falls back to that read alone (which notices a rotated log, as before).
//!
//! Memory: followers live in [`Followers`], keyed by Pod uid, and go when their execution's children are deleted
//! (after collection, on a kill or a refusal), when the execution leaves the controller's store, or when the
//! execution is deleted; at most [`MAX_FOLLOWERS`] exist (beyond that, executions are collected by reading the
//! log at the end). Each keeps at most [`FollowedLog::cap_for`] bytes of frames (three times `outputLimitBytes`,
//! twice the eval result's limit, and the largest tar of files the runner sends for the operator's `files` caps:
//! the runner never writes more) and a line buffer of at most 4 MiB (`FrameDecoder`); one that would keep more
//! gives up and is collected by reading the log.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use pyexec_core::pod::protocol::{MAIN_CONTAINER, RESULT_LIMIT_BYTES};
use pyexec_core::pod::{Frame, FrameDecoder, Numbered, PodLog, parse_log};
use pyexec_crds::PythonExecution;
use pyexec_crds::pod::pod_nonce;

/// Most followers at once. Far more than run at once on most clusters; beyond it, executions are collected by
/// reading the log once the program ended (as without followers).
pub const MAX_FOLLOWERS: usize = 1024;
/// Reconnections in a row that bring nothing (no new frame, and the stream did not last [`LASTING`]) after which a
/// follower gives up: the container ended without an end frame (its runner was killed), or the log cannot be read.
const MAX_IDLE_RECONNECTS: u32 = 6;
/// The first wait before following again; it doubles with each idle reconnection, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A stream that stayed open this long counts as working even when the program wrote nothing meanwhile.
const LASTING: Duration = Duration::from_secs(30);
/// How long collecting waits for a connected follower to read the rest of a log that is ending. The kubelet ends a
/// followed log when the container ends, before the Pod's status says so: this only bounds a slow API.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Why a follower's frames cannot make a result on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A frame is missing: the log was rotated while no stream was open (or before the first one).
    Gap,
    /// More bytes than the runner can write: not the runner's frames, or not this configuration's.
    Overflow,
    /// Unnumbered frames (a runner from before sequence numbers) after a reconnection: they cannot be matched with
    /// the ones already kept.
    Unresumable,
}

/// The frames read from a followed log, in order and without duplicates.
#[derive(Debug, Clone)]
pub struct FollowedLog {
    log: PodLog,
    /// The sequence number of the next frame wanted.
    next: u64,
    /// Bytes kept.
    held: usize,
    cap: usize,
    /// A stream was opened again after frames were kept: unnumbered frames can no longer be placed.
    resumed: bool,
    broken: Option<Broken>,
}

impl FollowedLog {
    /// An empty log that keeps at most `cap` bytes of frames.
    pub fn new(cap: usize) -> FollowedLog {
        FollowedLog { log: PodLog::default(), next: 0, held: 0, cap, resumed: false, broken: None }
    }

    /// The most bytes of frames a runner with this output limit and this largest tar of files writes: each of
    /// stdout, stderr and the pre-commands' output up to the limit, the tar of files
    /// (`OperatorConfig::files_archive_bytes`), and an end frame whose eval result (base64) stays under twice
    /// [`RESULT_LIMIT_BYTES`].
    pub fn cap_for(output_limit_bytes: u64, files_archive_bytes: u64) -> usize {
        let at_most = |n: u64| usize::try_from(n).unwrap_or(usize::MAX / 8);
        at_most(output_limit_bytes).saturating_mul(3).saturating_add(at_most(files_archive_bytes))
            + 2 * RESULT_LIMIT_BYTES
    }

    /// A new stream starts: it reads the current log file from its head, so frames may come again.
    pub fn reconnected(&mut self) {
        if self.next > 0 {
            self.resumed = true;
        }
    }

    /// Takes one decoded frame: the next one in order is kept, one already kept is skipped, a gap or an
    /// overflow breaks the log (its frames are dropped, the memory freed). Whether it was kept.
    pub fn accept(&mut self, numbered: Numbered) -> bool {
        if self.broken.is_some() || self.log.end.is_some() {
            return false;
        }
        let seq = match numbered.seq {
            Some(seq) => seq,
            None if self.resumed => return self.break_with(Broken::Unresumable),
            // The first stream of a runner without numbers: frames come in order.
            None => self.next,
        };
        if seq < self.next {
            return false;
        }
        if seq > self.next {
            return self.break_with(Broken::Gap);
        }
        self.held = self.held.saturating_add(frame_size(&numbered.frame));
        if self.held > self.cap {
            return self.break_with(Broken::Overflow);
        }
        self.next += 1;
        let log = &mut self.log;
        match numbered.frame {
            Frame::End(end) => {
                log.end = Some(*end);
                return true;
            }
            Frame::Start => log.started = true,
            Frame::Stdout(data) => log.stdout.extend_from_slice(&data),
            Frame::Stderr(data) => log.stderr.extend_from_slice(&data),
            Frame::PreOutput(data) => log.pre_output.extend_from_slice(&data),
            Frame::Files(data) => log.files.extend_from_slice(&data),
        }
        log.frames_read += 1;
        true
    }

    fn break_with(&mut self, why: Broken) -> bool {
        self.broken = Some(why);
        self.log = PodLog::default();
        self.held = 0;
        false
    }

    /// Every frame up to the end frame is here.
    pub fn complete(&self) -> bool {
        self.broken.is_none() && self.log.end.is_some() && !self.log.output_lost()
    }

    /// Why the frames cannot make a result, if so.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// How many frames were kept.
    pub fn frames(&self) -> u64 {
        self.next
    }

    /// The frames, as [`parse_log`] would give them for the whole log.
    pub fn into_log(self) -> PodLog {
        self.log
    }
}

/// Bytes a frame keeps in memory.
fn frame_size(frame: &Frame) -> usize {
    match frame {
        Frame::Start => 0,
        Frame::Stdout(d) | Frame::Stderr(d) | Frame::PreOutput(d) | Frame::Files(d) => d.len(),
        Frame::End(end) => {
            end.result.as_ref().map_or(0, String::len)
                + end.installed.iter().map(String::len).sum::<usize>()
                + end.fence_open.as_ref().map_or(0, String::len)
        }
    }
}

/// The frames of a finished Pod from what its follower kept (if anything) and a read of its log (`log`): the
/// follower's frames completed by the read when they join up (the read holds the current log file, which may have
/// lost its head to a rotation), else the read alone, whose rotation `PodLog::output_lost` notices.
pub fn merge(followed: Option<FollowedLog>, log: &[u8], nonce: &str) -> PodLog {
    let mut merged = followed.filter(|f| f.broken.is_none()).unwrap_or_else(|| FollowedLog::new(usize::MAX));
    merged.reconnected();
    let mut decoder = FrameDecoder::new(nonce);
    for frame in decoder.push_numbered(log) {
        merged.accept(frame);
    }
    if let Some(frame) = decoder.finish_numbered() {
        merged.accept(frame);
    }
    if merged.broken.is_none() && merged.frames() > 0 { merged.into_log() } else { parse_log(log, nonce) }
}

/// What a follower's task shares with the operator.
#[derive(Debug)]
struct Shared {
    log: Mutex<FollowedLog>,
    /// A stream is open and being read.
    connected: AtomicBool,
    /// The task ended (the log is complete or broken, the Pod is gone, or it gave up).
    stopped: AtomicBool,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, FollowedLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self) -> bool {
        let log = self.log();
        log.broken.is_some() || log.log.end.is_some()
    }
}

/// One follower: its execution (for the sweep), what it read, and its task (aborted when it is dropped).
#[derive(Debug)]
struct Follower {
    execution: ObjectRef<PythonExecution>,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A snapshot of a follower.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The frames it kept.
    pub log: FollowedLog,
    /// Whether a stream is open now.
    pub connected: bool,
    /// Whether its task ended.
    pub stopped: bool,
}

/// The followers of the execution Pods that run, by Pod uid.
#[derive(Debug, Default)]
pub struct Followers {
    by_pod: Mutex<HashMap<String, Follower>>,
}

impl Followers {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Follower>> {
        self.by_pod.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following the main container's log of `pod` (the Pod of `cr`, whose main container runs), keeping at
    /// most `cap` bytes of frames ([`FollowedLog::cap_for`]), unless it is followed already, carries no nonce, or
    /// [`MAX_FOLLOWERS`] are. Must be called within a Tokio runtime.
    pub fn start(&self, cr: &PythonExecution, pods: Api<Pod>, pod: &Pod, cap: usize) {
        let (Some(uid), Some(nonce)) = (pod.uid(), pod_nonce(pod)) else { return };
        let mut map = self.map();
        if map.contains_key(&uid) {
            return;
        }
        if map.len() >= MAX_FOLLOWERS {
            tracing::warn!(pod = %pod.name_any(), followers = map.len(), "not following the log: too many followers");
            return;
        }
        let shared = Arc::new(Shared {
            log: Mutex::new(FollowedLog::new(cap)),
            connected: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let task = tokio::spawn(follow(pods, pod.name_any(), nonce, shared.clone())).abort_handle();
        map.insert(uid, Follower { execution: ObjectRef::from_obj(cr), shared, task });
    }

    /// What the follower of the Pod `pod_uid` kept, if there is one.
    pub fn snapshot(&self, pod_uid: &str) -> Option<Snapshot> {
        let shared = self.map().get(pod_uid).map(|f| f.shared.clone())?;
        let log = shared.log().clone();
        Some(Snapshot {
            log,
            connected: shared.connected.load(Ordering::Acquire),
            stopped: shared.stopped.load(Ordering::Acquire),
        })
    }

    /// Waits (at most `within`) while the follower of `pod_uid` is connected and still short of the end frame: the
    /// program ended, so its log is ending too.
    pub async fn settle(&self, pod_uid: &str, within: Duration) {
        let Some(shared) = self.map().get(pod_uid).map(|f| f.shared.clone()) else { return };
        let deadline = Instant::now() + within;
        while shared.connected.load(Ordering::Acquire) && !shared.done() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Forgets (and stops) the followers of the execution `execution`: it was collected, or it is gone.
    pub fn forget(&self, execution: &ObjectRef<PythonExecution>) {
        self.map().retain(|_, f| f.execution != *execution);
    }

    /// Keeps only the followers of the executions in `live` (those in the controller's store).
    pub fn retain(&self, live: &HashSet<ObjectRef<PythonExecution>>) {
        self.map().retain(|_, f| live.contains(&f.execution));
    }

    /// How many followers exist.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// The follower's task: follows the log until it holds the end frame, breaks, the Pod is gone, or following
/// stops bringing anything.
async fn follow(pods: Api<Pod>, pod: String, nonce: String, shared: Arc<Shared>) {
    let mut idle = 0u32;
    loop {
        let before = shared.log().frames();
        let opened = Instant::now();
        let params = LogParams { container: Some(MAIN_CONTAINER.into()), follow: true, ..LogParams::default() };
        match pods.log_stream(&pod, &params).await {
            Ok(stream) => {
                shared.log().reconnected();
                shared.connected.store(true, Ordering::Release);
                let read = read_frames(stream, &nonce, &shared).await;
                shared.connected.store(false, Ordering::Release);
                if let Err(e) = read {
                    tracing::debug!(%pod, error = %e, "the followed log broke off; following it again");
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => break,
            Err(e) => tracing::debug!(%pod, error = %e, "following the log failed; trying again"),
        }
        if shared.done() {
            if let Some(why) = shared.log().broken() {
                tracing::info!(%pod, ?why, "the followed log is incomplete; the result will be read at the end");
            }
            break;
        }
        let progressed = shared.log().frames() > before || opened.elapsed() >= LASTING;
        idle = if progressed { 0 } else { idle + 1 };
        if idle > MAX_IDLE_RECONNECTS {
            tracing::debug!(%pod, "the log brings nothing more; no longer following it");
            break;
        }
        let backoff = FIRST_BACKOFF.saturating_mul(1 << idle.min(16)).min(MAX_BACKOFF);
        tokio::time::sleep(if idle == 0 { FIRST_BACKOFF } else { backoff }).await;
    }
    shared.stopped.store(true, Ordering::Release);
}

/// Reads one stream to its end (or until the log is complete or broken), keeping its frames.
async fn read_frames(stream: impl AsyncBufRead, nonce: &str, shared: &Shared) -> std::io::Result<()> {
    let mut stream = Box::pin(stream);
    let mut decoder = FrameDecoder::new(nonce);
    loop {
        let chunk = stream.fill_buf().await?;
        if chunk.is_empty() {
            break;
        }
        let frames = decoder.push_numbered(chunk);
        let len = chunk.len();
        stream.consume_unpin(len);
        let mut log = shared.log();
        for frame in frames {
            log.accept(frame);
        }
        if log.broken.is_some() || log.log.end.is_some() {
            return Ok(());
        }
    }
    if let Some(frame) = decoder.finish_numbered() {
        shared.log().accept(frame);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::pod::protocol::{
        FRAME_END, FRAME_START, FRAME_STDERR, FRAME_STDOUT, encode_frame, encode_unnumbered_frame,
    };

    fn numbered(seq: u64, frame: Frame) -> Numbered {
        Numbered { seq: Some(seq), frame }
    }

    fn out(data: &str) -> Frame {
        Frame::Stdout(data.as_bytes().to_vec())
    }

    fn end(frames: u64) -> Frame {
        let json = format!(r#"{{"exit":0,"frames":{frames}}}"#);
        Frame::End(Box::new(serde_json::from_str(&json).unwrap()))
    }

    #[test]
    fn frames_seen_again_are_skipped_and_a_missing_one_breaks_the_log() {
        let mut log = FollowedLog::new(1 << 20);
        assert!(log.accept(numbered(0, Frame::Start)));
        assert!(log.accept(numbered(1, out("a"))));
        log.reconnected();
        assert!(!log.accept(numbered(0, Frame::Start)), "seen already");
        assert!(!log.accept(numbered(1, out("a"))), "seen already");
        assert!(log.accept(numbered(2, out("b"))));
        assert!(log.accept(numbered(3, end(3))));
        assert!(log.complete());
        assert_eq!(log.clone().into_log().stdout, b"ab");

        let mut gap = FollowedLog::new(1 << 20);
        gap.accept(numbered(0, Frame::Start));
        assert!(!gap.accept(numbered(2, out("b"))));
        assert_eq!((gap.broken(), gap.complete()), (Some(Broken::Gap), false));
        assert!(!gap.accept(numbered(1, out("a"))), "a broken log keeps nothing more");
        assert!(gap.into_log().stdout.is_empty(), "and dropped what it had");

        let mut late = FollowedLog::new(1 << 20);
        assert!(!late.accept(numbered(5, out("tail"))), "a follower that starts after a rotation has a gap");
        assert_eq!(late.broken(), Some(Broken::Gap));
    }

    #[test]
    fn file_frames_are_kept_in_order_and_count_against_the_cap() {
        let mut log = FollowedLog::new(10);
        assert!(log.accept(numbered(0, Frame::Start)));
        assert!(log.accept(numbered(1, Frame::Files(b"tar ".to_vec()))));
        assert!(log.accept(numbered(2, Frame::Files(b"bytes".to_vec()))));
        let json = r#"{"exit":0,"frames":3,"files_bytes":9}"#;
        assert!(log.accept(numbered(3, Frame::End(Box::new(serde_json::from_str(json).unwrap())))));
        assert!(log.complete());
        assert_eq!(log.clone().into_log().files, b"tar bytes");
        let mut small = FollowedLog::new(4);
        small.accept(numbered(0, Frame::Start));
        assert!(!small.accept(numbered(1, Frame::Files(b"too long".to_vec()))));
        assert_eq!(small.broken(), Some(Broken::Overflow));
    }

    #[test]
    fn unnumbered_frames_are_kept_in_order_until_a_reconnection() {
        let mut log = FollowedLog::new(1 << 20);
        assert!(log.accept(Numbered { seq: None, frame: Frame::Start }));
        assert!(log.accept(Numbered { seq: None, frame: out("a") }));
        log.reconnected();
        assert!(!log.accept(Numbered { seq: None, frame: Frame::Start }));
        assert_eq!(log.broken(), Some(Broken::Unresumable));
        // A reconnection before any frame changes nothing.
        let mut fresh = FollowedLog::new(1 << 20);
        fresh.reconnected();
        assert!(fresh.accept(Numbered { seq: None, frame: Frame::Start }));
    }

    #[test]
    fn a_log_beyond_what_the_runner_writes_is_given_up() {
        let mut log = FollowedLog::new(FollowedLog::cap_for(4, 0));
        assert_eq!(FollowedLog::cap_for(4, 0), 12 + 2 * RESULT_LIMIT_BYTES);
        assert_eq!(FollowedLog::cap_for(4, 100), 112 + 2 * RESULT_LIMIT_BYTES, "the files' tar counts too");
        log.accept(numbered(0, Frame::Start));
        let big = "x".repeat(2 * RESULT_LIMIT_BYTES + 13);
        assert!(!log.accept(numbered(1, out(&big))));
        assert_eq!(log.broken(), Some(Broken::Overflow));
    }

    #[test]
    fn merging_completes_the_followed_head_with_the_rotated_tail() {
        let head = encode_frame("n", 0, FRAME_START, b"") + &encode_frame("n", 1, FRAME_STDOUT, b"one ");
        let last =
            encode_frame("n", 3, FRAME_STDERR, b"err") + &encode_frame("n", 4, FRAME_END, br#"{"exit":0,"frames":4}"#);
        let tail = encode_frame("n", 2, FRAME_STDOUT, b"two ") + &last;
        let mut followed = FollowedLog::new(1 << 20);
        let mut decoder = FrameDecoder::new("n");
        for frame in decoder.push_numbered(head.as_bytes()) {
            followed.accept(frame);
        }
        // The read at the end holds frame 1 again, then the rest.
        let read = encode_frame("n", 1, FRAME_STDOUT, b"one ") + &tail;
        let merged = merge(Some(followed.clone()), read.as_bytes(), "n");
        assert_eq!((merged.stdout.as_slice(), merged.stderr.as_slice()), (&b"one two "[..], &b"err"[..]));
        assert!(merged.started && !merged.output_lost());
        // The read starts after a frame the follower never got: the read alone, which says it lost its head.
        let alone = merge(Some(followed), last.as_bytes(), "n");
        assert!(alone.output_lost());
        assert_eq!((alone.stdout.as_slice(), alone.stderr.as_slice()), (&b""[..], &b"err"[..]));
        // No follower, an old runner's log: the same as reading it.
        let old = encode_unnumbered_frame("n", FRAME_START, b"")
            + &encode_unnumbered_frame("n", FRAME_STDOUT, b"x")
            + &encode_unnumbered_frame("n", FRAME_END, br#"{"exit":0,"frames":2}"#);
        assert_eq!(merge(None, old.as_bytes(), "n"), parse_log(old.as_bytes(), "n"));
    }
}
