//! Who a request comes from: with API keys configured (`PYEXEC_API_KEYS`, a keys file), every `/api` and `/mcp`
//! request needs `Authorization: Bearer <key>`, and the key's tenant becomes the request's [`Caller`]; without
//! keys, every request is the anonymous tenant's. The tenant's request rate is counted here too (429 with
//! `Retry-After` beyond it). `/health`, `/metrics` and `/docs` stay open.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Caller;

/// Middleware refusing requests without a valid key (when keys are configured), and over their tenant's rate.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tenant = if state.tenants.is_open() {
        state.tenants.anonymous()
    } else {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(pyexec_core::secret::bearer_token);
        match presented {
            Some(key) => {
                state.tenants.authenticate(key).ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?
            }
            None => return Err(ApiError::Unauthorized("missing API key: send Authorization: Bearer <key>".into())),
        }
    };
    if let Err(wait) = tenant.admit_request() {
        state.metrics.rate_limited(tenant.name.as_deref());
        let per_minute = tenant.quota.requests_per_minute.unwrap_or_default();
        return Err(ApiError::TooManyRequests {
            message: format!("more than {per_minute} requests a minute for this tenant; retry later"),
            retry_after: wait,
        });
    }
    request.extensions_mut().insert(Caller(tenant));
    Ok(next.run(request).await)
}
