//! Optional API keys: with `PYEXEC_API_KEYS` (or a keys file) set, every `/api` request needs
//! `Authorization: Bearer <key>`. `/health`, `/metrics` and `/docs` stay open.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// Middleware refusing requests without a valid key (when keys are configured).
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    if state.api_keys.is_empty() {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(pyexec_core::secret::bearer_token);
    match presented {
        Some(key) if pyexec_core::secret::matches_any(state.api_keys.iter().map(|k| k.as_bytes()), key.as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::Unauthorized("invalid API key".into())),
        None => Err(ApiError::Unauthorized("missing API key: send Authorization: Bearer <key>".into())),
    }
}
