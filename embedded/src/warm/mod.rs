//! Warm pools: sandboxes built ahead of demand, so that a run starts in milliseconds.
//!
//! A warm sandbox is a complete sandbox (its own namespaces, cgroup, fresh host uid, `/work` and `/tmp`) whose
//! interpreter has started, loaded the eval runner (and, for environments with packages, imported their
//! modules) and waits for its work on standard input. A request that fits claims one, hands over its files,
//! arguments, environment, standard input and limits, and runs; the sandbox is destroyed afterwards, exactly
//! like a cold one. Nothing is reused between executions: every warm sandbox is its own interpreter process,
//! started fresh (not forked from a template), so its hash seed, random state and address-space layout are its
//! own, and the runner reseeds every generator its preimports created before the program starts.
//!
//! `class` decides which requests fit and what kind of sandbox serves them, `handover` encodes the work,
//! `sizing` turns demand into a target, `pool` keeps the idle sandboxes and refills them, and `settings` holds
//! the `PYEXEC_WARM_*` knobs.

mod class;
mod handover;
mod pool;
mod settings;
mod sizing;

pub(crate) use class::{CONTROL_INDEX, FILES_INDEX, NO_SPACE, cold_reason, key, template};
pub(crate) use handover::{HandoverError, message};
pub(crate) use pool::{ClassSpec, Warm};
pub use pool::{PoolStats, WarmPool, WarmStats};
pub use settings::{Preimport, WarmSettings};
