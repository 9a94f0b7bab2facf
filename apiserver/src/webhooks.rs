//! Completion webhooks (docs/webhooks.md): when an execution that named a `callback_url` ends, whatever its
//! status, its final result is POSTed there as JSON, signed with the server's secret.
//!
//! - Each request is signed: `X-Pyexec-Signature: sha256=<hex>` is the HMAC-SHA256, keyed with the secret, of
//!   `<X-Pyexec-Timestamp>.<body>`; the timestamp is that attempt's, so receivers can refuse replays.
//! - Deliveries are retried with doubling delays (1 s, 2 s, 4 s … at most 2 minutes apart) for up to 10 minutes
//!   after connection errors, timeouts, 5xx and 429; any other answer is final, and redirects are never followed.
//! - The host is resolved at each attempt and *every* address it has must be allowed
//!   ([`pyexec_core::callback::CallbackRules::check_address`]); the attempt then connects to one of those checked
//!   addresses itself and speaks HTTP/1.1 (and TLS with the URL's host name) over that connection, so a DNS answer
//!   that changes between the check and the connection (rebinding) cannot lead it anywhere else, and no proxy
//!   setting of the environment is ever used.
//! - A webhook never delays or fails the request that asked for it: it is a task of its own. Its state is only in
//!   memory, so deliveries still pending when the server stops are not made after a restart.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pyexec_core::callback::CallbackRules;
use rustls::pki_types::ServerName;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::Instrument;
use url::{Host, Url};

use crate::backend::Backend;
use crate::metrics::Metrics;

/// The header with the signature, `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "x-pyexec-signature";
/// The header with the attempt's time, Unix seconds, which the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-pyexec-timestamp";
/// Shortest secret accepted, bytes: HMAC-SHA256 keys shorter than its output weaken it.
pub const MIN_SECRET_BYTES: usize = 32;

/// Most delivery attempts in flight at once (each holds a connection); more wait for a turn.
const MAX_CONCURRENT_ATTEMPTS: usize = 64;
/// Most deliveries waiting to be retried (each holds its result in memory); beyond, a failed first attempt is final.
const MAX_RETRYING: usize = 1000;

/// When attempts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Wait before the second attempt; each further wait doubles.
    pub first_delay: Duration,
    /// Longest wait between two attempts (also the most a `Retry-After` may ask for).
    pub max_delay: Duration,
    /// No attempt starts later than this after the first one.
    pub give_up_after: Duration,
    /// Limit of one attempt: resolving, connecting, TLS, sending, and the answer's status line and headers.
    pub attempt_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(120),
            give_up_after: Duration::from_secs(600),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// Why webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The TLS client could not be configured.
    #[error("setting up TLS for webhooks: {0}")]
    Tls(String),
    /// The secret cannot key an HMAC (never for HMAC-SHA256, which takes any length).
    #[error("the webhook secret cannot be used: {0}")]
    Secret(String),
}

/// Sends completion webhooks. Cheap to clone; a server with a webhook secret keeps one in its handlers' state.
#[derive(Clone)]
pub struct Webhooks(Arc<Inner>);

struct Inner {
    secret: Vec<u8>,
    rules: CallbackRules,
    tls: tokio_rustls::TlsConnector,
    metrics: Metrics,
    schedule: Schedule,
    attempts: Semaphore,
    retrying: AtomicUsize,
}

/// A callback URL, parsed once into what each attempt needs.
#[derive(Debug, Clone)]
pub struct Target {
    host: Host<String>,
    port: u16,
    https: bool,
    /// The `Host` header: the host, and the port when it is not the scheme's.
    authority: String,
    /// Path and query, the request target.
    path: hyper::Uri,
    /// `scheme://host[:port]`, for logs: the path and query may hold a token.
    origin: String,
}

