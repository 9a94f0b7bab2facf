//! `GET /api/v1/whoami`: who the presented key is, so that a client (the console, a script checking its key)
//! learns its tenant, whether it is an admin and its quotas without trying them.

use axum::Json;
use axum::extract::Extension;
use pyexec_core::ErrorResponse;
use serde::Serialize;

use crate::tenants::Caller;

/// The caller, as the server knows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// The tenant of the key (docs/tenants.md); `null` on a server without API keys.
    pub tenant: Option<String>,
    /// Whether the tenant sees and may act on every tenant's work.
    pub admin: bool,
    /// The tenant's quotas; an absent field is not capped.
    pub quota: QuotaView,
}

/// A tenant's caps, as `/api/v1/whoami` shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    /// Executions running at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<usize>,
    /// Executions waiting for a slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<usize>,
    /// Live sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    /// Requests per minute, over every endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Share of the slots when several tenants wait.
    pub weight: u32,
}

/// *(ours)* The caller's tenant, role and quotas.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    operation_id = "whoami",
    tag = "service",
    responses(
        (status = 200, description = "The caller", body = Identity),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<Identity> {
    let tenant = &caller.0;
    let quota = tenant.quota;
    Json(Identity {
        tenant: tenant.name.clone(),
        admin: tenant.admin,
        quota: QuotaView {
            max_running: quota.max_running,
            max_queued: quota.max_queued,
            max_sessions: quota.max_sessions,
            requests_per_minute: quota.requests_per_minute,
            weight: quota.weight.max(1),
        },
    })
}
