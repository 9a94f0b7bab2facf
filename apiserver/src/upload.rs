//! Receiving request bodies without holding them more than once in memory.
//!
//! - The multipart body of `/exec/sync` and `/exec/async`: the `tar` file part is streamed, chunk by chunk, into
//!   the checked unpacker (never held whole in memory), and the `metadata` field is collected once. Errors follow
//!   the original's messages and order: not multipart, no `tar` file part, no `metadata`, bad JSON.
//! - The JSON body of `/eval` is read into one buffer ([`read_body`]), and parsed from it.
//! - In both, `stdin` is parsed as raw JSON text and decoded straight from the buffer: small stdin into the spec,
//!   larger stdin into a file in the staging directory ([`take_stdin`]), so that it is never copied in memory and
//!   never stored with the execution's record.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Multipart, Request};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use futures::StreamExt;
use pyexec_core::workspace::{self, IngestLimits, WorkspaceError};
use pyexec_core::{ExecutionConfig, Metadata};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::backend::StdinFile;
use crate::error::ApiError;

/// Standard input up to this many bytes stays inline in the spec; more is spooled to a file.
pub const INLINE_STDIN_BYTES: usize = 64 << 10;

/// A received and checked upload.
#[derive(Debug)]
pub struct Upload {
    /// The parsed `metadata` field; its `stdin` holds a small standard input.
    pub metadata: Metadata,
    /// The unpacked archive, a directory under the staging directory (the caller owns it).
    pub workspace: PathBuf,
    /// A larger standard input, spooled to a file under the staging directory.
    pub stdin: Option<StdinFile>,
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

/// The answer for a body over `PYEXEC_MAX_UPLOAD_MB`.
pub fn body_too_large(upload_limit_mb: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the request body exceeds the upload limit of {upload_limit_mb} MiB (PYEXEC_MAX_UPLOAD_MB)"
    ))
}

fn multipart_error(e: MultipartError, upload_limit_mb: u64) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large(upload_limit_mb);
    }
    ApiError::BadRequest(format!("parsing form: {}", e.body_text()))
}