impl Target {
    /// Parses a URL that the request's validation accepted; `Err` says why it cannot be called.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("scheme {other:?} cannot be called")),
        };
        let host = url.host().ok_or("no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        let host_str = url.host_str().ok_or("no host")?;
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        let path = url[url::Position::BeforePath..url::Position::AfterQuery]
            .parse::<hyper::Uri>()
            .map_err(|e| format!("its path cannot be sent: {e}"))?;
        Ok(Target { host, port, https, authority, path, origin: url.origin().ascii_serialization() })
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// How one attempt went wrong.
#[derive(Debug)]
enum AttemptError {
    /// Worth another attempt (connection refused, timeout, 5xx, 429), after `retry_after` if the receiver said.
    Retry { why: String, retry_after: Option<Duration> },
    /// Final: another attempt would get the same (a forbidden address, a 4xx, a redirect).
    Final(String),
}

fn retry(why: String) -> AttemptError {
    AttemptError::Retry { why, retry_after: None }
}

/// The outcome of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx, at this attempt.
    Delivered { attempts: u32 },
    /// Given up after this many attempts, for this reason.
    Failed { attempts: u32, why: String },
}

impl Webhooks {
    /// Webhooks signed with `secret`, sent where `rules` allow, counted in `metrics`.
    pub fn new(secret: Vec<u8>, rules: CallbackRules, metrics: Metrics) -> Result<Webhooks, WebhookError> {
        Self::with_schedule(secret, rules, metrics, Schedule::default())
    }

    /// [`Webhooks::new`] with another schedule (tests).
    pub fn with_schedule(
        secret: Vec<u8>,
        rules: CallbackRules,
        metrics: Metrics,
        schedule: Schedule,
    ) -> Result<Webhooks, WebhookError> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).map_err(|e| WebhookError::Secret(e.to_string()))?;
        Ok(Webhooks(Arc::new(Inner {
            secret,
            rules,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls_config()?)),
            metrics,
            schedule,
            attempts: Semaphore::new(MAX_CONCURRENT_ATTEMPTS),
            retrying: AtomicUsize::new(0),
        })))
    }

    /// Waits in the background for execution `id` to end, then delivers its final result to `target`. Never
    /// fails: the outcome is logged and counted.
    pub fn deliver_when_done(&self, backend: Arc<dyn Backend>, id: String, target: Target) {
        let webhooks = self.clone();
        let span = tracing::info_span!("webhook", execution_id = %id, target = %target.origin());
        tokio::spawn(
            async move {
                let result = match backend.wait(&id).await {
                    Ok(Some(result)) if result.status.is_terminal() => result,
                    Ok(Some(result)) => {
                        // The backend stops waiting when the server shuts down; the execution is not over.
                        webhooks.failed(0, &format!("the server stopped while the execution was {}", result.status));
                        return;
                    }
                    Ok(None) => return webhooks.failed(0, "the execution's record is gone"),
                    Err(e) => return webhooks.failed(0, &format!("waiting for the result: {e}")),
                };
                let body = match serde_json::to_vec(&result) {
                    Ok(body) => Bytes::from(body),
                    Err(e) => return webhooks.failed(0, &format!("encoding the result: {e}")),
                };
                match webhooks.deliver(&target, body).await {
                    Delivery::Delivered { attempts } => {
                        webhooks.0.metrics.webhook_delivered();
                        tracing::info!(attempts, status = %result.status, "webhook delivered");
                    }
                    Delivery::Failed { attempts, why } => webhooks.failed(attempts, &why),
                }
            }
            .instrument(span),
        );
    }

    fn failed(&self, attempts: u32, why: &str) {
        self.0.metrics.webhook_failed();
        tracing::warn!(attempts, reason = why, "webhook not delivered");
    }

    /// Sends `body` to `target` until it is taken, a final answer comes, or the schedule runs out.
    pub async fn deliver(&self, target: &Target, body: Bytes) -> Delivery {
        let schedule = self.0.schedule;
        let started = Instant::now();
        let mut delay = schedule.first_delay;
        let mut attempts = 0u32;
        let mut retrying: Option<RetryingGuard<'_>> = None;
        loop {
            attempts += 1;
            let outcome = {
                let Ok(_turn) = self.0.attempts.acquire().await else {
                    return Delivery::Failed { attempts, why: "the server is stopping".into() };
                };
                tokio::time::timeout(schedule.attempt_timeout, self.attempt(target, &body))
                    .await
                    .unwrap_or_else(|_| Err(retry(format!("no answer within {:?}", schedule.attempt_timeout))))
            };
            let (why, retry_after) = match outcome {
                Ok(()) => return Delivery::Delivered { attempts },
                Err(AttemptError::Final(why)) => return Delivery::Failed { attempts, why },
                Err(AttemptError::Retry { why, retry_after }) => (why, retry_after),
            };
            let wait = retry_after.map_or(delay, |asked| asked.clamp(delay, schedule.max_delay.max(delay)));
            if started.elapsed() + wait > schedule.give_up_after {
                return Delivery::Failed {
                    attempts,
                    why: format!("gave up after {attempts} attempts; the last: {why}"),
                };
            }
            if retrying.is_none() {
                match RetryingGuard::enter(&self.0.retrying) {
                    Some(guard) => retrying = Some(guard),
                    None => {
                        return Delivery::Failed {
                            attempts,
                            why: format!("{why}; not retried: {MAX_RETRYING} webhooks already wait for a retry"),
                        };
                    }
                }
            }
            tracing::debug!(attempt = attempts, reason = %why, retry_in = ?wait, "webhook attempt failed");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(schedule.max_delay);
        }
    }

    /// One attempt: resolve and check, connect to a checked address, send, read the status.
    async fn attempt(&self, target: &Target, body: &Bytes) -> Result<(), AttemptError> {
        let addresses = resolve_checked_inner(&self.0.rules, &target.host, target.port).await?;
        let stream = connect(&addresses).await?;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signature = sign(&self.0.secret, timestamp, body);
        let request = Request::post(target.path.clone())
            .header(HOST, &target.authority)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("python-executor/", env!("CARGO_PKG_VERSION")))
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, format!("sha256={signature}"))
            .header(CONNECTION, "close")
            .body(Full::new(body.clone()))
            .map_err(|e| AttemptError::Final(format!("building the request: {e}")))?;
        let response = if target.https {
            let name = match &target.host {
                Host::Domain(name) => ServerName::try_from(name.clone())
                    .map_err(|e| AttemptError::Final(format!("{name} is no TLS server name: {e}")))?,
                Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
                Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
            };
            let tls = self.0.tls.connect(name, stream).await.map_err(|e| retry(format!("TLS: {e}")))?;
            exchange(tls, request).await?
        } else {
            exchange(stream, request).await?
        };
        judge(&response)
    }
}

