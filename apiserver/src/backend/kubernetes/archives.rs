//! Uploaded projects on their way into Pods. The API server packs an upload (already checked and unpacked into
//! staging) into a plain tar under its data directory, named by a random id, and serves it to the operator at
//! `GET /internal/v1/archives/{id}` (bearer token). The operator streams it into the Pod through the attach API, so
//! the Pod never needs network. Archives are removed once no execution can still need them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// A packed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Its id.
    pub id: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Size, bytes.
    pub size_bytes: u64,
}

/// The archive store.
#[derive(Debug, Clone)]
pub struct Archives {
    dir: PathBuf,
    token: Option<Arc<str>>,
}

impl Archives {
    /// A store in `dir`; readers must send `token` when set.
    pub fn new(dir: PathBuf, token: Option<String>) -> std::io::Result<Archives> {
        std::fs::create_dir_all(&dir)?;
        Ok(Archives { dir, token: token.map(Into::into) })
    }

    /// Packs the directory `source` (the checked upload) and removes it.
    pub async fn pack(&self, source: PathBuf) -> std::io::Result<Packed> {
        let id = uuid::Uuid::new_v4().to_string();
        let path = self.path(&id);
        let tmp = path.with_extension("partial");
        let (sha256, size_bytes) = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
            let file = std::fs::File::create(&tmp)?;
            let mut hashing = HashingWriter { inner: std::io::BufWriter::new(file), hash: Sha256::new(), size: 0 };
            {
                let mut builder = tar::Builder::new(&mut hashing);
                builder.follow_symlinks(false);
                builder.append_dir_all(".", &source)?;
                builder.finish()?;
            }
            std::io::Write::flush(&mut hashing.inner)?;
            std::fs::rename(&tmp, &path)?;
            let _ = std::fs::remove_dir_all(&source);
            let digest = hashing.hash.finalize();
            Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), hashing.size))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Packed { id, sha256, size_bytes })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.tar"))
    }

    /// Removes archives older than `age` (their executions have finished or expired).
    pub async fn sweep(&self, age: Duration) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let old = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if old {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// The internal route serving archives.
    pub fn router(self) -> Router {
        Router::new().route("/internal/v1/archives/{id}", get(serve)).with_state(self)
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

async fn serve(State(store): State<Archives>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match &store.token {
        Some(token) if !pyexec_core::secret::bearer_matches(token, sent) => {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        None => return StatusCode::FORBIDDEN.into_response(),
        _ => {}
    }
    if uuid::Uuid::parse_str(&id).is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::File::open(store.path(&id)).await {
        Ok(file) => {
            let stream = tokio_util::io::ReaderStream::new(file);
            ([(header::CONTENT_TYPE, "application/x-tar")], Body::from_stream(stream)).into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_packed_hashed_and_served_with_the_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Archives::new(dir.path().join("archives"), Some("s3cret".into())).unwrap();
        let upload = dir.path().join("upload");
        std::fs::create_dir_all(upload.join("pkg")).unwrap();
        std::fs::write(upload.join("pkg/main.py"), "print(1)").unwrap();
        let packed = store.pack(upload.clone()).await.unwrap();
        assert!(!upload.exists(), "the staged upload is consumed");
        let bytes = std::fs::read(store.path(&packed.id)).unwrap();
        assert_eq!(bytes.len() as u64, packed.size_bytes);
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, packed.sha256);
        let names: Vec<String> = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n.ends_with("pkg/main.py")), "{names:?}");

        let app = store.clone().router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/internal/v1/archives/{}", listener.local_addr().unwrap(), packed.id);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = reqwest::Client::new();
        assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
        let r = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), bytes.len());
        store.sweep(Duration::ZERO).await;
        assert!(!store.path(&packed.id).exists());
    }
}
