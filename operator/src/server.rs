//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, and `/logs/{namespace}/{uid}` (the stored
//! full output of an execution; bearer token required when one is configured).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::logs::LogStore;
use crate::metrics::Metrics;

/// Whether the operator can see the cluster, for `/readyz`: failing from a watch error until a reconciliation
/// runs again, or until no watch error came for [`Readiness::RECOVERY`] (a failing watch retries, and fails again,
/// well within it; a recovered one over an empty namespace reconciles nothing). Ready from the start, so that
/// replicas waiting for the leader lease are ready too.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<Mutex<Option<Instant>>>);

impl Readiness {
    /// How long after the last watch error readiness comes back by itself.
    pub const RECOVERY: Duration = Duration::from_secs(90);

    /// Records that the watches work (`true`) or that one failed (`false`).
    pub fn set(&self, ready: bool) {
        let mut last_error = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ready {
            if last_error.take().is_some() {
                tracing::info!("ready: the controller's watches work again");
            }
        } else {
            if last_error.is_none() {
                tracing::warn!("not ready: a watch of the controller fails");
            }
            *last_error = Some(Instant::now());
        }
    }

    /// Whether the watches work.
    pub fn is_ready(&self) -> bool {
        let last_error = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last_error.is_none_or(|at| at.elapsed() >= Self::RECOVERY)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ServerState {
    /// Metrics to render.
    pub metrics: Metrics,
    /// Stored outputs.
    pub logs: LogStore,
    /// Token readers of `/logs` must send, when set.
    pub logs_token: Option<Arc<str>>,
    /// The controller's watch health, for `/readyz`.
    pub ready: Readiness,
}

/// The router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/logs/{namespace}/{uid}", get(logs))
        .with_state(state)
}

async fn readyz(State(state): State<ServerState>) -> Response {
    if state.ready.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "a watch of the controller fails").into_response()
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    state.metrics.watch_health(state.ready.is_ready());
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

async fn logs(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path((namespace, uid)): Path<(String, String)>,
) -> Response {
    if let Some(token) = &state.logs_token {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !pyexec_core::secret::bearer_matches(token, sent) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_fails_after_a_watch_error_until_the_watch_works() {
        let ready = Readiness::default();
        assert!(ready.is_ready());
        ready.set(false);
        assert!(!ready.is_ready());
        ready.set(false);
        assert!(!ready.is_ready());
        ready.set(true);
        assert!(ready.is_ready());
    }
}
