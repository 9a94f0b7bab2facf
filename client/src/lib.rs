//! Async client of the python-executor API (this server and the original alike), with this server's sessions and
//! files ([`Client::create_session`], [`Client::execution_files`], ...; see `docs/sessions.md`).
//!
//! ```no_run
//! # async fn demo() -> pyexec_client::Result<()> {
//! use pyexec_client::{Client, EvalRequest};
//! let client = Client::new("http://localhost:8080")?;
//! let result = client
//!     .eval(&EvalRequest { code: Some("6 * 7".into()), eval_last_expr: Some(true), ..Default::default() })
//!     .await?;
//! assert_eq!(result.result.as_deref(), Some("42"));
//! # Ok(())
//! # }
//! ```

pub mod archive;
mod error;
pub mod events;
mod sessions;

use std::time::Duration;

use futures::StreamExt;
pub use pyexec_core::{
    AsyncResponse, CodeFile, EvalRequest, ExecutionConfig, ExecutionPage, ExecutionResult, ExecutionStatus,
    KillResponse, Metadata,
};
use reqwest::{Response, StatusCode};

pub use archive::Archive;
pub use error::{Error, Result};
pub use events::Event;
pub use pyexec_core::model::{DisplayOutput, OutputFile};
pub use pyexec_core::session::{FileList, NewSession, SessionConfig, SessionInfo, SessionList, SessionState};
pub use sessions::check_file_path;

/// A session, as the server shows it (`docs/sessions.md`).
pub type Session = SessionInfo;

/// Default server, as the original CLI.
pub const DEFAULT_SERVER: &str = "http://localhost:8080";

/// A python-executor server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

/// Filters of [`Client::list`].
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Page size (server default 50).
    pub limit: Option<usize>,
    /// Cursor of the previous page.
    pub cursor: Option<String>,
}

impl Client {
    /// A client with no overall request timeout (synchronous runs may take as long as their own timeout).
    pub fn new(base_url: &str) -> Result<Client> {
        Self::with_http(base_url, reqwest::Client::builder().connect_timeout(Duration::from_secs(10)))
    }

