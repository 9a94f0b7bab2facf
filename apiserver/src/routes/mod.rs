//! The HTTP surface: routes, the original's 404 and trailing-slash behaviour, request ids and request logs.

mod console;
mod docs;
mod eval;
mod exec;
pub(crate) mod executions;
pub(crate) mod files;
mod health;
pub(crate) mod sessions;
pub(crate) mod sync;
mod whoami;

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
        .route("/api/v1/eval/async", post(eval::eval_async))
        .route("/api/v1/exec/sync", post(exec::exec_sync))
        .route("/api/v1/exec/async", post(exec::exec_async))
        .route("/api/v1/executions", get(executions::list))
        .route("/api/v1/executions/{id}", get(executions::get).delete(executions::kill))
        .route("/api/v1/executions/{id}/events", get(executions::events))
        .route("/api/v1/executions/{id}/files", get(files::execution_list))
        .route("/api/v1/executions/{id}/files/{*path}", get(files::execution_file))
        .route("/api/v1/sessions", post(sessions::create).get(sessions::list))
        .route("/api/v1/sessions/{id}", get(sessions::get).delete(sessions::delete))
        .route("/api/v1/sessions/{id}/eval", post(sessions::eval))
        .route("/api/v1/sessions/{id}/files", get(files::session_list))
        .route("/api/v1/sessions/{id}/files/{*path}", get(files::session_file).put(files::session_upload))
        .route("/api/v1/whoami", get(whoami::whoami))
        .route("/api/v1/tools", get(crate::mcp::tools))
        .route("/api/v1/tools/run_python", post(crate::mcp::call_run_python))
        .route_service("/mcp", crate::mcp::service(state.clone()))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), refuse_oversized))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    let request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api)
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .merge(docs::router())
        .merge(console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn(strip_trailing_slash))
        .layer(middleware::from_fn_with_state(state.clone(), crate::origin::guard))
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
    not_found_response()
}

fn not_found_response() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))], "404 page not found")
        .into_response()
}

/// `/health/` redirects to `/health` (301 for GET and HEAD, 307 otherwise), as the original's router did. The
/// Swagger UI lives under `/docs/` and keeps its slashes; the console answers at `/ui/` as at `/ui`.
///
/// The target is always a path on this server: `//evil.example/` must not become `Location: //evil.example`,
/// which a browser reads as another host (so would `/\evil.example`, browsers treating `\` as `/`). Leading
/// slashes are collapsed to one, and a path that could still read as another host, or that holds a backslash or
/// a control character, raw or percent-encoded, is not redirected at all (it is no route either: 404).
async fn strip_trailing_slash(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/docs") && path != "/ui/" {
        let Some(trimmed) = redirect_path(path) else { return not_found().await };
        let target = match request.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed,
        };
        if let Ok(uri) = target.parse::<Uri>()
            && uri.authority().is_none()
            && uri.scheme().is_none()
        {
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

/// The path a trailing-slash redirect may send to: `path` without its trailing slashes and with one leading
/// slash; `None` when there is nothing left or it could name another host once a browser decoded it.
fn redirect_path(path: &str) -> Option<String> {
    let body = path.trim_end_matches('/').trim_start_matches('/');
    if body.is_empty() {
        return None;
    }
    let decoded = percent_decoded(body);
    let unsafe_byte = |b: &u8| *b == b'\\' || b.is_ascii_control() || *b == b' ';
    if decoded.iter().any(unsafe_byte) || decoded.first() == Some(&b'/') {
        return None;
    }
    Some(format!("/{body}"))
}

/// `%XX` sequences decoded (others kept), as a browser or a proxy might before reading the path.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redirect_path;

    #[test]
    fn redirects_stay_on_this_server() {
        assert_eq!(redirect_path("/health/").as_deref(), Some("/health"));
        assert_eq!(redirect_path("/api/v1/executions//").as_deref(), Some("/api/v1/executions"));
        assert_eq!(redirect_path("//evil.example/").as_deref(), Some("/evil.example"));
        assert_eq!(redirect_path("///evil.example//").as_deref(), Some("/evil.example"));
        for refused in
            ["/\\evil.example/", "/%5Cevil.example/", "/%2F%2Fevil.example/", "//%2fevil.example/", "/%09/evil/", "///"]
        {
            assert_eq!(redirect_path(refused), None, "{refused}");
        }
        assert_eq!(redirect_path("/a%2Fb/").as_deref(), Some("/a%2Fb"), "an encoded slash inside is a path");
    }
}
