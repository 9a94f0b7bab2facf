//! The queue in front of a backend's slots, shared by every backend that queues executions itself: executions wait
//! per tenant, first in first out within a tenant, and the tenants with waiting work take turns (docs/tenants.md).
//!
//! Why turns rather than one FIFO: with one FIFO, a tenant that submits a hundred executions makes every other
//! tenant wait for all of them. Here each tenant with waiting work is served in turn, `weight` executions per turn
//! (a weight of 0 counts as 1), so another tenant's execution starts within one turn of the others, whatever they
//! have queued. A tenant at its `max_running` is skipped without losing its place: it keeps its turn for when one
//! of its executions ends. A tenant that had nothing waiting joins at the end of the turn.
//!
//! The queue knows nothing of slots: the backend asks it for the next execution when a slot is free, and says how
//! many executions each tenant runs (a closure over its own counts, [`Running`] where it has none of its own), so
//! that a backend's own notion of "running" (a sandbox slot, a resource not yet finished) is the one capped.
//!
//! Caps: beyond the tenant's `max_queued` waiting executions, or beyond `max_queue` in all, a submission is refused
//! ([`Refusal`], HTTP 429). A cap of 0 means no cap, as the server's `PYEXEC_TENANT_*` settings say.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::BackendError;
use crate::tenancy::{Quota, Quotas};

/// A tenant as the queue keys it: its name, `None` for the anonymous tenant of a server without API keys.
type Key = Option<String>;

fn key(tenant: Option<&str>) -> Key {
    tenant.map(str::to_owned)
}

/// A cap of a quota; 0 is no cap (a tenant that may never run or never wait would only hold requests forever).
fn cap(n: Option<usize>) -> Option<usize> {
    n.filter(|&n| n > 0)
}

/// How many executions of its own a tenant is served per turn.
fn weight(quota: &Quota) -> u32 {
    quota.weight.max(1)
}

/// Why a submission cannot wait in the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The queue holds `max_queue` executions, every tenant's together.
    #[error("the execution queue is full ({pending} waiting); retry later")]
    Full {
        /// Executions waiting.
        pending: usize,
    },
    /// The tenant has as many executions waiting as its quota allows.
    #[error(
        "{} has {queued} executions queued, the most its quota allows (max_queued, PYEXEC_TENANT_MAX_QUEUED); \
         retry when one of them has started",
        tenant_label(tenant.as_deref())
    )]
    Tenant {
        /// The tenant (`None`: the anonymous tenant).
        tenant: Option<String>,
        /// Its executions waiting.
        queued: usize,
    },
}

/// How a message names a tenant.
fn tenant_label(tenant: Option<&str>) -> String {
    match tenant {
        Some(name) => format!("tenant {name}"),
        None => "the anonymous tenant".to_owned(),
    }
}

impl Refusal {
    /// The backend's error (HTTP 429 with `Retry-After`): `QueueFull` for the server's cap, so that it is counted
    /// as the server's refusals are; `Exhausted` with the tenant's quota in the message for the tenant's.
    pub fn into_error(self, retry_after: Duration) -> BackendError {
        match self {
            Refusal::Full { pending } => BackendError::QueueFull { pending, retry_after },
            Refusal::Tenant { .. } => BackendError::Exhausted { message: self.to_string(), retry_after },
        }
    }
}

/// An execution taken from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken<T> {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// What the backend queued with it.
    pub item: T,
}

struct Waiting<T> {
    id: String,
    /// Arrival order, across tenants (for listings and draining, oldest first).
    seq: u64,
    item: T,
}

/// One tenant's waiting executions.
struct Lane<T> {
    items: VecDeque<Waiting<T>>,
    /// Executions taken in the tenant's current turn.
    served: u32,
}

/// See the module documentation.
pub struct FairQueue<T> {
    quotas: Quotas,
    max_queue: usize,
    /// The lanes of the tenants with waiting work (a lane goes when it empties).
    lanes: HashMap<Key, Lane<T>>,
    /// The tenants with waiting work, in the order of their turns: the first is the one being served.
    ring: VecDeque<Key>,
    /// The tenant of each waiting execution, to find its lane.
    index: HashMap<String, Key>,
    next_seq: u64,
}

impl<T> std::fmt::Debug for FairQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairQueue")
            .field("waiting", &self.index.len())
            .field("tenants", &self.ring)
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

