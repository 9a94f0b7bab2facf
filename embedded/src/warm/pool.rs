//! The pools and their refiller: idle sandboxes per class, claimed by requests and rebuilt in the background.
//!
//! Claims and bookkeeping happen under one short lock; building, readiness and destruction happen outside it.
//! The refiller wakes on every claim and once a second: it drops what is too old, dead or no longer wanted,
//! forgets classes nobody asked for lately, and starts builds where a class has fewer idle sandboxes than its
//! demand asks for, never more than `build_parallelism` at once and never beyond `max_total`. A class whose
//! builds keep failing waits longer and longer before the next try.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyexec_sandbox::{Prepared, RunSpec, Sandbox, SandboxError};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::class::{CONTROL_INDEX, READY};
use super::settings::WarmSettings;
use super::sizing::{Demand, target};
use crate::environments::EnvLease;

/// Most classes remembered; the least recently used unpinned one goes first.
const MAX_CLASSES: usize = 32;
/// How often the refiller looks even when nothing woke it.
const TICK: Duration = Duration::from_secs(1);
/// How long the refiller lets a claimed run go first before it builds a replacement.
const REFILL_DELAY: Duration = Duration::from_millis(10);

/// A sandbox built ahead of demand, its program waiting for work.
#[derive(Debug)]
pub(crate) struct Warm {
    pub prepared: Prepared,
    /// Memory it held when it became ready.
    memory: Option<u64>,
    born: Instant,
}

impl Warm {
    /// Whether a run limited to `memory_bytes` fits: the memory the warm interpreter already holds must leave
    /// room for the program (otherwise the claim would fail where a cold start might not).
    fn fits(&self, memory_bytes: u64) -> bool {
        Self::fits_memory(self.memory, memory_bytes)
    }

    fn fits_memory(held: Option<u64>, memory_bytes: u64) -> bool {
        held.is_none_or(|held| memory_bytes >= held.saturating_add((held / 2).max(16 << 20)))
    }
}

/// What a new class is built from.
pub(crate) struct ClassSpec {
    /// What it serves, in words (for `/health`).
    pub label: String,
    /// The build spec of its sandboxes.
    pub template: RunSpec,
    /// The environment its sandboxes mount, kept from eviction while the class exists.
    pub environment: Option<EnvLease>,
}

struct Class {
    label: String,
    template: Arc<RunSpec>,
    /// Kept at `min_idle` even without demand (the default kind of request).
    pinned: bool,
    idle: VecDeque<Warm>,
    building: usize,
    demand: Demand,
    created: Instant,
    failures: u32,
    retry_at: Option<Instant>,
    _environment: Option<EnvLease>,
}

impl Class {
    fn new(spec: ClassSpec, pinned: bool, now: Instant) -> Self {
        Self {
            label: spec.label,
            template: Arc::new(spec.template),
            pinned,
            idle: VecDeque::new(),
            building: 0,
            demand: Demand::default(),
            created: now,
            failures: 0,
            retry_at: None,
            _environment: spec.environment,
        }
    }

    fn target(&mut self, settings: &WarmSettings, now: Instant) -> usize {
        let min = if self.pinned { settings.min_idle } else { 0 };
        target(self.demand.peak(now), min, settings.max_idle)
    }

    fn last_wanted(&self) -> Instant {
        self.demand.last().unwrap_or(self.created)
    }
}

#[derive(Default)]
struct State {
    classes: HashMap<String, Class>,
    building: usize,
}

impl State {
    fn idle(&self) -> usize {
        self.classes.values().map(|c| c.idle.len()).sum()
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    built: AtomicU64,
    failed: AtomicU64,
}

struct Inner {
    sandbox: Sandbox,
    settings: WarmSettings,
    state: Mutex<State>,
    wake: Notify,
    /// Signalled whenever a sandbox becomes idle (for [`WarmPool::wait_idle`]).
    ready: Notify,
    closing: CancellationToken,
    /// No builds while set ([`WarmPool::drain`]).
    paused: std::sync::atomic::AtomicBool,
    counters: Counters,
}

/// The warm pools of one runner. Cheap to clone; the refiller stops when the last clone is dropped.
#[derive(Clone)]
pub struct WarmPool {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

/// What the pools hold and did, for `/health` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WarmStats {
    /// Whether pools are on.
    pub enabled: bool,
    /// Idle sandboxes in all.
    pub idle: usize,
    /// Sandboxes being built.
    pub building: usize,
    /// Runs that started in a warm sandbox.
    pub warm_starts: u64,
    /// Runs that could have used a pool but found no idle sandbox.
    pub misses: u64,
    /// Sandboxes built.
    pub built: u64,
    /// Builds that failed.
    pub build_failures: u64,
    /// One entry per class.
    pub pools: Vec<PoolStats>,
}

/// One class's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// What it serves.
    pub serves: String,
    /// Idle sandboxes.
    pub idle: usize,
    /// Being built.
    pub building: usize,
    /// Idle sandboxes wanted now.
    pub target: usize,
    /// Memory of its idle sandboxes, bytes (where cgroups measure it).
    pub idle_memory_bytes: u64,
}

