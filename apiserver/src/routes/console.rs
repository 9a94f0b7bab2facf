//! `/ui`: the web console (docs/console.md), a static single-page application built from `console/` and embedded
//! in the binary. It holds no data and needs no key to load; everything it shows comes from ordinary API calls
//! made with the key its user enters.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use crate::state::AppState;

/// The built console (`cd console && npm ci && npm run build`; the output is kept in the repository).
#[derive(Embed)]
#[folder = "../console/dist/"]
struct Assets;

/// Only this server's scripts run, and the page talks to this server only. Styles may be inline: the editor
/// sets them from its scripts. Images may be `data:` URLs (plots come as base64) and `blob:` URLs (downloads).
/// HTML outputs of a run are shown in `sandbox` frames, which get an opaque origin and no scripts.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; frame-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/ui", get(index)).route("/ui/", get(index)).route("/ui/{*path}", get(asset))
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

/// One embedded file, or the original's plain 404 for any other path (the console routes with `#`, so no other
/// path is a page).
fn serve(path: &str) -> Response {
    let Some(file) = Assets::get(path) else { return super::not_found_response() };
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    // Vite names what it builds under assets/ by content hash: those never change. The page itself is checked
    // each time, so that a new build is picked up at once.
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
