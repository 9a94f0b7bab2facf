//! Data into Pods without network: the uploaded archive into the `receive` container, the go-ahead into the
//! program's container, both through the attach API (as `kubectl attach`/`kubectl cp` do). The containers are
//! `stdinOnce`: their stdin closes when the operator detaches, which ends the archive for `tar`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use pyexec_crds::ArchiveSource;
use tokio::io::AsyncWriteExt;

use crate::config::ArchiveStore;

/// Attempts to fetch an archive before giving up.
const FETCH_ATTEMPTS: usize = 12;

/// Why data could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The attach call failed.
    #[error("attaching to {container}: {source}")]
    Attach {
        /// The container.
        container: &'static str,
        /// The underlying error.
        source: kube::Error,
    },
    /// Writing to the container's stdin failed.
    #[error("writing to {container}: {source}")]
    Write {
        /// The container.
        container: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The archive could not be fetched.
    #[error("fetching archive {id}: {reason}")]
    Fetch {
        /// The archive's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Fetches uploaded archives from the API server.
#[derive(Debug, Clone)]
pub struct ArchiveFetcher {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl ArchiveFetcher {
    /// A fetcher for `store` (its token read once).
    pub fn new(store: &ArchiveStore) -> std::io::Result<ArchiveFetcher> {
        let token = match &store.token_file {
            Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
            None => None,
        };
        // No pooled connections: with several API server replicas behind one Service, each attempt must be a new
        // connection, so that a retry can reach the replica that holds the archive.
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().map_err(std::io::Error::other)?;
        Ok(ArchiveFetcher { client, url: store.url.trim_end_matches('/').to_owned(), token })
    }

    /// The archive's body. An API server replica that does not hold the archive answers 404: try again (on a new
    /// connection, so possibly another replica) a few times before giving up.
    async fn open(&self, id: &str) -> Result<reqwest::Response, AttachError> {
        let fail = |reason: String| AttachError::Fetch { id: id.to_owned(), reason };
        let mut last = String::new();
        for _ in 0..FETCH_ATTEMPTS {
            let mut request = self.client.get(format!("{}/{id}", self.url));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| fail(e.to_string()))?;
            match response.status() {
                s if s.is_success() => return Ok(response),
                reqwest::StatusCode::NOT_FOUND => last = "the archive store answered 404".into(),
                s => return Err(fail(format!("the archive store answered {s}"))),
            }
        }
        Err(fail(format!(
            "{last} {FETCH_ATTEMPTS} times (with several API server replicas, give them a shared volume)"
        )))
    }
}

/// A container's standard input, attached: written, then closed (which ends it for the program reading it).
pub struct AttachedStdin {
    container: &'static str,
    attached: kube::api::AttachedProcess,
    writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
}

impl AttachedStdin {
    /// Attaches to `container` of the Pod `pod`, standard input only.
    pub async fn open(pods: &Api<Pod>, pod: &str, container: &'static str) -> Result<Self, AttachError> {
        let params = AttachParams::default().container(container).stdin(true).stdout(false).stderr(false);
        let mut attached =
            pods.attach(pod, &params).await.map_err(|source| AttachError::Attach { container, source })?;
        let writer = attached.stdin().ok_or_else(|| AttachError::Write {
            container,
            source: std::io::Error::other("no stdin on the attached container"),
        })?;
        Ok(Self { container, attached, writer: Box::new(writer) })
    }

    /// Writes `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), AttachError> {
        let container = self.container;
        self.writer.write_all(bytes).await.map_err(|source| AttachError::Write { container, source })
    }

    /// Closes standard input and waits for the attach session to end.
    pub async fn close(mut self) -> Result<(), AttachError> {
        let container = self.container;
        self.writer.shutdown().await.map_err(|source| AttachError::Write { container, source })?;
        drop(self.writer);
        self.attached.join().await.map_err(|e| AttachError::Write { container, source: std::io::Error::other(e) })
    }
}

/// Streams the archive into the Pod's `receive` container.
pub async fn stream_archive(
    pods: &Api<Pod>,
    pod: &str,
    fetcher: &ArchiveFetcher,
    archive: &ArchiveSource,
) -> Result<u64, AttachError> {
    let response = fetcher.open(&archive.id).await?;
    let mut stdin = AttachedStdin::open(pods, pod, pyexec_core::pod::protocol::RECEIVE_CONTAINER).await?;
    let mut body = response.bytes_stream();
    let mut sent = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| AttachError::Fetch { id: archive.id.clone(), reason: e.to_string() })?;
        stdin.write(&chunk).await?;
        sent += chunk.len() as u64;
    }
    stdin.close().await?;
    Ok(sent)
}

/// Tells the program's runner to go on (the operator closed the Pod's network first).
pub async fn send_go(pods: &Api<Pod>, pod: &str) -> Result<(), AttachError> {
    const CONTAINER: &str = pyexec_core::pod::protocol::MAIN_CONTAINER;
    let params = AttachParams::default().container(CONTAINER).stdin(true).stdout(false).stderr(false);
    let mut attached =
        pods.attach(pod, &params).await.map_err(|source| AttachError::Attach { container: CONTAINER, source })?;
    if let Some(mut stdin) = attached.stdin() {
        stdin
            .write_all(pyexec_core::pod::protocol::GO_AHEAD.as_bytes())
            .await
            .map_err(|source| AttachError::Write { container: CONTAINER, source })?;
        stdin.shutdown().await.map_err(|source| AttachError::Write { container: CONTAINER, source })?;
    }
    attached.join().await.map_err(|e| AttachError::Write { container: CONTAINER, source: std::io::Error::other(e) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Two replicas behind one Service: the one without the archive answers 404; the fetch tries again.
    #[tokio::test]
    async fn a_missing_archive_is_fetched_again_from_another_replica() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/archives/{id}",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0ken") {
                        return (axum::http::StatusCode::UNAUTHORIZED, "").into_response();
                    }
                    if n < 3 {
                        (axum::http::StatusCode::NOT_FOUND, "").into_response()
                    } else {
                        "tar bytes".into_response()
                    }
                }
            }),
        );
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/archives", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
        let fetcher = ArchiveFetcher::new(&ArchiveStore { url, token_file: Some(dir.path().join("token")) }).unwrap();
        let body = fetcher.open("abc").await.unwrap().text().await.unwrap();
        assert_eq!((body.as_str(), hits.load(Ordering::SeqCst)), ("tar bytes", 4));
        hits.store(100, Ordering::SeqCst);
        let gone = ArchiveFetcher { url: format!("{}/../nothing", fetcher.url), ..fetcher };
        assert!(gone.open("abc").await.is_err());
    }
}
