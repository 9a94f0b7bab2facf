//! Why a command failed: one `Error: ...` line on stderr, or with `--output json` one JSON document on stdout
//! (`{"error": {"message": ..., "kind": ..., "status": ...}}`), so that a script reading JSON from stdout gets JSON
//! whatever happened. The exit code is 1 either way.

use std::time::Duration;

use crate::cli::OutputFormat;

/// A command's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for people.
    pub message: String,
    /// What went wrong, for programs: `input` (local input or arguments), `transport` (the server could not be
    /// reached), `not_found`, `unauthorized`, `busy`, `too_many_sessions`, `queue_full`, `rejected` (4xx),
    /// `server` (5xx), `decode` (an answer that could not be read), `io` (a local file).
    pub kind: &'static str,
    /// The HTTP status of the server's answer, when there was one.
    pub status: Option<u16>,
    /// The server's suggested wait before retrying (429).
    pub retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: &'static str, status: Option<u16>, message: String) -> Failure {
        Failure { message, kind, status, retry_after: None }
    }

    /// The JSON document of `--output json`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"message": self.message, "kind": self.kind, "status": self.status});
        if let (Some(wait), Some(fields)) = (self.retry_after, error.as_object_mut()) {
            fields.insert("retry_after_seconds".into(), wait.as_secs().into());
        }
        serde_json::json!({ "error": error })
    }

    /// Prints the failure as `format` asks.
    pub fn print(&self, format: OutputFormat) {
        match format {
            OutputFormat::Json => crate::output::json(&self.to_json()),
            OutputFormat::Text => eprintln!("Error: {}", self.message),
        }
    }
}

impl From<pyexec_client::Error> for Failure {
    fn from(e: pyexec_client::Error) -> Failure {
        use pyexec_client::Error;
        let message = e.to_string();
        match e {
            Error::Transport { url, source } => {
                let no_connection = source.is_connect();
                Failure::new("transport", None, unreachable(&url, &source, no_connection))
            }
            Error::NotFound { .. } => Failure::new("not_found", Some(404), message),
            Error::Busy(_) => Failure::new("busy", Some(409), message),
            Error::TooManySessions { retry_after, .. } => {
                Failure { retry_after, ..Failure::new("too_many_sessions", Some(429), message) }
            }
            Error::QueueFull { retry_after } => {
                Failure { retry_after, ..Failure::new("queue_full", Some(429), message) }
            }
            Error::Rejected { status, .. } => Failure::new("rejected", Some(status), message),
            Error::Unauthorized(_) => Failure::new("unauthorized", Some(401), message),
            Error::Server { status, .. } => Failure::new("server", Some(status), message),
            Error::Decode(_) => Failure::new("decode", None, message),
            Error::Input(_) => Failure::new("input", None, message),
            Error::Io(_) => Failure::new("io", None, message),
        }
    }
}

/// Why the server at `url` could not be reached, with the innermost cause (`Connection refused`, a DNS failure:
/// the outer errors only repeat the request's URL), and, when no connection could be made at all, where the URL
/// comes from: the default, `--server` or `PYEXEC_SERVER` may name the wrong server.
fn unreachable(url: &str, error: &(dyn std::error::Error + 'static), no_connection: bool) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let hint = if no_connection {
        "; is the server running there? Name another with --server URL or PYEXEC_SERVER"
    } else {
        ""
    };
    format!("cannot reach the server at {url}: {cause}{hint}")
}

/// Local problems (input files, arguments) are worded where they are found.
impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::new("input", None, message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::from(message.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_as_json() {
        let refused = Failure::from(pyexec_client::Error::Rejected {
            status: 400,
            message: "unsupported python_version \"2.7\"".into(),
        });
        assert_eq!(
            refused.to_json(),
            serde_json::json!({"error": {
                "message": "the server refused the request (400): unsupported python_version \"2.7\"",
                "kind": "rejected", "status": 400}})
        );
        let full = Failure::from(pyexec_client::Error::QueueFull { retry_after: Some(Duration::from_secs(5)) });
        assert_eq!(full.to_json()["error"]["retry_after_seconds"], 5);
        assert_eq!(full.to_json()["error"]["status"], 429);
        let missing = Failure::from(pyexec_client::Error::NotFound { what: "execution".into() });
        assert_eq!(
            (missing.kind, missing.status, missing.message.as_str()),
            ("not_found", Some(404), "execution not found")
        );
        let local = Failure::from("no input provided");
        assert_eq!(
            local.to_json(),
            serde_json::json!({"error": {"message": "no input provided", "kind": "input", "status": null}})
        );
    }
}
