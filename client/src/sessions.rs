//! Sessions (an interpreter that keeps its state between calls) and files (what runs wrote under `/work`), as
//! `docs/sessions.md` specifies them.
//!
//! ```no_run
//! # async fn demo() -> pyexec_client::Result<()> {
//! use pyexec_client::{Client, EvalRequest, NewSession};
//! let client = Client::new("http://localhost:8080")?;
//! let session = client.create_session(&NewSession::default()).await?;
//! let id = &session.session_id;
//! client.session_eval(id, &EvalRequest { code: Some("x = 21".into()), ..Default::default() }).await?;
//! let r = client.session_eval(id, &EvalRequest { code: Some("x * 2".into()), ..Default::default() }).await?;
//! assert_eq!(r.result.as_deref(), Some("42"));
//! client.session_upload(id, "data/in.csv", std::path::Path::new("in.csv")).await?;
//! let listing = client.session_files(id).await?;
//! let bytes = client.session_download(id, "data/in.csv").await?;
//! # let _ = (listing, bytes);
//! client.delete_session(id).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use pyexec_core::session::{FileList, NewSession, SessionInfo, SessionList};
use pyexec_core::{EvalRequest, ExecutionResult};
use reqwest::{Method, Response};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::{Client, OutputFile, Subject, path_segment};

/// Whose files: an execution's (kept with it) or a session's (its `/work` now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner<'a> {
    Execution(&'a str),
    Session(&'a str),
}

impl Owner<'_> {
    /// `/api/v1/executions/{id}/files` or `/api/v1/sessions/{id}/files`.
    fn files_url(self) -> String {
        match self {
            Owner::Execution(id) => format!("/api/v1/executions/{}/files", path_segment(id)),
            Owner::Session(id) => format!("/api/v1/sessions/{}/files", path_segment(id)),
        }
    }

    fn file_url(self, path: &str) -> Result<String> {
        Ok(format!("{}/{}", self.files_url(), encode_file_path(path)?))
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Execution(id) => write!(f, "execution {id}"),
            Owner::Session(id) => write!(f, "session {id}"),
        }
    }
}

/// Checks a file path as the server does (`docs/sessions.md`): relative to `/work`, not empty, no leading `/`, no
/// empty, `.` or `..` component, no NUL byte. Checked before sending, because URLs resolve `..` segments (even
/// percent-encoded ones) and would send the request elsewhere.
pub fn check_file_path(path: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Input(format!("invalid file path {path:?}: {why}")));
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("paths are relative to /work");
    }
    if path.contains('\0') {
        return bad("NUL byte");
    }
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("empty, `.` or `..` component");
    }
    Ok(())
}