/// Counts a delivery among those waiting for a retry, while it lives.
struct RetryingGuard<'a>(&'a AtomicUsize);

impl<'a> RetryingGuard<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_RETRYING).then_some(n + 1)).ok()?;
        Some(RetryingGuard(count))
    }
}

impl Drop for RetryingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The addresses of `host`, every one of them allowed by `rules`, or why not. A name with one forbidden address
/// is refused whole (a final answer): a receiver behind it could be reached through that address as well.
pub async fn resolve_checked(rules: &CallbackRules, host: &Host<String>, port: u16) -> Result<Vec<SocketAddr>, String> {
    resolve_checked_inner(rules, host, port).await.map_err(|e| match e {
        AttemptError::Retry { why, .. } | AttemptError::Final(why) => why,
    })
}

async fn resolve_checked_inner(
    rules: &CallbackRules,
    host: &Host<String>,
    port: u16,
) -> Result<Vec<SocketAddr>, AttemptError> {
    let mut addresses: Vec<SocketAddr> = match host {
        Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| retry(format!("resolving {name}: {e}")))?
            .collect(),
    };
    addresses.dedup();
    if addresses.is_empty() {
        return Err(retry(format!("{host} has no address")));
    }
    for address in &addresses {
        if let Err(forbidden) = rules.check_address(address.ip()) {
            return Err(AttemptError::Final(match host {
                Host::Domain(name) => format!("{name} resolves to {}, {}", forbidden.address, forbidden.why),
                _ => forbidden.to_string(),
            }));
        }
    }
    Ok(addresses)
}