/// Reads a whole request body into one buffer, sized from `Content-Length` when there is one, so that the body
/// is never held as a list of chunks and a joined copy at once.
pub async fn read_body(request: Request, upload_limit_mb: u64) -> Result<Vec<u8>, ApiError> {
    let limit = usize::try_from(upload_limit_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(declared.min(limit));
    let mut chunks = request.into_body().into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(body_too_large(upload_limit_mb));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
                metadata = Some(field_text(field).await.map_err(err)?);
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
    let staging = staging.to_owned();
    let (metadata, stdin) = tokio::task::spawn_blocking(move || parse_metadata(&metadata, &staging))
        .await
        .map_err(|e| ApiError::Internal(format!("parsing task failed: {e}")))??;
    let workspace = staged.keep().ok_or_else(|| ApiError::Internal("upload vanished".into()))?;
    Ok(Upload { metadata, workspace, stdin })
}

/// A text field, read once: chunks go into one buffer that becomes the string when it is UTF-8 (as clients send
/// it). Other charsets, byte-order marks and invalid sequences are decoded as axum's `Field::text` does.
async fn field_text(mut field: Field<'_>) -> Result<String, MultipartError> {
    let charset = field
        .content_type()
        .and_then(|ct| ct.split(';').skip(1).find_map(|p| p.trim().strip_prefix("charset=").map(str::to_owned)));
    if charset.is_some_and(|c| !matches!(c.trim_matches('"').to_ascii_lowercase().as_str(), "utf-8" | "utf8")) {
        return field.text().await;
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(decode_text(bytes))
}

/// UTF-8 text as `encoding_rs` decodes it with BOM sniffing: a UTF-8 BOM is dropped, a UTF-16 BOM switches to
/// UTF-16, malformed sequences become U+FFFD. Valid UTF-8 (the usual case) is not copied.
fn decode_text(mut bytes: Vec<u8>) -> String {
    let utf16 = |bytes: &[u8], big_endian: bool| {
        let units = bytes.chunks(2).map(|c| match (c, big_endian) {
            ([a, b], true) => u16::from_be_bytes([*a, *b]),
            ([a, b], false) => u16::from_le_bytes([*a, *b]),
            _ => 0xFFFD,
        });
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect::<String>()
    };
    match bytes.as_slice() {
        [0xEF, 0xBB, 0xBF, ..] => {
            bytes.drain(..3);
        }
        [0xFF, 0xFE, rest @ ..] => return utf16(rest, false),
        [0xFE, 0xFF, rest @ ..] => return utf16(rest, true),
        _ => {}
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The `metadata` field as [`Metadata`], with `stdin` read raw so that a large one goes to a file without a copy
/// in memory. The other fields parse exactly as [`Metadata`]'s.
#[derive(Deserialize)]
struct MetadataFields<'a> {
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(default)]
    docker_image: Option<String>,
    #[serde(default)]
    python_version: Option<String>,
    #[serde(default)]
    requirements_txt: Option<String>,
    #[serde(default)]
    pre_commands: Option<Vec<String>>,
    #[serde(borrow, default)]
    stdin: Option<&'a RawValue>,
    #[serde(default)]
    env_vars: Option<Vec<String>>,
    #[serde(default)]
    script_args: Option<Vec<String>>,
    #[serde(default)]
    config: Option<ExecutionConfig>,
    #[serde(default)]
    callback_url: Option<String>,
}

fn parse_metadata(text: &str, staging: &Path) -> Result<(Metadata, Option<StdinFile>), ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("parsing metadata: {e}"));
    let fields: MetadataFields<'_> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    pyexec_core::placement::check(text.as_bytes(), pyexec_core::placement::Body::ExecMetadata)?;
    let (stdin, file) = take_stdin(fields.stdin, staging).map_err(|e| e.into_api_error(bad))?;
    let metadata = Metadata {
        entrypoint: fields.entrypoint,
        docker_image: fields.docker_image,
        python_version: fields.python_version,
        requirements_txt: fields.requirements_txt,
        pre_commands: fields.pre_commands,
        stdin,
        env_vars: fields.env_vars,
        script_args: fields.script_args,
        config: fields.config,
        callback_url: fields.callback_url,
    };
    Ok((metadata, file))
}

/// Why a raw JSON string could not be taken.
#[derive(Debug)]
pub enum InputError {
    /// Not a string, or an escape that JSON allows syntactically but that is no text (a lone surrogate).
    Json(String),
    /// Writing the spooled file failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for InputError {
    fn from(e: std::io::Error) -> Self {
        InputError::Io(e)
    }
}

impl InputError {
    /// The answer: a JSON problem is the client's (`bad` gives the endpoint's prefix), a full disk is 507.
    pub fn into_api_error(self, bad: impl FnOnce(String) -> ApiError) -> ApiError {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull};
        match self {
            InputError::Json(message) => bad(message),
            InputError::Io(e) if matches!(e.kind(), StorageFull | QuotaExceeded) => {
                ApiError::InsufficientStorage(format!(
                    "the server has no space left to store the request's stdin ({e}); nothing was kept, retry later"
                ))
            }
            InputError::Io(e) => ApiError::Internal(format!("spooling stdin: {e}")),
        }
    }
}

/// A request's `stdin`, given as raw JSON: absent or `null` is `None`; up to [`INLINE_STDIN_BYTES`] it is
/// decoded into a string; beyond, it is decoded straight into a new file under `staging` (private to the
/// server), returned as a [`StdinFile`].
pub fn take_stdin(raw: Option<&RawValue>, staging: &Path) -> Result<(Option<String>, Option<StdinFile>), InputError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else { return Ok((None, None)) };
    expect_string(raw)?;
    if raw.get().len().saturating_sub(2) <= INLINE_STDIN_BYTES {
        return Ok((Some(decode_string(raw)?), None));
    }
    let path = staging.join(format!("stdin-{}", uuid_like()));
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?
    };
    // Dropped on any error below, which removes the partial file.
    let spooled = StdinFile::new(path);
    let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
    decode_json_string(raw.get(), &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?;
    Ok((None, Some(spooled)))
}