impl WarmPool {
    /// Starts the refiller on a thread of its own (with its own small runtime, so that building ahead of demand
    /// neither competes with request handling for the server's runtime nor depends on which runtime created the
    /// pool). Nothing is built until a class is registered.
    pub(crate) fn start(sandbox: Sandbox, settings: WarmSettings) -> std::io::Result<WarmPool> {
        let closing = CancellationToken::new();
        let inner = Arc::new(Inner {
            sandbox,
            settings,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            ready: Notify::new(),
            closing: closing.clone(),
            paused: std::sync::atomic::AtomicBool::new(false),
            counters: Counters::default(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let refiller = inner.clone();
        std::thread::Builder::new().name("pyexec-warm".into()).spawn(move || {
            // The thread's own share of building (cgroups, uid maps, waiting for readiness) yields to request
            // handling; the sandboxes themselves run at the lowest CPU weight of their cgroups until claimed.
            // `None` is the caller, which on Linux means this thread (nice values are per thread there).
            if let Err(e) = rustix::process::setpriority_process(None, 10) {
                tracing::debug!(error = %e, "the warm pools' thread keeps its priority");
            }
            runtime.block_on(refill(refiller))
        })?;
        Ok(WarmPool { inner, _stop: Arc::new(StopOnDrop(closing)) })
    }

    /// The settings.
    pub fn settings(&self) -> &WarmSettings {
        &self.inner.settings
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers the class that is always kept warm (at `min_idle`).
    pub(crate) fn pin(&self, key: String, spec: ClassSpec) {
        let now = Instant::now();
        self.lock().classes.insert(key, Class::new(spec, true, now));
        self.inner.wake.notify_one();
    }

    /// An idle sandbox of class `key` for a run limited to `memory_bytes`, if one is ready. The request counts
    /// as demand either way; an unknown class is created from `spec()` so that the next request finds one.
    pub(crate) fn claim(&self, key: &str, memory_bytes: u64, spec: impl FnOnce() -> ClassSpec) -> Option<Warm> {
        let now = Instant::now();
        let mut dead = Vec::new();
        let claimed = {
            let mut state = self.lock();
            if !state.classes.contains_key(key) {
                forget_one_if_full(&mut state, &mut dead);
                state.classes.insert(key.to_owned(), Class::new(spec(), false, now));
            }
            let class = state.classes.get_mut(key)?;
            class.demand.record(now);
            let mut claimed = None;
            while let Some(warm) = class.idle.pop_front() {
                if !warm.prepared.is_alive() {
                    dead.push(warm);
                } else if warm.fits(memory_bytes) {
                    claimed = Some(warm);
                    break;
                } else {
                    // Too big for this request, maybe not for the next: keep it.
                    class.idle.push_front(warm);
                    break;
                }
            }
            claimed
        };
        self.inner.wake.notify_one();
        discard(dead);
        let counter = if claimed.is_some() { &self.inner.counters.hits } else { &self.inner.counters.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        claimed
    }

    /// Counts one request of class `key` as demand (creating the class from `spec()` when unknown) without
    /// claiming anything: the refiller builds for it.
    pub(crate) fn register(&self, key: &str, spec: impl FnOnce() -> ClassSpec) {
        let now = Instant::now();
        let mut dead = Vec::new();
        {
            let mut state = self.lock();
            if !state.classes.contains_key(key) {
                forget_one_if_full(&mut state, &mut dead);
                state.classes.insert(key.to_owned(), Class::new(spec(), false, now));
            }
            if let Some(class) = state.classes.get_mut(key) {
                class.demand.record(now);
            }
        }
        self.inner.wake.notify_one();
        discard(dead);
    }

    /// Waits until class `key` has an idle sandbox that fits a run limited to `memory_bytes` (or `timeout`
    /// passes); true when it has one.
    pub(crate) async fn wait_idle(&self, key: &str, memory_bytes: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.inner.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if self.lock().classes.get(key).is_some_and(|c| c.idle.front().is_some_and(|w| w.fits(memory_bytes))) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(TICK), ready).await;
        }
    }

    /// What the pools hold and did.
    pub fn stats(&self) -> WarmStats {
        let now = Instant::now();
        let settings = &self.inner.settings;
        let mut state = self.lock();
        let building = state.building;
        let mut pools: Vec<PoolStats> = state
            .classes
            .values_mut()
            .map(|c| PoolStats {
                serves: c.label.clone(),
                idle: c.idle.len(),
                building: c.building,
                target: c.target(settings, now),
                idle_memory_bytes: c.idle.iter().filter_map(|w| w.memory).sum(),
            })
            .collect();
        pools.sort_by(|a, b| a.serves.cmp(&b.serves));
        let c = &self.inner.counters;
        WarmStats {
            enabled: true,
            idle: pools.iter().map(|p| p.idle).sum(),
            building,
            warm_starts: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            built: c.built.load(Ordering::Relaxed),
            build_failures: c.failed.load(Ordering::Relaxed),
            pools,
        }
    }

    /// Stops refilling for good and empties the pools (see [`WarmPool::drain`]).
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        self.drain().await;
    }

    /// Starts refilling again after [`WarmPool::drain`].
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Pauses refilling, destroys every idle sandbox and waits until the builds under way are gone too: once it
    /// returns, the pools hold no process, cgroup or host uid (until [`WarmPool::resume`]).
    pub async fn drain(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
        // Builds end within `ready_timeout`; past that (a stuck build, a refiller gone) waiting longer helps
        // nobody.
        let deadline = Instant::now() + self.inner.settings.ready_timeout + TICK;
        loop {
            let ready = self.inner.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let (idle, building): (Vec<Warm>, usize) = {
                let mut state = self.lock();
                (state.classes.values_mut().flat_map(|c| c.idle.drain(..)).collect(), state.building)
            };
            for warm in idle {
                warm.prepared.destroy().await;
            }
            if building == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(building, "warm sandboxes still being built after the pools were drained");
                return;
            }
            let _ = tokio::time::timeout(TICK, ready).await;
        }
    }
}

/// Makes room for one more class by forgetting the least recently wanted unpinned one.
fn forget_one_if_full(state: &mut State, dead: &mut Vec<Warm>) {
    if state.classes.len() < MAX_CLASSES {
        return;
    }
    let oldest = state.classes.iter().filter(|(_, c)| !c.pinned).min_by_key(|(_, c)| c.last_wanted());
    if let Some(key) = oldest.map(|(k, _)| k.clone())
        && let Some(mut class) = state.classes.remove(&key)
    {
        dead.extend(class.idle.drain(..));
    }
}

/// At `max_total`, a class with no idle sandbox takes the place of an idle one of another class: the class with
/// the most idle sandboxes above its minimum, the least recently wanted first. False when there is none to take.
fn make_room(state: &mut State, key: &str, settings: &WarmSettings, dead: &mut Vec<Warm>) -> bool {
    if state.classes.get(key).is_none_or(|c| !c.idle.is_empty()) {
        return false;
    }
    let floor = |c: &Class| if c.pinned { settings.min_idle } else { 0 };
    let victim = state
        .classes
        .iter()
        .filter(|(k, c)| k.as_str() != key && c.idle.len() > floor(c))
        .max_by(|(_, a), (_, b)| a.idle.len().cmp(&b.idle.len()).then(b.last_wanted().cmp(&a.last_wanted())))
        .map(|(k, _)| k.clone());
    match victim.and_then(|k| state.classes.get_mut(&k)).and_then(|c| c.idle.pop_back()) {
        Some(warm) => {
            dead.push(warm);
            true
        }
        None => false,
    }
}

/// Destroys sandboxes in the background.
fn discard(warm: Vec<Warm>) {
    if !warm.is_empty() {
        tokio::spawn(async move {
            for w in warm {
                w.prepared.destroy().await;
            }
        });
    }
}

/// The refiller: runs until the pool is shut down or its last handle dropped (which cancels `closing`).
async fn refill(pool: Arc<Inner>) {
    loop {
        for (key, template) in plan(&pool) {
            tokio::spawn(build(pool.clone(), key, template));
        }
        tokio::select! {
            () = pool.wake.notified() => {
                // Woken by a claim: the claimed run has just started. Building its replacement at this very
                // moment would compete with it for the CPU, so the refill waits until most runs are over.
                tokio::time::sleep(REFILL_DELAY).await;
            }
            () = tokio::time::sleep(TICK) => {}
            () = pool.closing.cancelled() => break,
        }
    }
    // Builds under way live on this thread's runtime, which ends with this function: let them finish (each
    // destroys its sandbox when it sees the pool closing, within `ready_timeout`), so that none is dropped
    // half-counted.
    let deadline = Instant::now() + pool.settings.ready_timeout + TICK;
    loop {
        let ready = pool.ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let building = pool.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).building;
        if building == 0 || Instant::now() >= deadline {
            break;
        }
        let _ = tokio::time::timeout(TICK, ready).await;
    }
    // Idle sandboxes go with the pool.
    let idle: Vec<Warm> = {
        let mut state = pool.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.classes.values_mut().flat_map(|c| c.idle.drain(..)).collect()
    };
    for warm in idle {
        warm.prepared.destroy().await;
    }
}

