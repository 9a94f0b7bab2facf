//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, and `/logs/{namespace}/{uid}` (the stored
//! full output of an execution; bearer token required when one is configured).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::logs::LogStore;
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Clone)]
pub struct ServerState {
    /// Metrics to render.
    pub metrics: Metrics,
    /// Stored outputs.
    pub logs: LogStore,
    /// Token readers of `/logs` must send, when set.
    pub logs_token: Option<Arc<str>>,
}

/// The router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/logs/{namespace}/{uid}", get(logs))
        .with_state(state)
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

async fn logs(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path((namespace, uid)): Path<(String, String)>,
) -> Response {
    if let Some(token) = &state.logs_token {
        let sent =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !sent.is_some_and(|s| pyexec_core::secret::constant_time_eq(token.as_bytes(), s.as_bytes())) {
            return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "a valid bearer token is required"})))
                .into_response();
        }
    }
    match state.logs.load(&namespace, &uid).await {
        Ok(Some(logs)) => Json(logs).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "no stored output for this execution"})))
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading stored output");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": "cannot read the stored output"})))
                .into_response()
        }
    }
}
