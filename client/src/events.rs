//! The Server-Sent Events of `GET /api/v1/executions/{id}/events`, as typed events.

use std::pin::Pin;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use pyexec_core::{ExecutionResult, ExecutionStatus};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Something that happened to an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece of output; `stream` is `stdout` or `stderr`.
    Output {
        /// `stdout` or `stderr`.
        stream: String,
        /// The text.
        data: String,
    },
    /// The execution changed status.
    Status(ExecutionStatus),
    /// The final result (always last).
    Result(Box<ExecutionResult>),
}

/// A stream of events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

#[derive(Deserialize)]
struct OutputData {
    stream: String,
    data: String,
}

#[derive(Deserialize)]
struct StatusData {
    status: ExecutionStatus,
}

/// Decodes one SSE message; unknown event types are skipped (`None`).
fn decode(event: &str, data: &str) -> Option<Result<Event>> {
    let bad = |e: serde_json::Error| Error::Decode(format!("event {event:?}: {e}"));
    Some(match event {
        "output" => serde_json::from_str::<OutputData>(data)
            .map(|o| Event::Output { stream: o.stream, data: o.data })
            .map_err(bad),
        "status" => serde_json::from_str::<StatusData>(data).map(|s| Event::Status(s.status)).map_err(bad),
        "result" => serde_json::from_str::<ExecutionResult>(data).map(|r| Event::Result(Box::new(r))).map_err(bad),
        _ => return None,
    })
}

pub(crate) fn parse(response: reqwest::Response) -> EventStream {
    let stream = response.bytes_stream().eventsource().filter_map(|message| async move {
        match message {
            Ok(m) => decode(&m.event, &m.data),
            Err(e) => Some(Err(Error::Decode(format!("event stream: {e}")))),
        }
    });
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_servers_events() {
        assert_eq!(
            decode("output", r#"{"stream":"stdout","data":"hi\n"}"#).unwrap().unwrap(),
            Event::Output { stream: "stdout".into(), data: "hi\n".into() }
        );
        assert_eq!(
            decode("status", r#"{"status":"running"}"#).unwrap().unwrap(),
            Event::Status(ExecutionStatus::Running)
        );
        let r = decode("result", r#"{"execution_id":"exe_1","status":"completed","exit_code":0}"#).unwrap().unwrap();
        assert!(matches!(r, Event::Result(r) if r.status == ExecutionStatus::Completed));
        assert!(decode("keepalive", "").is_none());
        assert!(decode("output", "{").unwrap().is_err());
    }
}