    /// A client built from a configured `reqwest` builder.
    pub fn with_http(base_url: &str, builder: reqwest::ClientBuilder) -> Result<Client> {
        let http = builder.build().map_err(|e| Error::Transport { url: base_url.to_owned(), source: e })?;
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Error::Input(format!("the server URL must start with http:// or https://, got {base_url:?}")));
        }
        Ok(Client { http, base, api_key: None })
    }

    /// Sends `Authorization: Bearer <key>` with every call.
    pub fn api_key(mut self, key: Option<String>) -> Client {
        self.api_key = key.filter(|k| !k.is_empty());
        self
    }

    /// The server URL (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    fn transport(&self, source: reqwest::Error) -> Error {
        Error::Transport { url: self.base.clone(), source }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Response> {
        self.send_about(builder, Subject::Execution).await
    }

    /// Sends a request about `subject`, which names what a 404 is missing and what a 429 means.
    async fn send_about(&self, builder: reqwest::RequestBuilder, subject: Subject<'_>) -> Result<Response> {
        let response = builder.send().await.map_err(|e| self.transport(e))?;
        check(response, subject).await
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Result<T> {
        self.json_about(builder, Subject::Execution).await
    }

    async fn json_about<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        subject: Subject<'_>,
    ) -> Result<T> {
        let response = self.send_about(builder, subject).await?;
        let text = response.text().await.map_err(|e| self.transport(e))?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {}", truncate(&text))))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<serde_json::Value> {
        self.json(self.request(reqwest::Method::GET, "/health")).await
    }

    /// `POST /api/v1/eval`: runs code and waits for the result.
    pub async fn eval(&self, request: &EvalRequest) -> Result<ExecutionResult> {
        self.json(self.request(reqwest::Method::POST, "/api/v1/eval").json(request)).await
    }

    fn form(archive: Archive, metadata: &Metadata) -> Result<reqwest::multipart::Form> {
        let meta = serde_json::to_string(metadata).map_err(|e| Error::Input(e.to_string()))?;
        let tar = reqwest::multipart::Part::stream(archive.body)
            .file_name("code.tar")
            .mime_str("application/octet-stream")
            .map_err(|e| Error::Input(e.to_string()))?;
        let meta = reqwest::multipart::Part::text(meta)
            .mime_str("application/json")
            .map_err(|e| Error::Input(e.to_string()))?;
        Ok(reqwest::multipart::Form::new().part("tar", tar).part("metadata", meta))
    }

    /// `POST /api/v1/exec/sync`: uploads the archive, runs it and waits for the result.
    pub async fn exec_sync(&self, archive: Archive, metadata: &Metadata) -> Result<ExecutionResult> {
        let form = Self::form(archive, metadata)?;
        self.json(self.request(reqwest::Method::POST, "/api/v1/exec/sync").multipart(form)).await
    }

    /// `POST /api/v1/exec/async`: uploads the archive and returns the new execution's id.
    pub async fn exec_async(&self, archive: Archive, metadata: &Metadata) -> Result<String> {
        let form = Self::form(archive, metadata)?;
        let answer: AsyncResponse =
            self.json(self.request(reqwest::Method::POST, "/api/v1/exec/async").multipart(form)).await?;
        Ok(answer.execution_id)
    }

    /// `GET /api/v1/executions/{id}`.
    pub async fn get(&self, id: &str) -> Result<ExecutionResult> {
        self.json(self.request(reqwest::Method::GET, &format!("/api/v1/executions/{}", path_segment(id)))).await
    }

    /// `DELETE /api/v1/executions/{id}`: kills it; returns the status after the request.
    pub async fn kill(&self, id: &str) -> Result<ExecutionStatus> {
        let answer: KillResponse = self
            .json(self.request(reqwest::Method::DELETE, &format!("/api/v1/executions/{}", path_segment(id))))
            .await?;
        Ok(answer.status)
    }

    /// `GET /api/v1/executions`: one page, newest first.
    pub async fn list(&self, query: &ListQuery) -> Result<ExecutionPage> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = query.status {
            params.push(("status", s.to_string()));
        }
        if let Some(l) = query.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(c) = &query.cursor {
            params.push(("cursor", c.clone()));
        }
        self.json(self.request(reqwest::Method::GET, "/api/v1/executions").query(&params)).await
    }

    /// Polls until the execution is terminal.
    pub async fn wait(&self, id: &str, poll: Duration) -> Result<ExecutionResult> {
        loop {
            let result = self.get(id).await?;
            if result.status.is_terminal() {
                return Ok(result);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// `GET /api/v1/executions/{id}/events`: output as it is produced, then the result.
    pub async fn events(&self, id: &str) -> Result<events::EventStream> {
        let response = self
            .send(
                self.request(reqwest::Method::GET, &format!("/api/v1/executions/{}/events", path_segment(id)))
                    .header(reqwest::header::ACCEPT, "text/event-stream"),
            )
            .await?;
        Ok(events::parse(response))
    }

    /// Follows an execution to its end, handing live output to `on_output(stream, text)`. Uses the event stream,
    /// and falls back to polling every `poll` where the server has none (the original) or the stream breaks.
    pub async fn follow(
        &self,
        id: &str,
        poll: Duration,
        mut on_output: impl FnMut(&str, &str),
    ) -> Result<ExecutionResult> {
        match self.events(id).await {
            Ok(mut stream) => {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(Event::Output { stream, data }) => on_output(&stream, &data),
                        Ok(Event::Result(result)) => return Ok(*result),
                        Ok(Event::Status(_)) => {}
                        Err(_) => break,
                    }
                }
                self.wait(id, poll).await
            }
            Err(Error::NotFound { .. }) => {
                // The original has no event stream: its 404 is a plain-text page, ours a JSON one.
                self.wait(id, poll).await
            }
            Err(other) => Err(other),
        }
    }
}

/// Ids are used in paths: keep them from adding path segments.
fn path_segment(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

fn truncate(text: &str) -> String {
    if text.len() <= 200 {
        return text.to_owned();
    }
    let mut end = 200;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What a request is about: names what a 404 says is missing, and tells a full session table (429 to a new
/// session) from a full queue.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    /// An execution (and the endpoints of the original).
    Execution,
    /// `POST /api/v1/sessions`.
    NewSession,
    /// A session.
    Session(&'a str),
    /// A file of an execution or a session.
    File(sessions::Owner<'a>, &'a str),
}

impl Subject<'_> {
    fn missing(self) -> String {
        match self {
            Subject::Execution => "execution".to_owned(),
            Subject::NewSession => "the sessions API".to_owned(),
            Subject::Session(id) => format!("session {id}"),
            Subject::File(owner, path) => format!("file {path:?} of {owner}"),
        }
    }
}

/// Turns non-2xx answers into errors carrying the server's message.
async fn check(response: Response, subject: Subject<'_>) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| truncate(text.trim()));
    Err(match status {
        StatusCode::NOT_FOUND => Error::NotFound { what: subject.missing() },
        StatusCode::UNAUTHORIZED => Error::Unauthorized(message),
        StatusCode::CONFLICT => Error::Busy(message),
        StatusCode::TOO_MANY_REQUESTS if matches!(subject, Subject::NewSession) => {
            Error::TooManySessions { message, retry_after }
        }
        StatusCode::TOO_MANY_REQUESTS => Error::QueueFull { retry_after },
        s if s.is_server_error() => Error::Server { status: s.as_u16(), message },
        s => Error::Rejected { status: s.as_u16(), message },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(Client::new("http://localhost:8080/").unwrap().base_url(), "http://localhost:8080");
        assert!(Client::new("localhost:8080").is_err());
        assert_eq!(path_segment("exe_1/../../x"), "exe_1x");
    }
}
