//! Files out (docs/sessions.md): what executions left in `/work`, and the files of a session's `/work`.

use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pyexec_core::ErrorResponse;
use pyexec_core::model::OutputFile;
use pyexec_core::session::FileList;
use pyexec_core::spec::check_file_name;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::executions::visible;
use super::sessions::visible_session;
use crate::backend::StdinFile;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Caller;

/// Query of the file lists (a query string: utoipa would otherwise document the field as a path parameter).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    /// `json` (the default: the list) or `tar` (every file, as one tar).
    #[serde(default)]
    #[param(value_type = FilesFormat, inline, required = false)]
    pub format: Option<String>,
}

/// What the file list answers with.
// The values `wants_tar` accepts, for the document only (Swagger then offers a choice instead of free text); the
// field stays a string so that an unknown format gets this API's own 400.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase", default = "json")]
#[allow(dead_code)]
enum FilesFormat {
    Json,
    Tar,
}

/// A path inside `/work`, as the API accepts it: relative, no `..`, no empty or `.` component, no NUL.
pub(crate) fn work_path(path: &str) -> Result<String, ApiError> {
    if path.starts_with('/') || path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(ApiError::BadRequest(format!("invalid path {path:?}: paths are relative to /work, without '..'")));
    }
    check_file_name(path).map_err(|e| ApiError::BadRequest(e.message))
}

fn wants_tar(query: &FilesQuery) -> Result<bool, ApiError> {
    match query.format.as_deref() {
        None | Some("") | Some("json") => Ok(false),
        Some("tar") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!("unknown format {other:?}: use json or tar"))),
    }
}

/// One file's bytes, with a content type guessed from its name.
fn file_response(path: &str, bytes: Vec<u8>) -> Response {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut response = (StatusCode::OK, bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let name = path.rsplit('/').next().unwrap_or(path).replace(['"', '\\'], "_");
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// A tar of `files` (paths and bytes).
fn tar_response(files: Vec<(String, Vec<u8>)>) -> Result<Response, ApiError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut head = tar::Header::new_gnu();
        head.set_size(bytes.len() as u64);
        head.set_mode(0o644);
        head.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut head, &path, bytes.as_slice())
            .map_err(|e| ApiError::Internal(format!("building a tar: {e}")))?;
    }
    let data = builder.into_inner().map_err(|e| ApiError::Internal(format!("building a tar: {e}")))?;
    let mut response = (StatusCode::OK, data).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(response)
}