/// Fails unless `raw` is a JSON string, with serde's message for the type it is.
pub fn expect_string(raw: &RawValue) -> Result<(), InputError> {
    if raw.get().starts_with('"') {
        return Ok(());
    }
    // Fails on the first token, whatever follows: nothing of a large value is read.
    let message = match serde_json::from_str::<String>(raw.get()) {
        Err(e) => e.to_string(),
        Ok(_) => "expected a string".to_owned(),
    };
    let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
    Err(InputError::Json(message.to_owned()))
}

/// A raw JSON string (checked by [`expect_string`]) decoded into a `String`.
pub fn decode_string(raw: &RawValue) -> Result<String, InputError> {
    let mut out = Vec::with_capacity(raw.get().len());
    decode_json_string(raw.get(), &mut out)?;
    String::from_utf8(out).map_err(|e| InputError::Json(e.to_string()))
}

/// Decodes the JSON string literal `raw` (quotes included, its syntax already checked by the JSON parser) into
/// `out`, with serde_json's rules for `\u` escapes (surrogates must pair); returns the decoded length.
pub fn decode_json_string(raw: &str, out: &mut impl Write) -> Result<u64, InputError> {
    let not_a_string = || InputError::Json("expected a string".into());
    let mut rest = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).ok_or_else(not_a_string)?.as_bytes();
    let mut written = 0u64;
    loop {
        let run = rest.iter().position(|&b| b == b'\\').unwrap_or(rest.len());
        out.write_all(&rest[..run])?;
        written += run as u64;
        rest = &rest[run..];
        let Some((&escape, after)) = rest.get(1..).and_then(<[u8]>::split_first) else {
            return if rest.is_empty() { Ok(written) } else { Err(not_a_string()) };
        };
        let mut utf8 = [0u8; 4];
        let (decoded, consumed): (&[u8], usize) = match escape {
            b'"' => (b"\"", 2),
            b'\\' => (b"\\", 2),
            b'/' => (b"/", 2),
            b'b' => (b"\x08", 2),
            b'f' => (b"\x0c", 2),
            b'n' => (b"\n", 2),
            b'r' => (b"\r", 2),
            b't' => (b"\t", 2),
            b'u' => {
                let (c, consumed) = unicode_escape(after)?;
                (c.encode_utf8(&mut utf8).as_bytes(), consumed + 2)
            }
            _ => return Err(InputError::Json("invalid escape".into())),
        };
        out.write_all(decoded)?;
        written += decoded.len() as u64;
        rest = &rest[consumed..];
    }
}

