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
    /// The execution does not exist (or expired).
    #[error("execution not found")]
    NotFound,
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
