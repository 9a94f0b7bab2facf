//! The accept loop: HTTP/1.1 connections served by hyper, with what `axum::serve` lacks against clients that hold
//! connections open.
//!
//! - **Header timeout** (`PYEXEC_HEADER_TIMEOUT`, hyper's `header_read_timeout`): a request head must arrive whole
//!   within it, counted from when the server starts waiting for one, on a new connection and after each response
//!   of a kept-alive connection. A client that sends half a header and stalls (slowloris) is closed.
//! - **Idle timeout** (`PYEXEC_IDLE_TIMEOUT`): a connection is closed when no byte has moved for that long while
//!   the server waits on the client: between requests, while reading a request body that stopped arriving, or
//!   while writing a response the client does not read. While a request is being worked on (a synchronous
//!   execution that runs for minutes, an event stream waiting for output) nothing is waited for from the client,
//!   so nothing is cut; slow uploads and downloads are not cut either as long as bytes keep moving.
//! - **Connection cap** (`PYEXEC_MAX_CONNECTIONS`, lowered to fit the open-files limit, whose soft value is raised
//!   to the hard one at start): beyond it, new connections are not accepted but left waiting in the listen
//!   backlog until one closes, which the timeouts above bound. Waiting rather than closing keeps bursts of
//!   legitimate clients working; the log says when the cap is reached.
//!
//! Graceful shutdown is `axum::serve`'s: stop accepting, let every connection finish its request in progress and
//! close kept-alive ones, then return.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// How long and how many client connections may stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to receive a whole request head.
    pub header_timeout: Duration,
    /// Time without a byte moving while the server waits on the client.
    pub idle_timeout: Duration,
    /// Most open connections (lowered to fit the open-files limit).
    pub max_connections: usize,
}

/// Open files kept for everything that is not a client connection: the store, the sandboxes' pipes and process
/// descriptors, environments, logs.
const RESERVED_FILES: u64 = 256;

/// Serves `app` on `listener` until `shutdown` completes and every connection has finished.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max_connections = connection_cap(limits.max_connections, raise_open_files_limit());
    tracing::info!(
        max_connections,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        "connection limits"
    );

    // As in axum::serve: dropping the receiver tells connections to finish; the accept loop waits for every
    // connection's clone of `close_rx` to be dropped.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());

    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut last_cap_warning: Option<Instant> = None;

    loop {
        if permits.available_permits() == 0 && last_cap_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            tracing::warn!(
                max_connections,
                "the connection limit is reached: new connections wait until one closes (PYEXEC_MAX_CONNECTIONS)"
            );
            last_cap_warning = Some(Instant::now());
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = signal_tx.closed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = signal_tx.closed() => break,
        };
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            idle_timeout: limits.idle_timeout,
            signal: signal_tx.clone(),
            close: close_rx.clone(),
            permit,
        };
        tokio::spawn(connection.run(stream));
    }

    drop(close_rx);
    drop(listener);
    tracing::debug!(connections = close_tx.receiver_count(), "waiting for open connections to finish");
    close_tx.closed().await;
}

/// The cap on connections: the configured one, lowered so that the connections leave [`RESERVED_FILES`] of the
/// open-files limit.
fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(files) = open_files else { return configured };
    let usable = usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
    if usable < configured {
        tracing::warn!(
            configured,
            open_files_limit = files,
            "PYEXEC_MAX_CONNECTIONS lowered to {usable} to fit the open-files limit (raise `ulimit -n`)"
        );
    }
    configured.min(usable)
}

/// Raises the soft limit on open files to the hard one (the usual practice for servers: the soft default of 1024
/// dates from `select()`), and returns the soft limit in force. Sandboxed programs get their own limit.
fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        // An unlimited hard limit cannot be the soft one: the kernel caps open files at fs.nr_open.
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
                .unwrap_or(1 << 20)
        } else {
            limit.rlim_max
        };
        let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct it is given, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = target;
        } else {
            tracing::debug!(error = %io::Error::last_os_error(), "could not raise the open-files limit");
        }
    }
    Some(limit.rlim_cur)
}

