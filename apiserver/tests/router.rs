//! The HTTP layer alone, in-process: the router with a fake backend, driven by `tower::ServiceExt::oneshot`. No
//! sandbox, no socket, no root: routing, authentication, redirects, the 413 for oversized bodies, list parameters
//! and the mapping of backend errors to answers, in milliseconds. The black-box suites (`conformance.rs` and
//! friends) check the same surface against a real server.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use pyexec_apiserver::backend::{
    Backend, BackendError, BackendHealth, EventStream, ExecutionPage, KillReason, ListQuery, QueueHealth, Source,
};
use pyexec_apiserver::config::Config;
use pyexec_apiserver::metrics::Metrics;
use pyexec_apiserver::origin::BrowserPolicy;
use pyexec_apiserver::routes;
use pyexec_apiserver::state::{AppState, Shared};
use pyexec_core::workspace::IngestLimits;
use pyexec_core::{ExecutionResult, ExecutionSpec, ExecutionStatus, Policy, ValidationError};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A backend that runs nothing: it answers from what the test set and records what it was asked.
#[derive(Default)]
struct FakeBackend {
    /// The error `submit` answers with, once.
    refuse_submit: Mutex<Option<BackendError>>,
    /// Every list query received.
    lists: Mutex<Vec<ListQuery>>,
    /// Every kill received.
    kills: Mutex<Vec<(String, KillReason)>>,
    staging: PathBuf,
}

const KNOWN: &str = "exe_00000000-0000-4000-8000-000000000001";

fn finished(id: &str) -> ExecutionResult {
    let mut r = ExecutionResult::pending(id);
    r.status = ExecutionStatus::Completed;
    r.stdout = "hi\n".into();
    r
}

