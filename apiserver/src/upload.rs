//! Receiving the multipart body of `/exec/sync` and `/exec/async`: the `tar` file part is streamed, chunk by
//! chunk, into the checked unpacker (never held whole in memory), and the `metadata` field is collected.
//!
//! Errors follow the original's messages and order: not multipart, no `tar` file part, no `metadata`, bad JSON.

use std::io::Read;
use std::path::{Path, PathBuf};

use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use pyexec_core::Metadata;
use pyexec_core::workspace::{self, IngestLimits, WorkspaceError};
use tokio::sync::mpsc;

use crate::error::ApiError;

/// A received and checked upload.
#[derive(Debug)]
pub struct Upload {
    /// The parsed `metadata` field.
    pub metadata: Metadata,
    /// The unpacked archive, a directory under the staging directory (the caller owns it).
    pub workspace: PathBuf,
}

/// Checks the `Content-Type` the way the original did, before the body is read.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut parts = value.split(';').map(str::trim);
    if !parts.next().unwrap_or("").eq_ignore_ascii_case("multipart/form-data") {
        return Err(ApiError::BadRequest("parsing form: request Content-Type isn't multipart/form-data".into()));
    }
    if !parts.any(|p| p.to_ascii_lowercase().starts_with("boundary=")) {
        return Err(ApiError::BadRequest("parsing form: no multipart boundary param in Content-Type".into()));
    }
    Ok(())
}

fn multipart_error(e: MultipartError, upload_limit_mb: u64) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge(format!(
            "the request body exceeds the upload limit of {upload_limit_mb} MiB (PYEXEC_MAX_UPLOAD_MB)"
        ));
    }
    ApiError::BadRequest(format!("parsing form: {}", e.body_text()))
}

/// Removes a staged directory when dropped, unless kept.
struct Staged(Option<PathBuf>);

impl Staged {
    fn keep(mut self) -> Option<PathBuf> {
        self.0.take()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Best effort, off the async thread.
            std::thread::spawn(move || std::fs::remove_dir_all(dir));
        }
    }
}

/// Reads the whole multipart body.
pub async fn receive(
    mut multipart: Multipart,
    staging: &Path,
    limits: IngestLimits,
    upload_limit_mb: u64,
) -> Result<Upload, ApiError> {
    let mut metadata: Option<String> = None;
    let mut staged = Staged(None);
    let mut tar_error: Option<ApiError> = None;
    let err = |e| multipart_error(e, upload_limit_mb);
    while let Some(mut field) = multipart.next_field().await.map_err(err)? {
        let name = field.name().unwrap_or("").to_owned();
        let is_file = field.file_name().is_some();
        match name.as_str() {
            "tar" if is_file && staged.0.is_none() && tar_error.is_none() => {
                match receive_tar(&mut field, staging, limits, upload_limit_mb).await {
                    Ok(dir) => staged = Staged(Some(dir)),
                    Err(e) => tar_error = Some(e),
                }
            }
            "metadata" if !is_file && metadata.is_none() => {
                metadata = Some(field.text().await.map_err(err)?);
            }
            _ => while field.chunk().await.map_err(err)?.is_some() {},
        }
    }
    if let Some(e) = tar_error {
        return Err(e);
    }
    if staged.0.is_none() {
        return Err(ApiError::BadRequest("missing tar file: http: no such file".into()));
    }
    let metadata = match metadata {
        Some(m) if !m.trim().is_empty() => m,
        _ => return Err(ApiError::BadRequest("missing metadata".into())),
    };
    let metadata: Metadata =
        serde_json::from_str(&metadata).map_err(|e| ApiError::BadRequest(format!("parsing metadata: {e}")))?;
    let workspace = staged.keep().ok_or_else(|| ApiError::Internal("upload vanished".into()))?;
    Ok(Upload { metadata, workspace })
}

