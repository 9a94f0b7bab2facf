//! The cap on executions in flight and the queue in front of it.
//!
//! At most `max_in_flight` resources created by this API server are not yet in a final phase (the tracker counts
//! them). A submission beyond that gets its execution id and waits here, first in first out, with its resource
//! already built but not created; beyond `max_queue` waiting ones, submissions are refused (`QueueFull`, 429). When
//! a slot frees, the dispatcher creates the oldest waiting resource. Until then, readers (`GET`, waits, `/events`,
//! the list, DELETE) find the execution here, `pending`. One that ends without a resource (killed while waiting, or
//! refused by the Kubernetes API, or still waiting when the server stops) keeps its final result here for the
//! resources' time to live; the queue lives in this process's memory only, so after a restart those ids are unknown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyexec_core::{ExecutionResult, ExecutionStatus};
use pyexec_crds::PythonExecution;
use tokio::sync::watch;

use super::tracker::Tracker;
use super::{BackendError, KillReason};

/// How long a refused client is asked to wait.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The error of an execution that was still waiting for a slot when the server stopped.
pub(super) const STOPPED_WHILE_QUEUED: &str =
    "the API server stopped before a slot was free: the execution never started; submit it again";

/// What became of an execution that waited for a slot.
#[derive(Debug, Clone)]
pub(super) enum Stage {
    /// Waiting for a slot, or its resource being created.
    Queued,
    /// Its resource exists: from now on the resource tells its state.
    Created,
    /// It ended without a resource.
    Ended(Box<ExecutionResult>),
}

/// Where a submission goes.
pub(super) enum Admitted {
    /// A slot was free: create this resource now.
    Now(Box<PythonExecution>),
    /// It waits for a slot.
    Queued,
}

/// What a kill of an execution known here did.
pub(super) enum Kill {
    /// It was waiting: it is `killed` and will never run.
    Dequeued,
    /// It had already ended (without a resource).
    Ended(ExecutionStatus),
    /// Its resource is being created: wait for it, then kill the resource.
    Creating(watch::Receiver<Stage>),
}

struct Entry {
    name: String,
    /// The resource to create; taken when the execution gets its slot.
    resource: Option<Box<PythonExecution>>,
    /// Its state as readers see it while it has no resource.
    result: ExecutionResult,
    /// When it was accepted (seconds since the epoch, the list's order).
    accepted: i64,
    stage: watch::Sender<Stage>,
    ended: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Ids waiting for a slot, oldest first.
    queue: VecDeque<String>,
    /// Executions accepted without a resource: waiting, being created, or ended.
    entries: HashMap<String, Entry>,
    closing: bool,
}

/// See the module documentation.
pub(super) struct Admission {
    max_in_flight: usize,
    max_queue: usize,
    /// How long results of executions that ended here are kept.
    keep: Duration,
    state: Mutex<State>,
}