/// Errors of `accept` that concern one connection only, as `axum::serve` has them; others (out of file
/// descriptors, typically) are logged and retried after a pause, when some connection may have closed.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One accepted connection and what it needs.
struct Connection {
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    signal: watch::Sender<()>,
    close: watch::Receiver<()>,
    permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
        let service = AppService { app: self.app, activity: activity.clone() };
        let mut conn = pin!(self.builder.serve_connection(io, service));
        let mut stop = pin!(self.signal.closed());
        let mut stopping = false;
        let mut check =
            tokio::time::interval((self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = &mut stop, if !stopping => {
                    conn.as_mut().graceful_shutdown();
                    stopping = true;
                }
                _ = check.tick() => {
                    if activity.stalled_for().is_some_and(|stalled| stalled >= self.idle_timeout) {
                        tracing::debug!(idle_timeout = ?self.idle_timeout, "closing a connection idle on the client's side");
                        break;
                    }
                }
            }
        }
        drop(self.close);
        drop(self.permit);
    }
}

/// What a connection is doing, shared by its socket, its request bodies and its responses.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written, request started or finished, or wait begun.
    last_progress_ms: AtomicU64,
    /// Requests accepted whose response has not been sent in full yet.
    requests: AtomicUsize,
    /// A handler waits for more of its request body.
    body_waiting: AtomicBool,
    /// The socket does not take the response as fast as it is written.
    write_blocked: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            body_waiting: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.store(now, Ordering::Relaxed);
    }

    /// How long nothing has moved while the server waits on the client; `None` while a request is being worked on.
    fn stalled_for(&self) -> Option<Duration> {
        let waiting_on_client = self.requests.load(Ordering::Relaxed) == 0
            || self.body_waiting.load(Ordering::Relaxed)
            || self.write_blocked.load(Ordering::Relaxed);
        waiting_on_client.then(|| {
            self.start.elapsed().saturating_sub(Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed)))
        })
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        match result {
            // The wait starts now, not at the last byte written before it.
            Poll::Pending => {
                if !self.write_blocked.swap(true, Ordering::Relaxed) {
                    self.touch();
                }
            }
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.write_blocked.store(false, Ordering::Relaxed);
                self.touch();
            }
            Poll::Ready(_) => self.write_blocked.store(false, Ordering::Relaxed),
        }
    }
}

/// A request in progress, until its response has been sent (or abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// The router, counting requests in progress and watching their bodies.
#[derive(Clone)]
struct AppService {
    app: Router,
    activity: Arc<Activity>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<axum::http::Response<ResponseBody>, Infallible>> + Send>>;

impl hyper::service::Service<axum::http::Request<Incoming>> for AppService {
    type Response = axum::http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: axum::http::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.activity.clone());
        let activity = self.activity.clone();
        let request = request.map(|inner| Body::new(RequestBody { inner, activity }));
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|inner| ResponseBody { inner, _in_flight: in_flight }))
        })
    }
}

/// A request body that records when its handler waits for the client.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if !this.activity.body_waiting.swap(true, Ordering::Relaxed) {
                this.activity.touch();
            }
        } else {
            this.activity.body_waiting.store(false, Ordering::Relaxed);
            this.activity.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.activity.body_waiting.store(false, Ordering::Relaxed);
    }
}

/// A response body; the request counts as in progress until hyper has sent it and drops it.
struct ResponseBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, recording every byte that moves.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_files_for_the_rest_of_the_server() {
        assert_eq!(connection_cap(4096, Some(1 << 20)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 1024 - RESERVED_FILES as usize);
        assert_eq!(connection_cap(4096, Some(10)), 1);
        assert_eq!(connection_cap(4096, None), 4096);
    }

    #[test]
    fn a_connection_is_idle_only_while_it_waits_on_the_client() {
        let activity = Arc::new(Activity::new());
        assert!(activity.stalled_for().is_some(), "no request yet: waiting for one");
        let request = InFlight::start(activity.clone());
        assert_eq!(activity.stalled_for(), None, "a request being worked on is never idle");
        activity.wrote(&Poll::Pending);
        assert!(activity.stalled_for().is_some(), "a response the client does not read");
        activity.wrote(&Poll::Ready(Ok(10)));
        assert_eq!(activity.stalled_for(), None);
        activity.body_waiting.store(true, Ordering::Relaxed);
        assert!(activity.stalled_for().is_some(), "a body that stopped arriving");
        activity.body_waiting.store(false, Ordering::Relaxed);
        drop(request);
        assert!(activity.stalled_for().is_some_and(|d| d < Duration::from_secs(1)), "counted from the response");
    }
}