async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, AttemptError> {
    let mut errors = Vec::new();
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => errors.push(format!("{address}: {e}")),
        }
    }
    Err(retry(format!("connecting: {}", errors.join("; "))))
}

/// Sends `request` over `io` (HTTP/1.1) and returns the answer's head; the body is not read.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<Response<hyper::body::Incoming>, AttemptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| retry(format!("HTTP handshake: {e}")))?;
    // The connection is driven while the request is sent and the head read, and closed (aborted) after.
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| retry(format!("sending: {e}")));
    driver.abort();
    response
}

/// What an answer means: 2xx taken, 429 and 5xx worth a retry, anything else final (redirects included).
fn judge<B>(response: &Response<B>) -> Result<(), AttemptError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(AttemptError::Retry { why: format!("the receiver answered {status}"), retry_after });
    }
    if status.is_redirection() {
        return Err(AttemptError::Final(format!("the receiver answered {status}; redirects are not followed")));
    }
    Err(AttemptError::Final(format!("the receiver answered {status}")))
}

/// The signature of a delivery: lowercase hex of HMAC-SHA256(secret, `<timestamp>.<body>`).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it (and the secret was tried at start).
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else { return String::new() };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// TLS with the system's trusted roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured) and the ring provider
/// that the rest of the server's TLS uses.
fn tls_config() -> Result<rustls::ClientConfig, WebhookError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "loading the system's root certificates for webhooks");
    }
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!(
            "no trusted root certificates found (install ca-certificates, or set SSL_CERT_FILE): https webhooks \
             will fail"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use axum::http::HeaderMap;

    fn open_rules() -> CallbackRules {
        CallbackRules { enabled: true, allow_http: true, allow_private: true, denied: Vec::new() }
    }

    fn fast() -> Schedule {
        Schedule {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            give_up_after: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
        }
    }

    fn webhooks(rules: CallbackRules, schedule: Schedule) -> Webhooks {
        Webhooks::with_schedule(b"0123456789abcdef0123456789abcdef".to_vec(), rules, Metrics::new(), schedule).unwrap()
    }

    /// RFC 4231, test case 2, through the same HMAC the signature uses.
    #[test]
    fn hmac_matches_the_rfc_vectors() {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let body = br#"{"execution_id":"exe_1","status":"completed","exit_code":0}"#;
        let sig = sign(b"secret", 1_700_000_000, body);
        assert_eq!(sig.len(), 64);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.");
        mac.update(body);
        assert_eq!(sig, hex(&mac.finalize().into_bytes()));
        assert_ne!(sig, sign(b"secret", 1_700_000_001, body), "another time, another signature");
        assert_ne!(sig, sign(b"other", 1_700_000_000, body));
    }

    #[test]
    fn targets_keep_the_path_and_hide_it_from_logs() {
        let t = Target::parse("https://hooks.example.com/a/b?token=s3cret").unwrap();
        assert_eq!((t.port, t.https, t.authority.as_str()), (443, true, "hooks.example.com"));
        assert_eq!(t.path.to_string(), "/a/b?token=s3cret");
        assert_eq!(t.origin(), "https://hooks.example.com");
        let t = Target::parse("http://[::1]:8080/").unwrap();
        assert_eq!((t.port, t.authority.as_str(), t.origin()), (8080, "[::1]:8080", "http://[::1]:8080"));
        assert!(Target::parse("ftp://example.com/").is_err());
    }

    #[tokio::test]
    async fn every_resolved_address_is_checked() {
        let strict = CallbackRules { enabled: true, allow_http: true, ..Default::default() };
        // A name that resolves to loopback (from /etc/hosts) is refused at delivery, whatever the URL said.
        let localhost = Host::Domain("localhost".to_owned());
        let err = resolve_checked(&strict, &localhost, 80).await.unwrap_err();
        assert!(err.contains("localhost resolves to") && err.contains("private"), "{err}");
        let ok = resolve_checked(&open_rules(), &localhost, 80).await.unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback() && a.port() == 80), "{ok:?}");
        // Literal addresses too, mapped ones included.
        let mapped = Host::Ipv6("::ffff:10.0.0.1".parse().unwrap());
        assert!(resolve_checked(&strict, &mapped, 80).await.unwrap_err().contains("private"));
        let metadata = Host::Ipv4("169.254.169.254".parse().unwrap());
        assert!(resolve_checked(&open_rules(), &metadata, 80).await.is_err(), "never, even with private allowed");
        let public = Host::Ipv4("93.184.216.34".parse().unwrap());
        assert_eq!(resolve_checked(&strict, &public, 443).await.unwrap(), vec!["93.184.216.34:443".parse().unwrap()]);
    }

    /// A receiver on 127.0.0.1 that answers the statuses of `script` in turn (then 200) and records what it got.
    async fn receiver(script: Vec<(u16, Option<&'static str>)>) -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
        let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post({
                let seen = seen.clone();
                move |headers: HeaderMap, body: Bytes| async move {
                    seen.lock().unwrap().push((headers, body));
                    let (status, retry_after) = script.lock().unwrap().next().unwrap_or((200, None));
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(value) = retry_after {
                        response.headers_mut().insert(RETRY_AFTER, value.parse().unwrap());
                    }
                    if status == 302 {
                        response.headers_mut().insert("location", "/elsewhere".parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?k=v", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn deliveries_are_signed_and_retried_on_5xx_and_429() {
        let (url, seen) = receiver(vec![(500, None), (429, Some("0")), (503, None)]).await;
        let hooks = webhooks(open_rules(), fast());
        let body = Bytes::from_static(br#"{"execution_id":"exe_x","status":"completed","exit_code":0}"#);
        let outcome = hooks.deliver(&Target::parse(&url).unwrap(), body.clone()).await;
        assert_eq!(outcome, Delivery::Delivered { attempts: 4 });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        for (headers, got) in seen.iter() {
            assert_eq!(got, &body);
            assert_eq!(headers["content-type"], "application/json");
            let timestamp: u64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
            let expected = format!("sha256={}", sign(b"0123456789abcdef0123456789abcdef", timestamp, got));
            assert_eq!(headers[SIGNATURE_HEADER], expected.as_str());
            assert!(headers["host"].to_str().unwrap().starts_with("127.0.0.1:"));
        }
    }

    #[tokio::test]
    async fn other_answers_are_final_and_redirects_are_not_followed() {
        for status in [400, 404, 410, 302] {
            let (url, seen) = receiver(vec![(status, None)]).await;
            let outcome = webhooks(open_rules(), fast()).deliver(&Target::parse(&url).unwrap(), Bytes::new()).await;
            match outcome {
                Delivery::Failed { attempts: 1, why } => assert!(why.contains(&status.to_string()), "{why}"),
                other => panic!("{status}: {other:?}"),
            }
            assert_eq!(seen.lock().unwrap().len(), 1, "{status}: one attempt, no redirect followed");
        }
    }

    #[tokio::test]
    async fn deliveries_give_up_when_the_schedule_runs_out() {
        // Nothing listens on this port: connection refused at every attempt.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let schedule = Schedule { give_up_after: Duration::from_millis(100), ..fast() };
        let target = Target::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        match webhooks(open_rules(), schedule).deliver(&target, Bytes::new()).await {
            Delivery::Failed { attempts, why } => {
                assert!(attempts >= 3, "{attempts}");
                assert!(why.contains("gave up") && why.contains("connecting"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // A forbidden address is final at once.
        let strict = CallbackRules { enabled: true, allow_http: true, ..Default::default() };
        match webhooks(strict, fast()).deliver(&target, Bytes::new()).await {
            Delivery::Failed { attempts: 1, why } => assert!(why.contains("private"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