/// The files an execution created or changed under `/work` (`?format=tar`: all of them as one tar).
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/files",
    operation_id = "list_execution_files",
    tag = "files",
    params(("id" = String, Path, description = "Execution id (`exe_...`)"), FilesQuery),
    responses(
        (status = 200, description = "The list (or, with `format=tar`, an application/x-tar of the files)", content(
            (FileList = "application/json"),
            ("application/x-tar"),
        )),
        (status = 400, description = "Unknown format", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or expired execution", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn execution_list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<FilesQuery>,
) -> Result<Response, ApiError> {
    visible(&state, &caller, &id).await?;
    let tar = wants_tar(&query)?;
    let list = state.backend.execution_files(&id).await?.ok_or_else(|| state.execution_not_found())?;
    if !tar {
        return Ok(Json(list).into_response());
    }
    let mut files = Vec::with_capacity(list.files.len());
    for f in &list.files {
        if let Some(bytes) = state.backend.execution_file(&id, &f.path).await? {
            files.push((f.path.clone(), bytes));
        }
    }
    tar_response(files)
}

/// One file an execution left in `/work`.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/files/{path}",
    operation_id = "get_execution_file",
    tag = "files",
    params(("id" = String, Path, description = "Execution id"), ("path" = String, Path, description = "Path under /work, as listed")),
    responses(
        // Any bytes: no schema (OpenAPI 3.1's way to say so), not a JSON array of numbers.
        (status = 200, description = "The file's bytes, Content-Type guessed from its name", content(("application/octet-stream"))),
        (status = 400, description = "Invalid path", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown execution or file", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn execution_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    visible(&state, &caller, &id).await?;
    let path = work_path(&path)?;
    match state.backend.execution_file(&id, &path).await? {
        Some(bytes) => Ok(file_response(&path, bytes)),
        None => Err(ApiError::NotFound(format!("execution {id} kept no file {path:?}"))),
    }
}

/// The regular files in a session's `/work` now (`?format=tar`: all of them as one tar).
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/files",
    operation_id = "list_session_files",
    tag = "files",
    params(("id" = String, Path, description = "Session id (`ses_...`)"), FilesQuery),
    responses(
        (status = 200, description = "The list (or, with `format=tar`, an application/x-tar of the files)", content(
            (FileList = "application/json"),
            ("application/x-tar"),
        )),
        (status = 400, description = "Unknown format", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or ended session", body = ErrorResponse),
        (status = 409, description = "A call of the session is running", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn session_list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<FilesQuery>,
) -> Result<Response, ApiError> {
    visible_session(&state, &caller, &id).await?;
    let tar = wants_tar(&query)?;
    let list = state.backend.session_files(&id).await?;
    if !tar {
        return Ok(Json(list).into_response());
    }
    let mut files = Vec::with_capacity(list.files.len());
    for f in &list.files {
        files.push((f.path.clone(), state.backend.session_file(&id, &f.path).await?));
    }
    tar_response(files)
}

/// One file of a session's `/work`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/files/{path}",
    operation_id = "get_session_file",
    tag = "files",
    params(("id" = String, Path, description = "Session id"), ("path" = String, Path, description = "Path under /work")),
    responses(
        (status = 200, description = "The file's bytes, Content-Type guessed from its name", content(("application/octet-stream"))),
        (status = 400, description = "Invalid path", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown session or file (links are never followed)", body = ErrorResponse),
        (status = 409, description = "A call of the session is running", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn session_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    visible_session(&state, &caller, &id).await?;
    let path = work_path(&path)?;
    Ok(file_response(&path, state.backend.session_file(&id, &path).await?))
}

/// Uploads one file into a session's `/work` (the raw body, streamed; parent directories are created).
#[utoipa::path(
    put,
    path = "/api/v1/sessions/{id}/files/{path}",
    operation_id = "upload_session_file",
    tag = "files",
    params(("id" = String, Path, description = "Session id"), ("path" = String, Path, description = "Path under /work")),
    // No schema: any bytes (Swagger offers a file to pick), where `Vec<u8>` would document a JSON array.
    request_body(content(("application/octet-stream")), description = "The file's bytes"),
    responses(
        (status = 201, description = "Written", body = OutputFile),
        (status = 400, description = "Invalid path", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or ended session", body = ErrorResponse),
        (status = 409, description = "A call of the session is running", body = ErrorResponse),
        (status = 413, description = "Larger than PYEXEC_SESSION_UPLOAD_MAX_BYTES, or no space left in /work", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn session_upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
    request: Request,
) -> Result<(StatusCode, Json<OutputFile>), ApiError> {
    visible_session(&state, &caller, &id).await?;
    let path = work_path(&path)?;
    let max = state.session_upload_max_bytes;
    let too_large =
        || ApiError::TooLarge(format!("the file is over the limit of {max} bytes (PYEXEC_SESSION_UPLOAD_MAX_BYTES)"));
    // Spooled to the backend's staging folder, so the body is never held in memory; dropping the handle removes
    // the file if anything fails.
    let spool = state.backend.staging_dir().join(format!("upload-{}", uuid::Uuid::new_v4()));
    let file = StdinFile::new(spool.clone());
    let mut out = tokio::fs::File::create(&spool).await.map_err(|e| ApiError::Internal(format!("spooling: {e}")))?;
    let mut body = request.into_body().into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        written += chunk.len() as u64;
        if written > max {
            return Err(too_large());
        }
        out.write_all(&chunk).await.map_err(|e| ApiError::Internal(format!("spooling: {e}")))?;
    }
    out.flush().await.map_err(|e| ApiError::Internal(format!("spooling: {e}")))?;
    drop(out);
    let stored = state.backend.session_upload(&id, &path, file).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_like_archive_entries() {
        assert_eq!(work_path("out/plot.png").unwrap(), "out/plot.png");
        for bad in ["../x", "/etc/passwd", "a/../../b", "a//b", "./a", "a/.", "a\0b", ""] {
            assert!(work_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_are_json_or_tar() {
        assert!(!wants_tar(&FilesQuery::default()).unwrap());
        assert!(wants_tar(&FilesQuery { format: Some("tar".into()) }).unwrap());
        assert!(wants_tar(&FilesQuery { format: Some("zip".into()) }).is_err());
    }
}
