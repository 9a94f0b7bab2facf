//! Errors of the client: transport, HTTP answers the server gave, and local input problems.

use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached (or the connection broke).
    #[error("cannot reach the server at {url}: {source}")]
    Transport {
        /// The server URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The execution, session or file does not exist (or it expired, or the session ended): 404.
    #[error("{what} not found")]
    NotFound {
        /// What was asked for: `execution`, `session ses_...`, `file "plot.png" of execution exe_...`.
        what: String,
    },
    /// The session is running another call (409): sessions take one call at a time; retry when it is done.
    #[error("{0}")]
    Busy(String),
    /// The server runs as many sessions as it may (429 to `POST /api/v1/sessions`): close one, or retry later.
    #[error("too many sessions: {message}")]
    TooManySessions {
        /// The server's message.
        message: String,
        /// The server's suggested wait.
        retry_after: Option<Duration>,
    },
    /// The request was refused (400, 413 ...), with the server's message.
    #[error("the server refused the request ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's `error` text.
        message: String,
    },
    /// The API key is missing or wrong.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The server's queue is full.
    #[error("the server is busy (queue full){}", .retry_after.map(|d| format!("; retry in {}s", d.as_secs())).unwrap_or_default())]
    QueueFull {
        /// The server's suggested wait.
        retry_after: Option<Duration>,
    },
    /// The server failed (5xx).
    #[error("server error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// A local file could not be read, or the input is unusable.
    #[error("{0}")]
    Input(String),
    /// A local I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, Error>;
