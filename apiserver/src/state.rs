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
    /// The tenants and their API keys; none: no authentication, one anonymous tenant (docs/tenants.md).
    pub tenants: Arc<crate::tenants::Tenants>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// What a page in a browser may make this server do (`Host` and `Origin` checks).
    pub browser: BrowserPolicy,
    /// Sessions' idle timeouts: the default and the most a session may ask for.
    pub session_timeouts: SessionTimeouts,
    /// Largest file uploaded into a session, bytes.
    pub session_upload_max_bytes: u64,
    /// How much of a run's output an MCP tool result (and `POST /api/v1/tools/run_python`) carries.
    pub mcp_output: pyexec_mcp::OutputBudget,
    /// How long finished executions are kept (`PYEXEC_CLEANUP_TTL`), which a 404 for an execution id says.
    pub retention: std::time::Duration,
    /// Requests with the same `Idempotency-Key` take turns.
    pub idempotency: crate::idempotency::KeyLocks,
    /// Completion webhooks; `None` on a server without a webhook secret (which refuses `callback_url`).
    pub webhooks: Option<crate::webhooks::Webhooks>,
}

impl AppState {
    /// Wraps the shared state.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl AppState {
    /// The answer for an execution id this server does not know (now).
    pub fn execution_not_found(&self) -> crate::error::ApiError {
        crate::error::ApiError::execution_not_found(self.retention)
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
