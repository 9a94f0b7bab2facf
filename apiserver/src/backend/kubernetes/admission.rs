//! The cap on executions in flight and the queue in front of it.
//!
//! At most `max_in_flight` resources created by this API server are not yet in a final phase (the tracker counts
//! them, and those of each tenant). A submission beyond that, or beyond its tenant's `max_running`, gets its
//! execution id and waits here with its resource already built but not created, in the queue shared with the
//! embedded backend (`pyexec_backend::fair`: per tenant first in first out, the tenants in turn, a tenant at its
//! `max_running` skipped); beyond `max_queue` waiting ones, submissions are refused (`QueueFull`, 429), and beyond
//! the tenant's `max_queued` too (`Exhausted`, 429, naming the quota). When a slot frees, the dispatcher creates
//! the resource of the tenant whose turn it is. Until then, readers (`GET`, waits, `/events`,
//! the list, DELETE) find the execution here, `pending`. One that ends without a resource (killed while waiting, or
//! refused by the Kubernetes API, or still waiting when the server stops) keeps its final result here for the
//! resources' time to live; the queue lives in this process's memory only, so after a restart those ids are unknown.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use pyexec_backend::fair::FairQueue;
use pyexec_backend::tenancy::Quotas;
use pyexec_core::{ExecutionResult, ExecutionStatus};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::FINGERPRINT_ANNOTATION;
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
    /// The fingerprint of the request that created it, when it came with an `Idempotency-Key`.
    fingerprint: Option<String>,
    /// Its tenant (also in `result`, which an ending replaces).
    tenant: Option<String>,
    /// The resource to create; taken when the execution gets its slot.
    resource: Option<Box<PythonExecution>>,
    /// Its state as readers see it while it has no resource.
    result: ExecutionResult,
    /// When it was accepted (seconds since the epoch, the list's order).
    accepted: i64,
    stage: watch::Sender<Stage>,
    ended: Option<Instant>,
}

struct State {
    /// Ids waiting for a slot, by tenant.
    queue: FairQueue<()>,
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
    pub(super) fn new(max_in_flight: usize, max_queue: usize, quotas: Quotas, keep: Duration) -> Admission {
        let state = State { queue: FairQueue::new(quotas, max_queue), entries: HashMap::new(), closing: false };
        Admission { max_in_flight: max_in_flight.max(1), max_queue, keep, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request fingerprint of the execution `id` while it is here (waiting, being created, or ended without a
    /// resource): `Some(None)` for one without an `Idempotency-Key`, `None` when it is not here.
    pub(super) fn fingerprint(&self, id: &str) -> Option<Option<String>> {
        self.lock().entries.get(id).map(|e| e.fingerprint.clone())
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

    /// Whether an execution of `tenant` may take a slot now without waiting: a slot is free, the tenant is below
    /// its `max_running`, and no waiting execution may take the slot (the queue goes first).
    fn runs_now(&self, state: &State, tracker: &Tracker, tenant: Option<&str>) -> bool {
        tracker.in_flight() < self.max_in_flight
            && state.queue.may_run(tenant, tracker.in_flight_of(tenant))
            && state.queue.peek(|t| tracker.in_flight_of(t)).is_none()
    }

    /// Why a submission of `tenant` would be refused now, checked before its source is prepared.
    pub(super) fn refusal(&self, tracker: &Tracker, tenant: Option<&str>) -> Option<BackendError> {
        let state = self.lock();
        if state.closing {
            return Some(BackendError::ShuttingDown);
        }
        if self.runs_now(&state, tracker, tenant) {
            return None;
        }
        state.queue.admits(tenant).err().map(|refusal| refusal.into_error(RETRY_AFTER))
    }

    /// Takes a slot for the execution `id` (resource `name`) of `tenant`, or queues it, or refuses it.
    pub(super) fn admit(
        &self,
        tracker: &Tracker,
        id: &str,
        name: &str,
        tenant: Option<&str>,
        resource: PythonExecution,
    ) -> Result<Admitted, BackendError> {
        let mut state = self.lock();
        if state.closing {
            return Err(BackendError::ShuttingDown);
        }
        if self.runs_now(&state, tracker, tenant) && tracker.reserve(name, tenant, self.max_in_flight) {
            return Ok(Admitted::Now(Box::new(resource)));
        }
        state.queue.push(id.to_owned(), tenant, ()).map_err(|refusal| refusal.into_error(RETRY_AFTER))?;
        let keep = self.keep;
        state.entries.retain(|_, e| e.ended.is_none_or(|at| at.elapsed() < keep));
        let accepted = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut result = ExecutionResult::pending(id);
        result.tenant = tenant.map(str::to_owned);
        let fingerprint = resource.annotations().get(FINGERPRINT_ANNOTATION).cloned();
        let entry = Entry {
            name: name.to_owned(),
            fingerprint,
            tenant: tenant.map(str::to_owned),
            resource: Some(Box::new(resource)),
            result,
            accepted,
            stage: watch::Sender::new(Stage::Queued),
            ended: None,
        };
        state.entries.insert(id.to_owned(), entry);
        tracker.set_queued(state.queue.len());
        Ok(Admitted::Queued)
    }

    /// The waiting execution whose turn it is, if a slot is free for it (and its tenant is below its
    /// `max_running`): its id, resource name and resource. Its slot is taken.
    pub(super) fn next(&self, tracker: &Tracker) -> Option<(String, String, Box<PythonExecution>)> {
        let mut state = self.lock();
        if state.closing {
            return None;
        }
        loop {
            let State { queue, entries, .. } = &mut *state;
            let mut orphan = false;
            // The slot is taken as the execution leaves the queue, so that the tenant's count and the queue's
            // turns agree.
            let taken = queue.pop_if(
                |tenant| tracker.in_flight_of(tenant),
                |id, tenant, ()| match entries.get(id) {
                    Some(entry) => tracker.reserve(&entry.name, tenant, self.max_in_flight),
                    // Cannot happen (every queued id has its entry): drop it from the queue.
                    None => {
                        orphan = true;
                        true
                    }
                },
            )?;
            tracker.set_queued(queue.len());
            if orphan {
                continue;
            }
            let Some(entry) = entries.get_mut(&taken.id) else { continue };
            let (id, taken) = (taken.id, (entry.name.clone(), entry.resource.take()));
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

    /// `id` ended without a resource, with `result` (which gets the execution's tenant).
    pub(super) fn ended(&self, id: &str, mut result: ExecutionResult) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(id) {
            result.tenant = entry.tenant.clone();
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
        let queued = state.queue.contains(id);
        let entry = state.entries.get_mut(id)?;
        if let Some(ended) = entry.stage.borrow().clone().ended() {
            return Some(Kill::Ended(ended.status));
        }
        if !queued {
            return Some(Kill::Creating(entry.stage.subscribe()));
        }
        let result = pyexec_core::outcome::killed_while_queued(entry.result.clone(), reason == KillReason::ClientGone);
        entry.resource = None;
        entry.result = result.clone();
        entry.ended = Some(Instant::now());
        entry.stage.send_replace(Stage::Ended(Box::new(result)));
        state.queue.remove(id);
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
        let waiting = state.queue.drain();
        for taken in &waiting {
            if let Some(entry) = state.entries.get_mut(&taken.id) {
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