impl<T> FairQueue<T> {
    /// An empty queue of at most `max_queue` executions, with the tenants' `quotas`.
    pub fn new(quotas: Quotas, max_queue: usize) -> FairQueue<T> {
        FairQueue {
            quotas,
            max_queue,
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            index: HashMap::new(),
            next_seq: 0,
        }
    }

    /// The quotas the queue applies.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The most executions that may wait, every tenant's together.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Executions waiting, every tenant's.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Executions of `tenant` waiting.
    pub fn len_of(&self, tenant: Option<&str>) -> usize {
        self.lanes.get(&key(tenant)).map_or(0, |lane| lane.items.len())
    }

    /// Whether the execution `id` waits here.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// What was queued with the waiting execution `id`.
    pub fn get(&self, id: &str) -> Option<&T> {
        let lane = self.lanes.get(self.index.get(id)?)?;
        lane.items.iter().find(|w| w.id == id).map(|w| &w.item)
    }

    /// Whether an execution of `tenant` may wait now; [`FairQueue::push`] checks the same.
    pub fn admits(&self, tenant: Option<&str>) -> Result<(), Refusal> {
        // The tenant's own cap first: it is the one the tenant can act on.
        let queued = self.len_of(tenant);
        if cap(self.quotas.of(tenant).max_queued).is_some_and(|max| queued >= max) {
            return Err(Refusal::Tenant { tenant: key(tenant), queued });
        }
        if self.len() >= self.max_queue {
            return Err(Refusal::Full { pending: self.len() });
        }
        Ok(())
    }

    /// Queues the execution `id` of `tenant` at the end of its tenant's lane, unless a cap refuses it.
    pub fn push(&mut self, id: String, tenant: Option<&str>, item: T) -> Result<(), Refusal> {
        self.admits(tenant)?;
        self.restore(id, tenant, item);
        Ok(())
    }

    /// Queues an execution accepted earlier (recovered after a restart), whatever the caps say now: it was admitted
    /// under them once, and refusing it now would drop work a client was told is pending.
    pub fn restore(&mut self, id: String, tenant: Option<&str>, item: T) {
        let tenant = key(tenant);
        if let Some(old) = self.index.get(&id).cloned() {
            // An id is queued once; queueing it again replaces it (a caller's bug, but never a duplicate run).
            tracing::warn!(execution_id = %id, tenant = ?old, "an execution was queued twice; keeping the last");
            self.remove(&id);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(id.clone(), tenant.clone());
        let lane = self.lanes.entry(tenant.clone()).or_insert_with(|| Lane { items: VecDeque::new(), served: 0 });
        if lane.items.is_empty() {
            // A tenant that had nothing waiting joins at the end of the turn.
            self.ring.push_back(tenant);
        }
        lane.items.push_back(Waiting { id, seq, item });
    }

    /// Whether `tenant`, running `running` executions, may start one more (its `max_running`), for a backend that
    /// starts an execution without queueing it when a slot is free.
    pub fn may_run(&self, tenant: Option<&str>, running: usize) -> bool {
        cap(self.quotas.of(tenant).max_running).is_none_or(|max| running < max)
    }

    /// The position in the turn order of the tenant served next: the first not at its `max_running`.
    fn choose(&self, running: &impl Fn(Option<&str>) -> usize) -> Option<usize> {
        self.ring.iter().position(|tenant| {
            let tenant = tenant.as_deref();
            self.may_run(tenant, running(tenant))
        })
    }

    /// The id of the execution [`FairQueue::pop`] would take now (`None`: none may start now).
    pub fn peek(&self, running: impl Fn(Option<&str>) -> usize) -> Option<&str> {
        let tenant = self.ring.get(self.choose(&running)?)?;
        self.lanes.get(tenant)?.items.front().map(|w| w.id.as_str())
    }

    /// Takes the next execution to run: the oldest of the tenant whose turn it is, skipping tenants that run
    /// `max_running` executions already (`running` says how many a tenant runs). `None` when nothing waits or
    /// every waiting tenant is at its cap.
    pub fn pop(&mut self, running: impl Fn(Option<&str>) -> usize) -> Option<Taken<T>> {
        self.pop_if(running, |_, _, _| true)
    }

    /// [`FairQueue::pop`] for a backend that must take a slot for the execution first: `accept` gets the id,
    /// tenant and item of the execution that would be taken, and it is taken only if `accept` says yes (the queue
    /// is unchanged otherwise). Taking the slot after a `pop` would be too late, and before a [`FairQueue::peek`]
    /// wrong: the slot counts as the tenant's running execution, which can change the tenant served.
    pub fn pop_if(
        &mut self,
        running: impl Fn(Option<&str>) -> usize,
        accept: impl FnOnce(&str, Option<&str>, &T) -> bool,
    ) -> Option<Taken<T>> {
        let position = self.choose(&running)?;
        let tenant = self.ring.get(position)?.clone();
        let weight = weight(&self.quotas.of(tenant.as_deref()));
        let lane = self.lanes.get_mut(&tenant)?;
        let next = lane.items.front()?;
        if !accept(&next.id, tenant.as_deref(), &next.item) {
            return None;
        }
        let waiting = lane.items.pop_front()?;
        lane.served += 1;
        if lane.items.is_empty() {
            self.lanes.remove(&tenant);
            self.ring.remove(position);
        } else if lane.served >= weight {
            // The turn is over: the tenant waits behind every other one.
            lane.served = 0;
            self.ring.remove(position);
            self.ring.push_back(tenant.clone());
        }
        self.index.remove(&waiting.id);
        Some(Taken { id: waiting.id, tenant, item: waiting.item })
    }

    /// Takes the waiting execution `id` out of the queue (it was killed, or it goes elsewhere).
    pub fn remove(&mut self, id: &str) -> Option<T> {
        let tenant = self.index.remove(id)?;
        let lane = self.lanes.get_mut(&tenant)?;
        let position = lane.items.iter().position(|w| w.id == id)?;
        let waiting = lane.items.remove(position)?;
        if lane.items.is_empty() {
            self.lanes.remove(&tenant);
            self.ring.retain(|t| *t != tenant);
        }
        Some(waiting.item)
    }

    /// Every waiting execution, oldest first, with its tenant (listings, shutdown).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>, &T)> {
        let mut all: Vec<(u64, &str, Option<&str>, &T)> = self
            .lanes
            .iter()
            .flat_map(|(tenant, lane)| {
                lane.items.iter().map(move |w| (w.seq, w.id.as_str(), tenant.as_deref(), &w.item))
            })
            .collect();
        all.sort_unstable_by_key(|(seq, ..)| *seq);
        all.into_iter().map(|(_, id, tenant, item)| (id, tenant, item))
    }