/// A checked file path with every byte but unreserved characters and `/` percent-encoded.
fn encode_file_path(path: &str) -> Result<String> {
    check_file_path(path)?;
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

impl Client {
    /// `POST /api/v1/sessions`: starts a session (its requirements are installed first). A full server answers
    /// [`Error::TooManySessions`].
    pub async fn create_session(&self, request: &NewSession) -> Result<SessionInfo> {
        self.json_about(self.request(Method::POST, "/api/v1/sessions").json(request), Subject::NewSession).await
    }

    /// `GET /api/v1/sessions/{id}`; [`Error::NotFound`] once it ended.
    pub async fn get_session(&self, id: &str) -> Result<SessionInfo> {
        self.json_about(self.request(Method::GET, &session_url(id, "")), Subject::Session(id)).await
    }

    /// `GET /api/v1/sessions`: the live sessions, newest first.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let list: SessionList =
            self.json_about(self.request(Method::GET, "/api/v1/sessions"), Subject::NewSession).await?;
        Ok(list.sessions)
    }

    /// `DELETE /api/v1/sessions/{id}`: ends it (its processes are gone when this returns); the session with
    /// state `ended`.
    pub async fn delete_session(&self, id: &str) -> Result<SessionInfo> {
        self.json_about(self.request(Method::DELETE, &session_url(id, "")), Subject::Session(id)).await
    }

    /// `POST /api/v1/sessions/{id}/eval`: runs a cell in the session and waits for its result. `code`, `files`,
    /// `stdin`, `eval_last_expr` and `config.timeout_seconds` apply; the session owns every other setting. A call
    /// while another runs answers [`Error::Busy`].
    pub async fn session_eval(&self, id: &str, request: &EvalRequest) -> Result<ExecutionResult> {
        self.json_about(self.request(Method::POST, &session_url(id, "/eval")).json(request), Subject::Session(id)).await
    }

    /// `GET /api/v1/sessions/{id}/files`: the regular files in the session's `/work` now.
    pub async fn session_files(&self, id: &str) -> Result<FileList> {
        self.list_files(Owner::Session(id)).await
    }

    /// `GET /api/v1/sessions/{id}/files/{path}`: one file of the session's `/work`, in memory.
    pub async fn session_download(&self, id: &str, path: &str) -> Result<Bytes> {
        self.file_bytes(Owner::Session(id), path).await
    }

    /// `GET /api/v1/sessions/{id}/files/{path}`, streamed into `writer`; returns the number of bytes written.
    pub async fn session_download_to<W>(&self, id: &str, path: &str, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.file_to(Owner::Session(id), path, writer).await
    }

    /// `GET /api/v1/sessions/{id}/files?format=tar`: the session's `/work` as one tar, streamed into `writer`.
    pub async fn session_download_tar<W>(&self, id: &str, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.tar_to(Owner::Session(id), writer).await
    }

    /// `PUT /api/v1/sessions/{id}/files/{path}`: uploads the local file `local` as `path` (relative to `/work`;
    /// parent directories are created), streamed from disk. Returns the stored file's path, size and SHA-256.
    pub async fn session_upload(&self, id: &str, path: &str, local: &Path) -> Result<OutputFile> {
        let url = Owner::Session(id).file_url(path)?;
        let input = |e: std::io::Error| Error::Input(format!("{}: {e}", local.display()));
        let file = tokio::fs::File::open(local).await.map_err(input)?;
        let meta = file.metadata().await.map_err(input)?;
        if !meta.is_file() {
            return Err(Error::Input(format!("{} is not a file", local.display())));
        }
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        self.upload(&url, id, body, meta.len()).await
    }

    /// `PUT /api/v1/sessions/{id}/files/{path}` with bytes from memory.
    pub async fn session_upload_bytes(&self, id: &str, path: &str, content: impl Into<Bytes>) -> Result<OutputFile> {
        let url = Owner::Session(id).file_url(path)?;
        let content: Bytes = content.into();
        let len = content.len() as u64;
        self.upload(&url, id, reqwest::Body::from(content), len).await
    }

    async fn upload(&self, url: &str, id: &str, body: reqwest::Body, len: u64) -> Result<OutputFile> {
        // The length up front lets the server refuse an upload over its limit (413) before it is sent.
        let request = self
            .request(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        self.json_about(request, Subject::Session(id)).await
    }

    /// `GET /api/v1/executions/{id}/files`: the files the execution created or changed under `/work`.
    pub async fn execution_files(&self, id: &str) -> Result<FileList> {
        self.list_files(Owner::Execution(id)).await
    }

    /// `GET /api/v1/executions/{id}/files/{path}`: one file of an execution, in memory.
    pub async fn download_file(&self, id: &str, path: &str) -> Result<Bytes> {
        self.file_bytes(Owner::Execution(id), path).await
    }

    /// `GET /api/v1/executions/{id}/files/{path}`, streamed into `writer`; returns the number of bytes written.
    pub async fn download_file_to<W>(&self, id: &str, path: &str, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.file_to(Owner::Execution(id), path, writer).await
    }

    /// `GET /api/v1/executions/{id}/files?format=tar`: all of an execution's files as one tar, streamed into
    /// `writer`; returns the number of bytes written.
    pub async fn download_files_tar<W>(&self, id: &str, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.tar_to(Owner::Execution(id), writer).await
    }

    async fn list_files(&self, owner: Owner<'_>) -> Result<FileList> {
        self.json_about(self.request(Method::GET, &owner.files_url()), owner_subject(owner)).await
    }

    async fn file_response(&self, owner: Owner<'_>, path: &str) -> Result<Response> {
        let url = owner.file_url(path)?;
        self.send_about(self.request(Method::GET, &url), Subject::File(owner, path)).await
    }

    async fn file_bytes(&self, owner: Owner<'_>, path: &str) -> Result<Bytes> {
        let response = self.file_response(owner, path).await?;
        response.bytes().await.map_err(|e| self.transport(e))
    }

    async fn file_to<W>(&self, owner: Owner<'_>, path: &str, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let response = self.file_response(owner, path).await?;
        self.copy(response, writer).await
    }

    async fn tar_to<W>(&self, owner: Owner<'_>, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let request = self.request(Method::GET, &owner.files_url()).query(&[("format", "tar")]);
        let response = self.send_about(request, owner_subject(owner)).await?;
        self.copy(response, writer).await
    }

    /// Streams an answer's body into `writer`, chunk by chunk.
    async fn copy<W>(&self, response: Response, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut body = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.transport(e))?;
            writer.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        writer.flush().await?;
        Ok(written)
    }
}

fn session_url(id: &str, tail: &str) -> String {
    format!("/api/v1/sessions/{}{tail}", path_segment(id))
}

/// A 404 to a listing means the execution or session is unknown.
fn owner_subject(owner: Owner<'_>) -> Subject<'_> {
    match owner {
        Owner::Execution(_) => Subject::Execution,
        Owner::Session(id) => Subject::Session(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_and_encoded() {
        assert_eq!(encode_file_path("out/plot 1.png").unwrap(), "out/plot%201.png");
        assert_eq!(encode_file_path("a?b#c%d").unwrap(), "a%3Fb%23c%25d");
        assert_eq!(encode_file_path("é.txt").unwrap(), "%C3%A9.txt");
        assert_eq!(encode_file_path(".hidden/..x").unwrap(), ".hidden/..x");
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/.", "dir/", "a\0b"] {
            assert!(matches!(encode_file_path(bad), Err(Error::Input(_))), "{bad:?}");
        }
    }

    #[test]
    fn urls_name_the_owner() {
        assert_eq!(Owner::Execution("exe_1").file_url("a b").unwrap(), "/api/v1/executions/exe_1/files/a%20b");
        assert_eq!(Owner::Session("ses_1/../x").files_url(), "/api/v1/sessions/ses_1x/files");
        assert_eq!(Subject::File(Owner::Session("ses_1"), "p.csv").missing(), "file \"p.csv\" of session ses_1");
    }
}
