//! The in-memory side of an execution that has not ended: its current state, the output produced so far (so a
//! follower joining late sees it all), and the channels that wake followers and waiters.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use pyexec_backend::{EventStream, ExecutionEvent, KillReason};
use pyexec_core::{ExecutionResult, ExecutionSpec};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

/// Output kept for late followers, per execution (the captured output itself is capped too).
const REPLAY_LIMIT_BYTES: usize = 4 << 20;

/// A pending or running execution.
pub struct Live {
    pub spec: Arc<ExecutionSpec>,
    pub workspace: PathBuf,
    /// The spooled standard input, when it was too large for the spec.
    pub stdin: Option<PathBuf>,
    /// The current state (`pending`, then `running` with `started_at`).
    pub result: ExecutionResult,
    pub cancel: CancellationToken,
    /// Why it is being stopped, when it is.
    pub kill: Option<KillReason>,
    replay: Vec<ExecutionEvent>,
    replay_bytes: usize,
    events: broadcast::Sender<ExecutionEvent>,
    done: watch::Sender<Option<ExecutionResult>>,
}

impl Live {
    pub fn new(result: ExecutionResult, spec: ExecutionSpec, workspace: PathBuf, stdin: Option<PathBuf>) -> Self {
        let (events, _) = broadcast::channel(256);
        let (done, _) = watch::channel(None);
        Live {
            spec: Arc::new(spec),
            workspace,
            stdin,
            result,
            cancel: CancellationToken::new(),
            kill: None,
            replay: Vec::new(),
            replay_bytes: 0,
            events,
            done,
        }
    }

    /// Records and broadcasts an event (output is kept for late followers up to a bound).
    pub fn publish(&mut self, event: ExecutionEvent) {
        if let ExecutionEvent::Output { data, .. } = &event
            && self.replay_bytes + data.len() <= REPLAY_LIMIT_BYTES
        {
            self.replay_bytes += data.len();
            self.replay.push(event.clone());
        }
        let _ = self.events.send(event);
    }

    /// A follower: the current status (`pending` or `running`), the output so far, then live events, ending with
    /// the result: what the Kubernetes backend's followers get too (docs/api.md, "Following an execution"). Must be
    /// called under the same lock as [`Live::publish`] so that nothing falls between the replay and the
    /// subscription.
    pub fn follow(&self) -> EventStream {
        let current = ExecutionEvent::Status(self.result.status);
        let replay = futures::stream::iter(std::iter::once(current).chain(self.replay.clone()));
        let live = BroadcastStream::new(self.events.subscribe()).filter_map(|e| async move { e.ok() });
        let mut done = false;
        Box::pin(replay.chain(live).take_while(move |e| {
            let more = !done;
            done = matches!(e, ExecutionEvent::Result(_));
            futures::future::ready(more)
        }))
    }

    /// Resolves with the final result.
    pub fn waiter(&self) -> watch::Receiver<Option<ExecutionResult>> {
        self.done.subscribe()
    }

    /// Delivers the final result to waiters and followers.
    pub fn finish(&mut self, result: &ExecutionResult) {
        self.publish(ExecutionEvent::Result(Box::new(result.clone())));
        let _ = self.done.send(Some(result.clone()));
    }
}

/// Waits on a waiter until the final result arrives.
pub async fn wait_done(mut rx: watch::Receiver<Option<ExecutionResult>>) -> Option<ExecutionResult> {
    loop {
        if let Some(result) = rx.borrow_and_update().clone() {
            return Some(result);
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}