    /// Empties the queue, returning every waiting execution, oldest first.
    pub fn drain(&mut self) -> Vec<Taken<T>> {
        let mut all: Vec<(u64, Taken<T>)> = self
            .lanes
            .drain()
            .flat_map(|(tenant, lane)| {
                lane.items.into_iter().map(move |w| (w.seq, Taken { id: w.id, tenant: tenant.clone(), item: w.item }))
            })
            .collect();
        self.ring.clear();
        self.index.clear();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, taken)| taken).collect()
    }
}

/// Executions running, per tenant, for a backend without counts of its own to hand to [`FairQueue::pop`].
#[derive(Debug, Clone, Default)]
pub struct Running {
    by_tenant: HashMap<Key, usize>,
    total: usize,
}

impl Running {
    /// An execution of `tenant` started.
    pub fn start(&mut self, tenant: Option<&str>) {
        *self.by_tenant.entry(key(tenant)).or_default() += 1;
        self.total += 1;
    }

    /// An execution of `tenant` ended (one that never started is ignored).
    pub fn finish(&mut self, tenant: Option<&str>) {
        let tenant = key(tenant);
        let Some(n) = self.by_tenant.get_mut(&tenant) else { return };
        *n -= 1;
        if *n == 0 {
            // Tenants come and go; the map holds only those running something.
            self.by_tenant.remove(&tenant);
        }
        self.total -= 1;
    }

    /// Executions of `tenant` running.
    pub fn of(&self, tenant: Option<&str>) -> usize {
        self.by_tenant.get(&key(tenant)).copied().unwrap_or(0)
    }