/// Under the lock: drops what is stale, and picks the builds to start (marking them as building).
fn plan(pool: &Inner) -> Vec<(String, Arc<RunSpec>)> {
    if pool.paused.load(Ordering::SeqCst) {
        return Vec::new();
    }
    let settings = &pool.settings;
    let now = Instant::now();
    let mut dead = Vec::new();
    let mut builds = Vec::new();
    {
        let mut state = pool.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.classes.retain(|_, class| {
            let keep = class.pinned || now.duration_since(class.last_wanted()) < settings.class_idle;
            if !keep {
                dead.extend(class.idle.drain(..));
            }
            keep || class.building > 0
        });
        let mut wanted: Vec<(usize, String)> = Vec::new();
        for (key, class) in &mut state.classes {
            let (fresh, stale): (VecDeque<Warm>, VecDeque<Warm>) = class
                .idle
                .drain(..)
                .partition(|w| w.prepared.is_alive() && now.duration_since(w.born) < settings.max_age);
            class.idle = fresh;
            dead.extend(stale);
            let target = class.target(settings, now);
            while class.idle.len() > target {
                dead.extend(class.idle.pop_back());
            }
            let need = target.saturating_sub(class.idle.len() + class.building);
            if need > 0 && class.retry_at.is_none_or(|at| now >= at) {
                wanted.push((need, key.clone()));
            }
        }
        // The neediest class first.
        wanted.sort_by_key(|(need, _)| std::cmp::Reverse(*need));
        for (need, key) in wanted {
            for _ in 0..need {
                if state.building >= settings.build_parallelism.max(1) {
                    break;
                }
                if state.idle() + state.building >= settings.max_total
                    && !make_room(&mut state, &key, settings, &mut dead)
                {
                    break;
                }
                let Some(class) = state.classes.get_mut(&key) else { break };
                class.building += 1;
                builds.push((key.clone(), class.template.clone()));
                state.building += 1;
            }
        }
    }
    discard(dead);
    builds
}