/// Streams one archive part into a new staging directory.
async fn receive_tar(
    field: &mut Field<'_>,
    staging: &Path,
    limits: IngestLimits,
    upload_limit_mb: u64,
) -> Result<PathBuf, ApiError> {
    let dir = staging.join(format!("upload-{}", uuid_like()));
    workspace::create_dir(&dir).map_err(|e| ApiError::Internal(format!("creating {}: {e}", dir.display())))?;
    let staged = Staged(Some(dir.clone()));
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let target = dir.clone();
    let unpack = tokio::task::spawn_blocking(move || {
        workspace::ingest_tar(ChannelReader { rx, current: Bytes::new() }, &target, limits)
    });
    let mut read_error = None;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                // The unpacker stops early on a bad archive; the rest of the part is then read and dropped.
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                read_error = Some(multipart_error(e, upload_limit_mb));
                break;
            }
        }
    }
    drop(tx);
    if read_error.is_none() {
        loop {
            match field.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(multipart_error(e, upload_limit_mb));
                    break;
                }
            }
        }
    }
    let unpacked = unpack.await.map_err(|e| ApiError::Internal(format!("unpacking task failed: {e}")))?;
    if let Some(e) = read_error {
        return Err(e);
    }
    match unpacked {
        Ok(summary) => {
            tracing::debug!(files = summary.files, bytes = summary.bytes, "archive unpacked");
            Ok(staged.keep().unwrap_or(dir))
        }
        Err(e) => Err(unpack_error(e)),
    }
}

/// The answer for an archive that could not be unpacked. A full disk or an exhausted quota is not the client's
/// fault and may pass later, so it is not a 400; the staging directory is removed either way.
fn unpack_error(e: WorkspaceError) -> ApiError {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    match e {
        WorkspaceError::Invalid(m) => ApiError::BadRequest(m),
        WorkspaceError::TooLarge(m) => ApiError::TooLarge(m),
        WorkspaceError::Io(e) if matches!(e.kind(), StorageFull | QuotaExceeded) => ApiError::InsufficientStorage(
            format!("the server has no space left to unpack the archive ({e}); nothing was kept, retry later"),
        ),
        WorkspaceError::Io(e) => ApiError::Internal(format!("unpacking the archive: {e}")),
    }
}

/// A unique enough name for a staging directory.
fn uuid_like() -> String {
    pyexec_core::model::new_execution_id().trim_start_matches("exe_").to_owned()
}

/// Blocking reader over chunks sent by the async side.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn a_full_disk_is_507_and_other_io_errors_500() {
        let io = |code| WorkspaceError::Io(std::io::Error::from_raw_os_error(code));
        let full = unpack_error(io(libc::ENOSPC));
        assert!(matches!(&full, ApiError::InsufficientStorage(m) if m.contains("no space left")), "{full:?}");
        assert!(matches!(unpack_error(io(libc::EDQUOT)), ApiError::InsufficientStorage(_)));
        assert!(matches!(unpack_error(io(libc::EIO)), ApiError::Internal(_)));
        assert!(matches!(unpack_error(WorkspaceError::Invalid("x".into())), ApiError::BadRequest(_)));
        assert_eq!(
            full.into_response().status(),
            axum::http::StatusCode::INSUFFICIENT_STORAGE,
            "the status clients see"
        );
    }

    #[test]
    fn content_type_checks_use_the_original_messages() {
        let mut h = HeaderMap::new();
        let msg = |h: &HeaderMap| match check_content_type(h) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(msg(&h), "parsing form: request Content-Type isn't multipart/form-data");
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(msg(&h), "parsing form: request Content-Type isn't multipart/form-data");
        h.insert(header::CONTENT_TYPE, "multipart/form-data".parse().unwrap());
        assert_eq!(msg(&h), "parsing form: no multipart boundary param in Content-Type");
        h.insert(header::CONTENT_TYPE, "Multipart/Form-Data; boundary=x".parse().unwrap());
        assert!(check_content_type(&h).is_ok());
    }
}