    /// Executions running, every tenant's.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(max_running: Option<usize>, max_queued: Option<usize>, weight: u32) -> Quota {
        Quota { max_running, max_queued, weight, ..Quota::default() }
    }

    fn quotas(per_tenant: &[(&str, Quota)]) -> Quotas {
        Quotas { default: Quota::default(), per_tenant: per_tenant.iter().map(|(t, q)| (t.to_string(), *q)).collect() }
    }

    fn nobody_runs(_: Option<&str>) -> usize {
        0
    }

    /// Queues `n` executions `<tenant>-<i>`.
    fn fill(queue: &mut FairQueue<()>, tenant: &str, n: usize) {
        for i in 0..n {
            queue.push(format!("{tenant}-{i}"), Some(tenant), ()).unwrap();
        }
    }

    fn tenants_of_picks(queue: &mut FairQueue<()>, n: usize) -> Vec<String> {
        (0..n).filter_map(|_| queue.pop(nobody_runs)).map(|t| t.tenant.unwrap_or_default()).collect()
    }

    #[test]
    fn a_small_tenant_is_served_within_two_picks_of_a_large_one() {
        let mut queue = FairQueue::new(Quotas::default(), 1000);
        fill(&mut queue, "a", 100);
        queue.push("b-0".into(), Some("b"), ()).unwrap();
        let picks: Vec<String> = (0..2).filter_map(|_| queue.pop(nobody_runs)).map(|t| t.id).collect();
        assert!(picks.contains(&"b-0".to_owned()), "b waits behind at most one of a's: {picks:?}");
        // Then a's, in order.
        let rest: Vec<String> = std::iter::from_fn(|| queue.pop(nobody_runs)).map(|t| t.id).collect();
        assert_eq!(rest.len(), 99);
        let expected: Vec<String> = (1..100).map(|i| format!("a-{i}")).collect();
        assert_eq!(rest, expected, "a tenant's executions run in the order it submitted them");
        assert!(queue.is_empty());
    }

    #[test]
    fn a_tenant_arriving_in_the_middle_of_a_turn_is_served_within_one_turn() {
        let mut queue = FairQueue::new(Quotas::default(), 1000);
        fill(&mut queue, "a", 10);
        fill(&mut queue, "b", 10);
        assert_eq!(tenants_of_picks(&mut queue, 3), ["a", "b", "a"]);
        queue.push("c-0".into(), Some("c"), ()).unwrap();
        // c joins at the end of the turn: after b and a, before b again.
        assert_eq!(tenants_of_picks(&mut queue, 4), ["b", "a", "c", "b"]);
    }

    #[test]
    fn a_weighted_tenant_is_served_weight_times_per_turn() {
        let mut queue = FairQueue::new(quotas(&[("a", quota(None, None, 3))]), 1000);
        fill(&mut queue, "a", 20);
        fill(&mut queue, "b", 20);
        assert_eq!(tenants_of_picks(&mut queue, 8), ["a", "a", "a", "b", "a", "a", "a", "b"]);
    }

    #[test]
    fn a_weight_of_zero_counts_as_one() {
        let mut queue = FairQueue::new(quotas(&[("a", quota(None, None, 0))]), 1000);
        fill(&mut queue, "a", 5);
        fill(&mut queue, "b", 5);
        assert_eq!(tenants_of_picks(&mut queue, 4), ["a", "b", "a", "b"]);
    }

    #[test]
    fn the_anonymous_tenant_is_a_tenant_like_any_other() {
        let mut queue = FairQueue::new(Quotas::default(), 1000);
        for i in 0..3 {
            queue.push(format!("anon-{i}"), None, ()).unwrap();
        }
        queue.push("b-0".into(), Some("b"), ()).unwrap();
        assert_eq!(queue.len_of(None), 3);
        let picks: Vec<String> = std::iter::from_fn(|| queue.pop(nobody_runs)).map(|t| t.id).collect();
        assert_eq!(picks, ["anon-0", "b-0", "anon-1", "anon-2"]);
    }

    #[test]
    fn a_tenant_at_its_max_running_is_skipped_and_keeps_its_turn() {
        let mut queue = FairQueue::new(quotas(&[("a", quota(Some(1), None, 1))]), 1000);
        fill(&mut queue, "a", 3);
        fill(&mut queue, "b", 3);
        let mut running = Running::default();
        let first = queue.pop(|t| running.of(t)).unwrap();
        assert_eq!(first.id, "a-0");
        running.start(first.tenant.as_deref());
        // a runs one, its cap: b's run meanwhile.
        assert_eq!(queue.peek(|t| running.of(t)), Some("b-0"));
        for expected in ["b-0", "b-1", "b-2"] {
            let taken = queue.pop(|t| running.of(t)).unwrap();
            assert_eq!(taken.id, expected);
            running.start(taken.tenant.as_deref());
        }
        assert_eq!(queue.pop(|t| running.of(t)), None, "only a waits, and it is at its cap");
        assert_eq!(queue.peek(|t| running.of(t)), None);
        queue.push("b-3".into(), Some("b"), ()).unwrap();
        running.finish(Some("a"));
        // a kept its turn while it was skipped: it goes before b's newer one.
        assert_eq!(queue.pop(|t| running.of(t)).map(|t| t.id).as_deref(), Some("a-1"));
        assert_eq!(running.of(Some("b")), 3);
        assert_eq!(running.total(), 3);
    }

    #[test]
    fn pop_if_takes_nothing_unless_accepted() {
        let mut queue = FairQueue::new(Quotas::default(), 1000);
        fill(&mut queue, "a", 2);
        fill(&mut queue, "b", 2);
        let mut offered = Vec::new();
        assert_eq!(
            queue.pop_if(nobody_runs, |id, tenant, _| {
                offered.push((id.to_owned(), tenant.map(str::to_owned)));
                false
            }),
            None
        );
        assert_eq!(offered, [("a-0".to_owned(), Some("a".to_owned()))]);
        assert_eq!(queue.len(), 4, "a refused offer leaves the queue as it was");
        let picks: Vec<String> =
            std::iter::from_fn(|| queue.pop_if(nobody_runs, |_, _, _| true)).map(|t| t.id).collect();
        assert_eq!(picks, ["a-0", "b-0", "a-1", "b-1"], "the turns are those of a queue never asked");
    }

    #[test]
    fn may_run_applies_max_running() {
        let queue: FairQueue<()> = FairQueue::new(quotas(&[("a", quota(Some(2), None, 1))]), 10);
        assert!(queue.may_run(Some("a"), 1) && !queue.may_run(Some("a"), 2));
        assert!(queue.may_run(Some("b"), 1000) && queue.may_run(None, 1000), "the default has no cap");
    }

    #[test]
    fn peek_names_what_pop_takes() {
        let mut queue = FairQueue::new(quotas(&[("a", quota(None, None, 2))]), 1000);
        fill(&mut queue, "a", 5);
        fill(&mut queue, "b", 5);
        fill(&mut queue, "c", 5);
        while let Some(id) = queue.peek(nobody_runs).map(str::to_owned) {
            assert_eq!(queue.pop(nobody_runs).map(|t| t.id), Some(id));
        }
        assert!(queue.is_empty());
    }

    #[test]
    fn the_tenant_cap_and_the_server_cap_refuse() {
        let mut queue = FairQueue::new(quotas(&[("a", quota(None, Some(2), 1))]), 4);
        fill(&mut queue, "a", 2);
        let refused = queue.push("a-2".into(), Some("a"), ()).unwrap_err();
        assert_eq!(refused, Refusal::Tenant { tenant: Some("a".into()), queued: 2 });
        let message = refused.clone().into_error(Duration::from_secs(1)).to_string();
        assert!(message.starts_with("tenant a has 2 executions queued") && message.contains("max_queued"), "{message}");
        assert!(matches!(
            refused.into_error(Duration::from_secs(1)),
            BackendError::Exhausted { retry_after, .. } if retry_after == Duration::from_secs(1)
        ));
        fill(&mut queue, "b", 2);
        let full = queue.push("c-0".into(), Some("c"), ()).unwrap_err();
        assert_eq!(full, Refusal::Full { pending: 4 });
        assert!(matches!(full.into_error(Duration::from_secs(1)), BackendError::QueueFull { pending: 4, .. }));
        assert_eq!(queue.admits(None), Err(Refusal::Full { pending: 4 }));
        assert_eq!((queue.len(), queue.len_of(Some("a")), queue.len_of(Some("b"))), (4, 2, 2));
        // Recovered executions are queued whatever the caps say.
        queue.restore("a-2".into(), Some("a"), ());
        assert_eq!((queue.len(), queue.len_of(Some("a"))), (5, 3));
        // Once one of a's has started, a may queue again (when the server's cap allows).
        let mut queue = FairQueue::new(quotas(&[("a", quota(None, Some(1), 1))]), 10);
        queue.push("a-0".into(), Some("a"), ()).unwrap();
        assert!(queue.admits(Some("a")).is_err());
        queue.pop(nobody_runs);
        assert_eq!(queue.admits(Some("a")), Ok(()));
    }

    #[test]
    fn a_cap_of_zero_is_no_cap() {
        let mut queue = FairQueue::new(quotas(&[("a", quota(Some(0), Some(0), 1))]), 10);
        fill(&mut queue, "a", 5);
        assert_eq!(queue.pop(|_| 100).map(|t| t.id).as_deref(), Some("a-0"));
    }

    #[test]
    fn the_anonymous_tenant_is_named_in_its_refusal() {
        let default = quota(None, Some(1), 1);
        let mut queue = FairQueue::new(Quotas { default, per_tenant: HashMap::new() }, 10);
        queue.push("x".into(), None, ()).unwrap();
        let message = queue.push("y".into(), None, ()).unwrap_err().to_string();
        assert!(message.starts_with("the anonymous tenant has 1 executions queued"), "{message}");
    }

    #[test]
    fn removal_takes_one_execution_out_and_keeps_the_turns() {
        let mut queue = FairQueue::new(Quotas::default(), 1000);
        fill(&mut queue, "a", 3);
        fill(&mut queue, "b", 1);
        fill(&mut queue, "c", 2);
        assert_eq!(queue.remove("a-1"), Some(()));
        assert_eq!(queue.remove("a-1"), None, "removed once");
        assert_eq!(queue.remove("zzz"), None);
        assert!(!queue.contains("a-1") && queue.contains("a-2"));
        // b's only one goes: b leaves the turns.
        assert_eq!(queue.remove("b-0"), Some(()));
        assert_eq!(queue.len_of(Some("b")), 0);
        assert_eq!(queue.len(), 4);
        let picks: Vec<String> = std::iter::from_fn(|| queue.pop(nobody_runs)).map(|t| t.id).collect();
        assert_eq!(picks, ["a-0", "c-0", "a-2", "c-1"]);
        assert!(queue.is_empty() && queue.iter().next().is_none());
    }

    #[test]
    fn iteration_and_draining_go_oldest_first_across_tenants() {
        let mut queue: FairQueue<u32> = FairQueue::new(Quotas::default(), 1000);
        queue.push("1".into(), Some("a"), 1).unwrap();
        queue.push("2".into(), Some("b"), 2).unwrap();
        queue.push("3".into(), None, 3).unwrap();
        queue.push("4".into(), Some("a"), 4).unwrap();
        assert_eq!(queue.get("4"), Some(&4));
        assert_eq!(queue.get("5"), None);
        let listed: Vec<(&str, Option<&str>, u32)> = queue.iter().map(|(id, t, item)| (id, t, *item)).collect();
        assert_eq!(listed, [("1", Some("a"), 1), ("2", Some("b"), 2), ("3", None, 3), ("4", Some("a"), 4)]);
        let drained: Vec<(String, u32)> = queue.drain().into_iter().map(|t| (t.id, t.item)).collect();
        assert_eq!(drained, [("1".into(), 1), ("2".into(), 2), ("3".into(), 3), ("4".into(), 4)]);
        assert!(queue.is_empty() && queue.pop(nobody_runs).is_none());
        queue.push("5".into(), Some("b"), 5).unwrap();
        assert_eq!(queue.pop(nobody_runs).map(|t| t.item), Some(5), "a drained queue works as a new one");
    }

    #[test]
    fn fairness_holds_over_many_tenants_and_refills() {
        // Three tenants keep the queue busy; each is served once per turn, whatever its backlog.
        let mut queue = FairQueue::new(Quotas::default(), 10_000);
        fill(&mut queue, "a", 300);
        fill(&mut queue, "b", 30);
        fill(&mut queue, "c", 3);
        let mut served: HashMap<String, usize> = HashMap::new();
        for _ in 0..9 {
            let taken = queue.pop(nobody_runs).unwrap();
            *served.entry(taken.tenant.unwrap_or_default()).or_default() += 1;
        }
        assert_eq!((served["a"], served["b"], served["c"]), (3, 3, 3));
        // c is done; a and b alternate.
        assert_eq!(tenants_of_picks(&mut queue, 4), ["a", "b", "a", "b"]);
    }

    #[test]
    fn running_counts_per_tenant() {
        let mut running = Running::default();
        running.start(Some("a"));
        running.start(Some("a"));
        running.start(None);
        assert_eq!((running.of(Some("a")), running.of(None), running.of(Some("b")), running.total()), (2, 1, 0, 3));
        running.finish(Some("a"));
        running.finish(Some("b"));
        running.finish(None);
        assert_eq!((running.of(Some("a")), running.of(None), running.total()), (1, 0, 1));
    }
}
