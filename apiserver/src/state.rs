//! What every handler shares.

use std::ops::Deref;
use std::sync::Arc;

use pyexec_core::Policy;
use pyexec_core::session::SessionTimeouts;
use pyexec_core::workspace::IngestLimits;

use crate::backend::Backend;
use crate::metrics::Metrics;
use crate::origin::BrowserPolicy;

/// Shared state of the handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// See [`AppState`].
pub struct Shared {
    /// Where executions run.
    pub backend: Arc<dyn Backend>,
    /// Request validation rules.
    pub policy: Policy,
    /// Caps on uploaded archives.
    pub ingest: IngestLimits,
    /// Body size cap, MiB (for messages).
    pub upload_limit_mb: u64,
    /// Accepted API keys; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// What a page in a browser may make this server do (`Host` and `Origin` checks).
    pub browser: BrowserPolicy,
    /// Sessions' idle timeouts: the default and the most a session may ask for.
    pub session_timeouts: SessionTimeouts,
    /// Largest file uploaded into a session, bytes.
    pub session_upload_max_bytes: u64,
}

impl AppState {
    /// Wraps the shared state.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
