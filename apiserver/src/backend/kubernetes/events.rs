//! `GET /api/v1/executions/{id}/events` on Kubernetes: status changes from a watch of the resource, the program's
//! output as it happens from its Pod's log, and the result last, the same sequence the embedded backend gives.
//!
//! The output is read the way the operator reads it when it finishes the execution: the runner's frames carrying
//! the Pod's nonce (`pyexec_core::pod`), so nothing the program prints can pose as output of another stream. A
//! client that connects after the program ended, or an API server that may not read Pod logs, gets the status and
//! the result only. The result is the one `GET` returns (read by the same `Results`), so it holds the whole output even
//! when the status had to cut it.

use std::time::Duration;

use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use kube::runtime::watcher;
use pyexec_core::pod::protocol::MAIN_CONTAINER;
use pyexec_core::pod::{Frame, FrameDecoder};
use pyexec_crds::pod::pod_nonce;
use pyexec_crds::{Phase, PythonExecution};
use tokio::sync::mpsc;

use super::results::Results;
use super::status_of;
use crate::backend::{EventStream, ExecutionEvent};

/// How long the result waits for the log follower to deliver the output the log still holds. The log ends when
/// the container does, which is before the operator marks the resource finished; this only bounds a slow API.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Events of one execution from a watch of its resource; `pods` (when the server may read Pod logs) adds live
/// output; `results` reads the final result.
pub(super) fn execution_events(
    watch: impl futures::Stream<Item = Result<watcher::Event<PythonExecution>, watcher::Error>> + Send + 'static,
    pods: Option<Api<Pod>>,
    id: String,
    results: Results,
) -> EventStream {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        let mut last: Option<Phase> = None;
        let mut follower: Option<tokio::task::JoinHandle<()>> = None;
        while let Some(event) = watch.next().await {
            let cr = match event {
                Ok(watcher::Event::Apply(cr) | watcher::Event::InitApply(cr)) => cr,
                Ok(watcher::Event::Delete(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(execution_id = %id, error = %e, "watching the execution failed");
                    continue;
                }
            };
            let phase = cr.phase();
            if phase.is_terminal() {
                if let Some(mut f) = follower.take()
                    && tokio::time::timeout(DRAIN_WAIT, &mut f).await.is_err()
                {
                    f.abort();
                }
                let _ = tx.send(ExecutionEvent::Result(Box::new(results.result_of(&id, &cr).await))).await;
                break;
            }
            if last != Some(phase) {
                last = Some(phase);
                if tx.send(ExecutionEvent::Status(status_of(phase))).await.is_err() {
                    break;
                }
            }
            let pod = cr.status.as_ref().and_then(|s| s.pod_name.clone());
            if let (None, Phase::Running, Some(pods), Some(pod)) = (&follower, phase, &pods, pod) {
                follower = Some(tokio::spawn(follow_output(pods.clone(), pod, tx.clone(), id.clone())));
            }
        }
        if let Some(f) = follower {
            f.abort();
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends the program's output from the main container's log of `pod` until the runner's end frame.
///
/// A follow stream that ends without the end frame while the container still runs (a dropped connection, an API
/// server restart) is opened again, a few times with growing pauses; frames carry sequence numbers, so what was
/// sent already is skipped. A runner whose frames are not numbered is followed once, as nothing could be skipped.
async fn follow_output(pods: Api<Pod>, pod: String, tx: mpsc::Sender<ExecutionEvent>, id: String) {
    let nonce = match pods.get_opt(&pod).await {
        Ok(found) => found.as_ref().and_then(pod_nonce),
        Err(e) => {
            tracing::info!(execution_id = %id, %pod, error = %e, "no live output: cannot read the Pod");
            None
        }
    };
    let Some(nonce) = nonce else { return };
    let mut last_seq: Option<u64> = None;
    let mut unnumbered = false;
    for attempt in 0..=FOLLOW_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
        }
        let params = LogParams { container: Some(MAIN_CONTAINER.into()), follow: true, ..LogParams::default() };
        let mut log = match pods.log_stream(&pod, &params).await {
            Ok(log) => log,
            Err(e) => {
                tracing::info!(execution_id = %id, %pod, error = %e, "no live output: cannot follow the Pod's log");
                return;
            }
        };
        let mut decoder = FrameDecoder::new(&nonce);
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = match log.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(execution_id = %id, %pod, error = %e, "the Pod's log stream broke");
                    break;
                }
            };
            for numbered in decoder.push_numbered(&buffer[..n]) {
                match (numbered.seq, last_seq) {
                    (Some(seq), Some(last)) if seq <= last => continue,
                    (Some(seq), _) => last_seq = Some(seq),
                    (None, _) => unnumbered = true,
                }
                let event = match numbered.frame {
                    Frame::Stdout(data) => ExecutionEvent::Output { stream: "stdout", data },
                    Frame::Stderr(data) => ExecutionEvent::Output { stream: "stderr", data },
                    Frame::End(_) => return,
                    // Live output is the program's streams; the files' tar is for the result alone.
                    Frame::Start | Frame::PreOutput(_) | Frame::Files(_) => continue,
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
        if unnumbered || container_ended(&pods, &pod).await {
            return;
        }
        tracing::debug!(execution_id = %id, %pod, "following the Pod's log again");
    }
}

/// Times a broken follow stream is opened again.
const FOLLOW_RETRIES: u32 = 5;

/// Whether the main container of `pod` has ended (or the Pod cannot be read: nothing more to follow then).
async fn container_ended(pods: &Api<Pod>, pod: &str) -> bool {
    let Ok(Some(found)) = pods.get_opt(pod).await else { return true };
    let statuses = found.status.and_then(|s| s.container_statuses).unwrap_or_default();
    statuses
        .iter()
        .find(|c| c.name == MAIN_CONTAINER)
        .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

#[cfg(test)]
mod tests {
    use pyexec_core::ExecutionStatus;
    use pyexec_core::pod::protocol::{
        FRAME_END, FRAME_FILES, FRAME_PRE_OUTPUT, FRAME_START, FRAME_STDERR, FRAME_STDOUT, NONCE_ENV,
        encode_frame as frame, encode_unnumbered_frame,
    };
    use pyexec_testkit::kube::{FakeApi, PODS};
    use serde_json::json;

    use super::*;

    fn execution(phase: &str, pod: Option<&str>) -> Result<watcher::Event<PythonExecution>, watcher::Error> {
        execution_with(json!({"phase": phase, "podName": pod, "exitCode": 0, "stdout": "hello\n"}))
    }

    fn execution_with(status: serde_json::Value) -> Result<watcher::Event<PythonExecution>, watcher::Error> {
        let cr = json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution",
            "metadata": {"name": "exe-1", "namespace": "team-a", "uid": "uid"},
            "spec": {"source": {"files": [{"name": "main.py", "content": "print(1)"}]}, "entrypoint": "main.py"},
            "status": status,
        });
        Ok(watcher::Event::Apply(serde_json::from_value(cr).unwrap()))
    }

    fn pod(fake: &FakeApi, nonce: &str) {
        fake.put(
            PODS,
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "exe-1-pod", "namespace": "team-a"},
                "spec": {"containers": [{"name": MAIN_CONTAINER, "image": "python:3.12",
                                         "env": [{"name": NONCE_ENV, "value": nonce}]}]},
            }),
        );
    }

    fn results() -> Results {
        Results::new(Some("logs-token".into()), 1 << 20)
    }

    async fn collect(mut events: EventStream) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            seen.push(match event {
                ExecutionEvent::Status(s) => format!("status {s:?}"),
                ExecutionEvent::Output { stream, data } => format!("{stream} {}", String::from_utf8_lossy(&data)),
                ExecutionEvent::Result(r) => format!("result {:?} {:?}", r.status, r.stdout),
            });
        }
        seen
    }

    #[tokio::test]
    async fn output_from_the_pods_log_comes_between_running_and_the_result() {
        let (client, fake) = FakeApi::start();
        pod(&fake, "n0nce");
        let mut log = frame("n0nce", 0, FRAME_PRE_OUTPUT, b"pre-command noise\n");
        log += &frame("n0nce", 1, FRAME_STDOUT, b"hello\n");
        log += &frame("forged", 2, FRAME_STDOUT, b"FORGED\n");
        log += "a line the program wrote around the runner\n";
        // A runner from before frames were numbered is still followed.
        log += &encode_unnumbered_frame("n0nce", FRAME_STDERR, b"warning\n");
        // The files' tar is no live output.
        log += &frame("n0nce", 3, FRAME_FILES, b"a piece of a tar");
        log += &frame("n0nce", 4, FRAME_END, br#"{"exit":0,"files_bytes":16}"#);
        fake.set_log("exe-1-pod", MAIN_CONTAINER, &log);
        let watch = futures::stream::iter(vec![
            execution("Pending", None),
            execution("Running", Some("exe-1-pod")),
            execution("Running", Some("exe-1-pod")),
            execution("Completed", Some("exe-1-pod")),
        ]);
        let pods = Api::namespaced(client, "team-a");
        let seen = collect(execution_events(watch, Some(pods), "exe_1".into(), results())).await;
        assert_eq!(
            seen,
            [
                "status Pending",
                "status Running",
                "stdout hello\n",
                "stderr warning\n",
                &format!("result {:?} {:?}", ExecutionStatus::Completed, "hello\n"),
            ]
        );
        let follows = fake.calls_to("GET", &format!("{PODS}/exe-1-pod/log"));
        assert_eq!(follows.len(), 1, "one follower however many updates");
        assert!(follows[0].query.contains("follow=true") && follows[0].query.contains("container=python"));
    }

    #[tokio::test]
    async fn a_dropped_follow_is_opened_again_without_repeating_output() {
        let (client, fake) = FakeApi::start();
        pod(&fake, "n0nce");
        let mut log = frame("n0nce", 0, FRAME_START, b"");
        log += &frame("n0nce", 1, FRAME_STDOUT, b"first\n");
        fake.set_log("exe-1-pod", MAIN_CONTAINER, &log);
        let (watch_tx, watch_rx) = mpsc::channel(4);
        watch_tx.send(execution("Running", Some("exe-1-pod"))).await.unwrap();
        let pods = Api::namespaced(client, "team-a");
        let mut events = execution_events(
            tokio_stream::wrappers::ReceiverStream::new(watch_rx),
            Some(pods),
            "exe_1".into(),
            results(),
        );
        let mut seen = Vec::new();
        while !seen.iter().any(|e: &String| e == "stdout first\n") {
            seen.push(match events.next().await.unwrap() {
                ExecutionEvent::Output { stream, data } => format!("{stream} {}", String::from_utf8_lossy(&data)),
                other => format!("{other:?}"),
            });
        }
        // The connection drops while the program runs; it writes more, then ends.
        fake.cut_log_follows("exe-1-pod", MAIN_CONTAINER);
        fake.append_log("exe-1-pod", MAIN_CONTAINER, &frame("n0nce", 2, FRAME_STDOUT, b"second\n"));
        fake.append_log("exe-1-pod", MAIN_CONTAINER, &frame("n0nce", 3, FRAME_END, br#"{"exit":0}"#));
        fake.end_log("exe-1-pod", MAIN_CONTAINER);
        watch_tx.send(execution("Completed", Some("exe-1-pod"))).await.unwrap();
        drop(watch_tx);
        seen.extend(collect(events).await);
        let outputs: Vec<&String> = seen.iter().filter(|e| e.starts_with("stdout")).collect();
        assert_eq!(outputs, ["stdout first\n", "stdout second\n"], "{seen:?}");
        let follows = fake.calls_to("GET", &format!("{PODS}/exe-1-pod/log"));
        assert!(follows.len() >= 2, "the log was followed again: {}", follows.len());
    }

    #[tokio::test]
    async fn without_pod_access_the_events_are_status_and_result() {
        let (client, _fake) = FakeApi::start();
        let watch = futures::stream::iter(vec![
            execution("Running", Some("exe-1-pod")),
            execution("Failed", Some("exe-1-pod")),
        ]);
        // The Pod does not exist: no nonce, no output, no error.
        let pods = Some(Api::namespaced(client, "team-a"));
        let seen = collect(execution_events(watch, pods, "exe_1".into(), results())).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "status Running");
        assert!(seen[1].starts_with("result Failed"), "{seen:?}");
        let watch = futures::stream::iter(vec![execution("Running", Some("p")), execution("Completed", Some("p"))]);
        assert_eq!(collect(execution_events(watch, None, "exe_1".into(), results())).await.len(), 2);
    }

    #[tokio::test]
    async fn the_result_holds_the_whole_output_when_the_status_cut_it() {
        use axum::response::IntoResponse;
        let full = "x".repeat(100_000);
        let served = full.clone();
        let app = axum::Router::new().route(
            "/logs/team-a/uid",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let stdout = served.clone();
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer logs-token") {
                        return axum::http::StatusCode::UNAUTHORIZED.into_response();
                    }
                    axum::Json(json!({"stdout": stdout, "stderr": ""})).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let logs_ref = format!("http://{}/logs/team-a/uid", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let watch = futures::stream::iter(vec![execution_with(json!({
            "phase": "Completed", "exitCode": 0, "stdout": &full[..65536], "stdoutTruncated": true, "logsRef": logs_ref,
        }))]);
        let mut events = execution_events(watch, None, "exe_1".into(), results());
        let Some(ExecutionEvent::Result(result)) = events.next().await else { panic!("no result") };
        assert_eq!((result.stdout.len(), result.stdout_truncated), (full.len(), false));
    }
}