/// The character of a `\uXXXX` escape (`s` starts after the `u`), pairing surrogates; returns it and the bytes
/// it used after the `u`.
fn unicode_escape(s: &[u8]) -> Result<(char, usize), InputError> {
    let hex = |s: &[u8]| -> Result<u32, InputError> {
        s.get(..4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| InputError::Json("invalid escape".into()))
    };
    let lone = || InputError::Json("lone leading surrogate in hex escape".into());
    let first = hex(s)?;
    match first {
        0xDC00..=0xDFFF => Err(lone()),
        0xD800..=0xDBFF => {
            if s.get(4..6) != Some(&b"\\u"[..]) {
                return Err(InputError::Json("unexpected end of hex escape".into()));
            }
            let second = hex(&s[6..])?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return Err(lone());
            }
            let c = char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)).ok_or_else(lone)?;
            Ok((c, 10))
        }
        _ => Ok((char::from_u32(first).ok_or_else(lone)?, 4)),
    }
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

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn decoded(json: &str) -> Result<String, String> {
        decode_string(&raw(json)).map_err(|e| match e {
            InputError::Json(m) => m,
            InputError::Io(e) => e.to_string(),
        })
    }

    /// The decoder gives what serde_json gives, text and refusals alike.
    #[test]
    fn json_strings_decode_like_serde_json() {
        for json in [
            r#""""#,
            r#""plain""#,
            r#""a\nb\t\"q\" \\ \/ \b\f\r""#,
            r#""\u00e9\u20AC \ud83d\ude00 é 😀""#,
            r#""\u0000""#,
            r#""\\u0041""#,
        ] {
            assert_eq!(decoded(json).unwrap(), serde_json::from_str::<String>(json).unwrap(), "{json}");
        }
        for json in [r#""\udc00""#, r#""\ud83d""#, r#""\ud83dx""#, r#""\ud83d\u0041""#] {
            assert!(serde_json::from_str::<String>(json).is_err(), "{json}");
            let message = decoded(json).unwrap_err();
            assert!(message.contains("surrogate") || message.contains("hex escape"), "{json}: {message}");
        }
        let type_error = |json: &str| match expect_string(&raw(json)) {
            Err(InputError::Json(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(type_error("5"), "invalid type: integer `5`, expected a string");
        assert!(type_error("[1, 2]").starts_with("invalid type: sequence"));
        assert!(expect_string(&raw(r#""x""#)).is_ok());
    }

    #[test]
    fn small_stdin_stays_inline_and_large_stdin_goes_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(take_stdin(None, dir.path()), Ok((None, None))));
        assert!(matches!(take_stdin(Some(&raw("null")), dir.path()), Ok((None, None))));
        let (inline, file) = take_stdin(Some(&raw(r#""hi\n""#)), dir.path()).unwrap();
        assert_eq!((inline.as_deref(), file.is_none()), (Some("hi\n"), true));

        let text = "line é\n".repeat(INLINE_STDIN_BYTES / 4);
        let json = serde_json::to_string(&text).unwrap();
        let (inline, file) = take_stdin(Some(&raw(&json)), dir.path()).unwrap();
        let file = file.expect("a large stdin is spooled");
        assert!(inline.is_none());
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), text);
        assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "dropping the handle removes the file");

        // A bad escape at the end: refused, and nothing is left behind.
        let bad = format!("{}\\udc00\"", &json[..json.len() - 1]);
        assert!(matches!(take_stdin(Some(&raw(&bad)), dir.path()), Err(InputError::Json(_))));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Every field of the wire type is read, with the same meaning.
    #[test]
    fn metadata_parses_every_field_and_spools_a_large_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let full = Metadata {
            entrypoint: Some("main.py".into()),
            docker_image: Some("python:3.12".into()),
            python_version: Some("3.12".into()),
            requirements_txt: Some("numpy".into()),
            pre_commands: Some(vec!["echo hi".into()]),
            stdin: Some("in\n".into()),
            env_vars: Some(vec!["A=1".into()]),
            script_args: Some(vec!["-v".into()]),
            config: Some(ExecutionConfig { timeout_seconds: Some(5), ..Default::default() }),
            callback_url: Some("https://hooks.example.com/done".into()),
        };
        let (parsed, file) = parse_metadata(&serde_json::to_string(&full).unwrap(), dir.path()).unwrap();
        assert_eq!((parsed, file.is_none()), (full.clone(), true));

        let big = Metadata { stdin: Some("x".repeat(INLINE_STDIN_BYTES + 1)), ..full.clone() };
        let (parsed, file) = parse_metadata(&serde_json::to_string(&big).unwrap(), dir.path()).unwrap();
        assert_eq!(parsed, Metadata { stdin: None, ..full });
        assert_eq!(std::fs::read_to_string(file.unwrap().path()).unwrap(), big.stdin.unwrap());

        let message = |text: &str| match parse_metadata(text, dir.path()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(message(r#"{"stdin": 5}"#).starts_with("parsing metadata: invalid type: integer `5`"));
        assert!(message(r#"{"script_args": "x"}"#).starts_with("parsing metadata: invalid type: string"));
        assert!(message("{").starts_with("parsing metadata: EOF"));
    }

    #[test]
    fn text_fields_decode_like_axum() {
        assert_eq!(decode_text(b"{}".to_vec()), "{}");
        assert_eq!(decode_text(b"\xEF\xBB\xBF{}".to_vec()), "{}");
        assert_eq!(decode_text(b"\xFF\xFE{\x00}\x00".to_vec()), "{}");
        assert_eq!(decode_text(b"\xFE\xFF\x00{\x00}".to_vec()), "{}");
        assert_eq!(decode_text(b"a\xFFb".to_vec()), "a\u{FFFD}b");
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