impl Admission {
    pub(super) fn new(max_in_flight: usize, max_queue: usize, keep: Duration) -> Admission {
        Admission { max_in_flight: max_in_flight.max(1), max_queue, keep, state: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    pub(super) fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Executions waiting for a slot.
    pub(super) fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    fn full(pending: usize) -> BackendError {
        BackendError::QueueFull { pending, retry_after: RETRY_AFTER }
    }

    /// Why a submission would be refused now, checked before its source is prepared.
    pub(super) fn refusal(&self, tracker: &Tracker) -> Option<BackendError> {
        let state = self.lock();
        if state.closing {
            return Some(BackendError::ShuttingDown);
        }
        let slot_free = state.queue.is_empty() && tracker.in_flight() < self.max_in_flight;
        (!slot_free && state.queue.len() >= self.max_queue).then(|| Self::full(state.queue.len()))
    }

    /// Takes a slot for the execution `id` (resource `name`), or queues it, or refuses it.
    pub(super) fn admit(
        &self,
        tracker: &Tracker,
        id: &str,
        name: &str,
        resource: PythonExecution,
    ) -> Result<Admitted, BackendError> {
        let mut state = self.lock();
        if state.closing {
            return Err(BackendError::ShuttingDown);
        }
        // The queue goes first: a free slot is the oldest waiting execution's.
        if state.queue.is_empty() && tracker.reserve(name, self.max_in_flight) {
            return Ok(Admitted::Now(Box::new(resource)));
        }
        if state.queue.len() >= self.max_queue {
            return Err(Self::full(state.queue.len()));
        }
        let keep = self.keep;
        state.entries.retain(|_, e| e.ended.is_none_or(|at| at.elapsed() < keep));
        let accepted = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let entry = Entry {
            name: name.to_owned(),
            resource: Some(Box::new(resource)),
            result: ExecutionResult::pending(id),
            accepted,
            stage: watch::Sender::new(Stage::Queued),
            ended: None,
        };
        state.entries.insert(id.to_owned(), entry);
        state.queue.push_back(id.to_owned());
        tracker.set_queued(state.queue.len());
        Ok(Admitted::Queued)
    }

    /// The oldest waiting execution, if a slot is free for it: its id, resource name and resource.
    pub(super) fn next(&self, tracker: &Tracker) -> Option<(String, String, Box<PythonExecution>)> {
        let mut state = self.lock();
        if state.closing {
            return None;
        }
        loop {
            let id = state.queue.front()?.clone();
            let Some(entry) = state.entries.get_mut(&id) else {
                state.queue.pop_front();
                continue;
            };
            if !tracker.reserve(&entry.name, self.max_in_flight) {
                return None;
            }
            let taken = (entry.name.clone(), entry.resource.take());
            state.queue.pop_front();
            tracker.set_queued(state.queue.len());
            match taken {
                (name, Some(resource)) => return Some((id, name, resource)),
                // Cannot happen (only a waiting entry holds its resource); give the slot back.
                (name, None) => tracker.submitted(&name, false),
            }
        }
    }

    /// The resource of `id` was created: readers go to it from now on.
    pub(super) fn created(&self, id: &str) {
        if let Some(entry) = self.lock().entries.remove(id) {
            entry.stage.send_replace(Stage::Created);
        }
    }

    /// `id` ended without a resource, with `result`.
    pub(super) fn ended(&self, id: &str, result: ExecutionResult) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(id) {
            entry.result = result.clone();
            entry.ended = Some(Instant::now());
            entry.stage.send_replace(Stage::Ended(Box::new(result)));
        }
    }

    /// The state of `id` if it has no resource (waiting, being created, or ended here).
    pub(super) fn result(&self, id: &str) -> Option<ExecutionResult> {
        self.lock().entries.get(id).map(|e| e.result.clone())
    }

    /// Follows the stage of `id` if it has no resource yet.
    pub(super) fn watch(&self, id: &str) -> Option<watch::Receiver<Stage>> {
        self.lock().entries.get(id).map(|e| e.stage.subscribe())
    }

    /// Kills `id` if it is known here.
    pub(super) fn kill(&self, tracker: &Tracker, id: &str, reason: KillReason) -> Option<Kill> {
        let mut state = self.lock();
        let position = state.queue.iter().position(|q| q == id);
        let entry = state.entries.get_mut(id)?;
        if let Some(ended) = entry.stage.borrow().clone().ended() {
            return Some(Kill::Ended(ended.status));
        }
        let Some(position) = position else { return Some(Kill::Creating(entry.stage.subscribe())) };
        let result = pyexec_core::outcome::killed_while_queued(entry.result.clone(), reason == KillReason::ClientGone);
        entry.resource = None;
        entry.result = result.clone();
        entry.ended = Some(Instant::now());
        entry.stage.send_replace(Stage::Ended(Box::new(result)));
        state.queue.remove(position);
        tracker.set_queued(state.queue.len());
        Some(Kill::Dequeued)
    }

    /// Executions without a resource, for the list: (resource name, sort key seconds, result).
    pub(super) fn listed(&self) -> Vec<(String, i64, ExecutionResult)> {
        self.lock().entries.values().map(|e| (e.name.clone(), e.accepted, e.result.clone())).collect()
    }

    /// Stops admitting: every execution still waiting ends `failed` ([`STOPPED_WHILE_QUEUED`]). Returns how many.
    pub(super) fn close(&self, tracker: &Tracker) -> usize {
        let mut state = self.lock();
        state.closing = true;
        let waiting: Vec<String> = state.queue.drain(..).collect();
        for id in &waiting {
            if let Some(entry) = state.entries.get_mut(id) {
                let result = never_ran(entry.result.clone(), STOPPED_WHILE_QUEUED);
                entry.resource = None;
                entry.result = result.clone();
                entry.ended = Some(Instant::now());
                entry.stage.send_replace(Stage::Ended(Box::new(result)));
            }
        }
        tracker.set_queued(0);
        waiting.len()
    }
}

impl Stage {
    fn ended(self) -> Option<Box<ExecutionResult>> {
        match self {
            Stage::Ended(result) => Some(result),
            Stage::Queued | Stage::Created => None,
        }
    }
}

/// `record` (pending) ended before it ever ran, because of `why`.
pub(super) fn never_ran(mut record: ExecutionResult, why: &str) -> ExecutionResult {
    record.status = ExecutionStatus::Failed;
    record.exit_code = 1;
    record.error = Some(why.to_owned());
    record.finished_at = Some(pyexec_core::Timestamp::now());
    record
}