/// Builds one sandbox of class `key` and waits until its interpreter is ready.
async fn build(pool: Arc<Inner>, key: String, template: Arc<RunSpec>) {
    // Not abandoned at shutdown: a build ends within `ready_timeout`, and the sandbox is then destroyed before the
    // build stops counting, so that a finished shutdown leaves nothing behind.
    let built = async {
        let mut prepared = pool.sandbox.prepare((*template).clone()).await?;
        prepared.wait_ready(CONTROL_INDEX, READY, pool.settings.ready_timeout).await?;
        Ok::<_, SandboxError>(prepared)
    }
    .await;
    let result = match built {
        Ok(prepared) if pool.closing.is_cancelled() || pool.paused.load(Ordering::SeqCst) => {
            prepared.destroy().await;
            None
        }
        other => Some(other),
    };
    let now = Instant::now();
    let mut surplus = None;
    {
        let mut state = pool.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let class = state.classes.get_mut(&key);
        match (result, class) {
            (Some(Ok(prepared)), Some(class)) => {
                class.building = class.building.saturating_sub(1);
                class.failures = 0;
                class.retry_at = None;
                pool.counters.built.fetch_add(1, Ordering::Relaxed);
                let memory = prepared.memory_bytes();
                class.idle.push_back(Warm { prepared, memory, born: now });
            }
            (Some(Ok(prepared)), None) => surplus = Some(prepared),
            (Some(Err(e)), class) => {
                pool.counters.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(class) = class {
                    class.building = class.building.saturating_sub(1);
                    class.failures += 1;
                    let backoff = Duration::from_secs(1 << class.failures.min(6));
                    class.retry_at = Some(now + backoff);
                    tracing::warn!(pool = %class.label, error = %e, retry_in = ?backoff, "a warm sandbox failed to start");
                }
            }
            (None, class) => {
                if let Some(class) = class {
                    class.building = class.building.saturating_sub(1);
                }
            }
        }
    }
    if let Some(prepared) = surplus {
        prepared.destroy().await;
    }
    {
        let mut state = pool.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.building = state.building.saturating_sub(1);
    }
    pool.ready.notify_waiters();
    pool.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_fit_leaves_room_for_the_program() {
        let fits = |held: Option<u64>, limit: u64| Warm::fits_memory(held, limit);
        assert!(fits(None, 1));
        assert!(fits(Some(10 << 20), 26 << 20));
        assert!(!fits(Some(10 << 20), 25 << 20));
        assert!(fits(Some(100 << 20), 150 << 20));
        assert!(!fits(Some(100 << 20), 149 << 20));
    }
}
