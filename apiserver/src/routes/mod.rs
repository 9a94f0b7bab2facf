//! The HTTP surface: routes, the original's 404 and trailing-slash behaviour, request ids and request logs.

mod docs;
mod eval;
mod exec;
mod executions;
mod health;
pub(crate) mod sync;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use docs::{ApiDoc, markdown_reference};

use crate::auth;
use crate::state::AppState;

/// Builds the application.
pub fn router(state: AppState) -> Router {
    let body_limit = usize::try_from(state.upload_limit_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/api/v1/eval", post(eval::eval))
        .route("/api/v1/exec/sync", post(exec::exec_sync))
        .route("/api/v1/exec/async", post(exec::exec_async))
        .route("/api/v1/executions", get(executions::list))
        .route("/api/v1/executions/{id}", get(executions::get).delete(executions::kill))
        .route("/api/v1/executions/{id}/events", get(executions::events))
        .route("/api/v1/tools", get(crate::mcp::tools))
        .route("/api/v1/tools/run_python", post(crate::mcp::call_run_python))
        .route_service("/mcp", crate::mcp::service(state.clone(), state.mcp_allowed_hosts.clone()))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), refuse_oversized))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    let request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api)
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .merge(docs::router())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn(strip_trailing_slash))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Bodies a request declares larger than the upload limit get their 413 after the body was read and dropped (up
/// to [`DRAIN_LIMIT`] bytes): a server that answers and closes while the client is still sending makes many
/// clients report a broken connection instead of the answer.
async fn refuse_oversized(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.upload_limit_mb.saturating_mul(1 << 20);
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(length) = declared.filter(|l| *l > limit) else { return next.run(request).await };
    if length <= limit.saturating_add(DRAIN_LIMIT) {
        use futures::StreamExt;
        let mut body = request.into_body().into_data_stream();
        while let Some(Ok(_)) = body.next().await {}
    }
    crate::error::ApiError::TooLarge(format!(
        "the request body exceeds the upload limit of {} MiB (PYEXEC_MAX_UPLOAD_MB)",
        state.upload_limit_mb
    ))
    .into_response()
}

/// Most bytes read past the upload limit to deliver a 413 cleanly.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Unknown paths and wrong methods answer like the original: `404 page not found` as plain text.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))], "404 page not found")
        .into_response()
}

/// `/health/` redirects to `/health` (301 for GET and HEAD, 307 otherwise), as the original's router did. The
/// Swagger UI lives under `/docs/` and keeps its slashes.
async fn strip_trailing_slash(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/docs") {
        let trimmed = path.trim_end_matches('/');
        let target = match request.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = target.parse::<Uri>() {
            let status = if matches!(*request.method(), Method::GET | Method::HEAD) {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::TEMPORARY_REDIRECT
            };
            return (status, [(header::LOCATION, uri.to_string())]).into_response();
        }
    }
    next.run(request).await
}