#[async_trait]
impl Backend for FakeBackend {
    fn check(&self, spec: &ExecutionSpec) -> Result<(), ValidationError> {
        if spec.network {
            return Err(ValidationError::bad_request("no network on the fake backend"));
        }
        Ok(())
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn submit(&self, _spec: ExecutionSpec, _source: Source) -> Result<ExecutionResult, BackendError> {
        if let Some(e) = self.refuse_submit.lock().unwrap().take() {
            return Err(e);
        }
        Ok(ExecutionResult::pending(KNOWN))
    }

    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError> {
        Ok((id == KNOWN).then(|| finished(id)))
    }

    async fn wait(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError> {
        self.get(id).await
    }

    async fn kill(&self, id: &str, reason: KillReason) -> Result<Option<ExecutionStatus>, BackendError> {
        self.kills.lock().unwrap().push((id.to_owned(), reason));
        Ok((id == KNOWN).then_some(ExecutionStatus::Completed))
    }

    async fn list(&self, query: ListQuery) -> Result<ExecutionPage, BackendError> {
        self.lists.lock().unwrap().push(query);
        Ok(ExecutionPage { executions: vec![finished(KNOWN)], next_cursor: None })
    }

    async fn events(&self, _id: &str) -> Result<Option<EventStream>, BackendError> {
        Ok(None)
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            backend: "fake",
            python_versions: vec!["3.12".into()],
            default_python_version: Some("3.12".into()),
            isolation: json!({}),
            dependencies: json!({}),
            queue: QueueHealth { pending: 0, running: 0, max_concurrent: 1, max_queue: 1 },
            warm_pools: json!(null),
        }
    }

    async fn shutdown(&self, _grace: Duration) {}
}

/// The router over `backend`, with `keys` (none: no authentication) and a 1 MiB upload limit.
fn app(backend: std::sync::Arc<FakeBackend>, keys: &[&str]) -> Router {
    let config = Config::try_parse_from(["pyexec-apiserver"]).unwrap();
    let state = AppState::new(Shared {
        backend,
        policy: Policy::default(),
        ingest: IngestLimits { max_bytes: 1 << 20, max_entries: 100 },
        upload_limit_mb: 1,
        tenants: std::sync::Arc::new(
            pyexec_apiserver::tenants::Tenants::load(
                &keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                None,
                Default::default(),
                &[],
            )
            .unwrap(),
        ),
        metrics: Metrics::new(),
        browser: BrowserPolicy::new(&config, !keys.is_empty()).unwrap(),
        session_timeouts: pyexec_core::session::SessionTimeouts { idle_default: 600, idle_max: 3600 },
        session_upload_max_bytes: 1 << 20,
        mcp_output: pyexec_mcp::OutputBudget::default(),
        retention: std::time::Duration::from_secs(86_400),
        idempotency: Default::default(),
        webhooks: None,
    });
    routes::router(state)
}

fn fake() -> std::sync::Arc<FakeBackend> {
    std::sync::Arc::new(FakeBackend { staging: std::env::temp_dir(), ..Default::default() })
}

fn request(method: &str, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder().method(method).uri(uri).header(header::HOST, "localhost").body(body.into()).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
    Answer { status, headers, body }
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_originals_plain_404() {
    let app = app(fake(), &[]);
    for (method, uri) in [("GET", "/nope"), ("PUT", "/api/v1/eval"), ("POST", "/api/v1/executions"), ("GET", "/api")] {
        let a = send(&app, request(method, uri, Body::empty())).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(a.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(a.body, b"404 page not found");
    }
    let a = send(&app, request("GET", "/health", Body::empty())).await;
    assert_eq!((a.status, a.json()["status"].as_str()), (StatusCode::OK, Some("ok")));
}

#[tokio::test]
async fn trailing_slashes_redirect_on_this_server() {
    let app = app(fake(), &[]);
    let a = send(&app, request("GET", "/health/?x=1", Body::empty())).await;
    assert_eq!(
        (a.status, a.headers[header::LOCATION].to_str().unwrap()),
        (StatusCode::MOVED_PERMANENTLY, "/health?x=1")
    );
    let a = send(&app, request("POST", "/api/v1/eval/", Body::empty())).await;
    assert_eq!(
        (a.status, a.headers[header::LOCATION].to_str().unwrap()),
        (StatusCode::TEMPORARY_REDIRECT, "/api/v1/eval")
    );
    let a = send(&app, request("GET", "//evil.example/", Body::empty())).await;
    if let Some(location) = a.headers.get(header::LOCATION) {
        let location = location.to_str().unwrap();
        assert!(location.starts_with('/') && !location.starts_with("//"), "{location}");
    }
}

#[tokio::test]
async fn api_keys_guard_the_api_but_not_health() {
    let app = app(fake(), &["k1", "k2"]);
    let eval = || request("POST", "/api/v1/eval", r#"{"code":"print(1)"}"#);

    let a = send(&app, eval()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    assert!(a.error().starts_with("missing API key"), "{}", a.error());

    let mut wrong = eval();
    wrong.headers_mut().insert(header::AUTHORIZATION, "Bearer k3".parse().unwrap());
    let a = send(&app, wrong).await;
    assert_eq!((a.status, a.error().as_str()), (StatusCode::UNAUTHORIZED, "invalid API key"));

    let mut right = eval();
    right.headers_mut().insert(header::AUTHORIZATION, "Bearer k2".parse().unwrap());
    let a = send(&app, right).await;
    assert_eq!((a.status, a.json()["stdout"].as_str()), (StatusCode::OK, Some("hi\n")));

    for open in ["/health", "/metrics", "/docs/openapi.json"] {
        assert_eq!(send(&app, request("GET", open, Body::empty())).await.status, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn bodies_over_the_upload_limit_get_a_413_naming_the_setting() {
    let app = app(fake(), &[]);
    let body = vec![b' '; (1 << 20) + 10];
    let mut req = request("POST", "/api/v1/eval", body.clone());
    req.headers_mut().insert(header::CONTENT_LENGTH, body.len().into());
    let a = send(&app, req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.error().contains("PYEXEC_MAX_UPLOAD_MB"), "{}", a.error());
    // Without a declared length (chunked), the limit holds while reading.
    let a = send(&app, request("POST", "/api/v1/eval", body)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&a.body));
}

#[tokio::test]
async fn list_parameters_are_checked_and_passed_on() {
    let backend = fake();
    let app = app(backend.clone(), &[]);
    for (query, message) in [
        ("limit=0", "limit must be a number from 1 to 500"),
        ("limit=501", "limit must be a number from 1 to 500"),
        ("limit=x", "limit must be a number from 1 to 500"),
        ("status=bogus", "bogus"),
    ] {
        let a = send(&app, request("GET", &format!("/api/v1/executions?{query}"), Body::empty())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(a.error().contains(message), "{query}: {}", a.error());
    }
    assert!(backend.lists.lock().unwrap().is_empty(), "refused queries never reach the backend");

    let a = send(&app, request("GET", "/api/v1/executions", Body::empty())).await;
    assert_eq!((a.status, a.json()["executions"][0]["execution_id"].as_str()), (StatusCode::OK, Some(KNOWN)));
    send(&app, request("GET", "/api/v1/executions?status=failed&limit=10&cursor=abc", Body::empty())).await;
    send(&app, request("GET", "/api/v1/executions?status=&cursor=", Body::empty())).await;
    assert_eq!(
        *backend.lists.lock().unwrap(),
        vec![
            ListQuery { status: None, limit: 50, before: None, tenant: None, session_id: None },
            ListQuery {
                status: Some(ExecutionStatus::Failed),
                limit: 10,
                before: Some("abc".into()),
                tenant: None,
                session_id: None
            },
            ListQuery { status: None, limit: 50, before: None, tenant: None, session_id: None },
        ]
    );
}

#[tokio::test]
async fn backend_errors_map_to_clear_answers() {
    let backend = fake();
    let app = app(backend.clone(), &[]);
    let eval = || request("POST", "/api/v1/eval", r#"{"code":"print(1)"}"#);

    *backend.refuse_submit.lock().unwrap() =
        Some(BackendError::QueueFull { pending: 7, retry_after: Duration::from_secs(3) });
    let a = send(&app, eval()).await;
    assert_eq!((a.status, a.headers[header::RETRY_AFTER].to_str().unwrap()), (StatusCode::TOO_MANY_REQUESTS, "3"));
    assert!(a.error().contains("queue is full"), "{}", a.error());

    *backend.refuse_submit.lock().unwrap() = Some(BackendError::ShuttingDown);
    assert_eq!(send(&app, eval()).await.status, StatusCode::SERVICE_UNAVAILABLE);

    let secret = "/var/lib/python-executor/store.db: disk I/O error";
    *backend.refuse_submit.lock().unwrap() = Some(BackendError::Internal(secret.into()));
    let a = send(&app, eval()).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!a.error().contains("/var/lib"), "internal details stay in the log: {}", a.error());

    // What only the backend knows is a 400 before anything is accepted.
    let a = send(&app, request("POST", "/api/v1/eval", r#"{"code":"1","config":{"network_disabled":false}}"#)).await;
    assert_eq!((a.status, a.error().as_str()), (StatusCode::BAD_REQUEST, "no network on the fake backend"));

    // Unknown and malformed ids are the same 404; a kill reaches the backend only for well-formed ids.
    for id in ["exe_00000000-0000-4000-8000-000000000002", "nope"] {
        let a = send(&app, request("GET", &format!("/api/v1/executions/{id}"), Body::empty())).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{id}");
        assert!(a.error().contains("not found"), "{}", a.error());
    }
    let a = send(&app, request("DELETE", &format!("/api/v1/executions/{KNOWN}"), Body::empty())).await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    send(&app, request("DELETE", "/api/v1/executions/nope", Body::empty())).await;
    assert_eq!(*backend.kills.lock().unwrap(), vec![(KNOWN.to_owned(), KillReason::Request)]);
}

#[tokio::test]
async fn bad_json_is_a_400_and_nothing_is_submitted() {
    let app = app(fake(), &[]);
    for (body, start) in [
        ("", "invalid JSON: EOF"),
        ("{", "invalid JSON: "),
        (r#"{"code": 5}"#, "invalid JSON: invalid type"),
        ("{}", "either 'code' or 'files' must be provided"),
    ] {
        let a = send(&app, request("POST", "/api/v1/eval", body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.error().starts_with(start), "{body}: {}", a.error());
    }
}
