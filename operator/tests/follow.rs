//! The log follower against the fake API's followed logs: a log rotated while the program runs, a dropped follow
//! stream, and a rotation the follower could not see; each checked by the status written and the requests made.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyexec_core::pod::protocol::{FRAME_END, FRAME_START, FRAME_STDERR, FRAME_STDOUT, NONCE_ENV};
use pyexec_operator::config::OperatorConfig;
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::reconcile::reconcile;
use serde_json::{Value, json};
use support::*;

/// The uid the fake gives the Pod named `job`.
const POD_UID: &str = "uid-job";

fn hello() -> Value {
    json!({"source": {"files": [{"name": "main.py", "content": "print('hi')"}]}, "entrypoint": "main.py",
           "limits": {"timeoutSeconds": 30, "memoryMB": 128, "cpu": "500m", "diskMB": 50}})
}

async fn step(fake: &FakeApi, ctx: &Arc<Context>) {
    reconcile(fake.object(EXECUTIONS, "job"), ctx.clone()).await.unwrap();
}

fn status(fake: &FakeApi) -> Value {
    fake.get(EXECUTIONS, "job").unwrap()["status"].clone()
}

fn nonce(fake: &FakeApi) -> String {
    let pod = fake.get(PODS, "job").unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    env.iter().find(|e| e["name"] == NONCE_ENV).unwrap()["value"].as_str().unwrap().to_owned()
}

/// An execution whose main container the "kubelet" started: the operator follows its log from here.
async fn running() -> (FakeApi, Arc<Context>) {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx).await;
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Running", "startTime": "2026-01-01T00:00:01Z",
        "containerStatuses": [container("python", json!({"running": {"startedAt": "2026-01-01T00:00:02Z"}}))]}),
    );
    step(&fake, &ctx).await;
    assert_eq!(ctx.followers.len(), 1, "the running Pod's log is followed");
    (fake, ctx)
}

/// The container ended with exit code 0 (the kubelet ends its log); the operator reconciles.
async fn completed(fake: &FakeApi, ctx: &Arc<Context>) -> Value {
    let terminated = json!({"terminated": {"exitCode": 0, "reason": "Completed",
        "startedAt": "2026-01-01T00:00:02Z", "finishedAt": "2026-01-01T00:00:05Z"}});
    fake.set_status(PODS, "job", json!({"phase": "Succeeded", "containerStatuses": [container("python", terminated)]}));
    step(fake, ctx).await;
    status(fake)
}

/// Waits (at most 5 s) until `what` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn frames_followed(ctx: &Context) -> u64 {
    ctx.followers.snapshot(POD_UID).map_or(0, |s| s.log.frames())
}

/// Requests for the main container's log: (followed, plain reads).
fn log_reads(fake: &FakeApi) -> (usize, usize) {
    let reads = fake.calls_matching("GET", "/pods/job/log");
    let followed = reads.iter().filter(|c| c.query.contains("follow=true")).count();
    (followed, reads.len() - followed)
}

#[tokio::test]
async fn a_log_rotated_while_the_program_runs_still_gives_the_whole_result() {
    let (fake, ctx) = running().await;
    let n = nonce(&fake);
    // The kubelet rotates the file whenever it outgrows 300 bytes: it will lose everything written before.
    fake.rotate_log_after("job", "python", 300);
    let head = numbered(&n, 0, FRAME_START, b"") + &numbered(&n, 1, FRAME_STDOUT, b"first line\n");
    fake.append_log("job", "python", &head);
    until("the follower read the head", || frames_followed(&ctx) == 2).await;
    let big = vec![b'x'; 300];
    fake.append_log("job", "python", &numbered(&n, 2, FRAME_STDOUT, &big));
    let tail = numbered(&n, 3, FRAME_STDERR, b"a warning\n")
        + &numbered(&n, 4, FRAME_STDOUT, b"last line\n")
        + &numbered(&n, 5, FRAME_END, br#"{"exit":0,"frames":5}"#);
    fake.append_log("job", "python", &tail);
    assert_eq!(fake.log_text("job", "python"), tail, "the file the kubelet serves lost its head");

    let s = completed(&fake, &ctx).await;
    let stdout = format!("first line\n{}last line\n", "x".repeat(300));
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Completed"), Some(0)), "{s}");
    assert_eq!((s["stdout"].as_str(), s["stderr"].as_str()), (Some(stdout.as_str()), Some("a warning\n")));
    assert!(s["stdoutTruncated"] != true && s.get("error").is_none(), "nothing was lost: {s}");
    let (followed, plain) = log_reads(&fake);
    assert_eq!((followed, plain), (1, 0), "one followed read, and no read at the end");
    assert!(ctx.followers.is_empty() && ctx.followers.snapshot(POD_UID).is_none(), "collected: the follower is gone");
}

#[tokio::test]
async fn a_dropped_follow_stream_is_followed_again_without_duplicates() {
    let (fake, ctx) = running().await;
    let n = nonce(&fake);
    let head = numbered(&n, 0, FRAME_START, b"") + &numbered(&n, 1, FRAME_STDOUT, b"one\n");
    fake.append_log("job", "python", &head);
    until("the follower read the head", || frames_followed(&ctx) == 2).await;
    fake.cut_log_follows("job", "python");
    until("the follower reconnected", || {
        log_reads(&fake).0 == 2 && ctx.followers.snapshot(POD_UID).is_some_and(|s| s.connected)
    })
    .await;
    // The new stream read the head again; those frames were skipped.
    assert_eq!(frames_followed(&ctx), 2);
    fake.append_log("job", "python", &numbered(&n, 2, FRAME_STDOUT, b"two\n"));
    fake.append_log("job", "python", &numbered(&n, 3, FRAME_END, br#"{"exit":0,"frames":3}"#));

    let s = completed(&fake, &ctx).await;
    assert_eq!((s["phase"].as_str(), s["stdout"].as_str()), (Some("Completed"), Some("one\ntwo\n")), "{s}");
    assert_eq!(s.get("error"), None);
    assert_eq!(log_reads(&fake), (2, 0), "two followed reads, no read at the end");
    assert!(ctx.followers.is_empty(), "collected: the follower is gone");
}

#[tokio::test]
async fn a_rotation_the_follower_missed_falls_back_to_the_log_and_says_what_was_lost() {
    let (fake, ctx) = running().await;
    let n = nonce(&fake);
    fake.append_log("job", "python", &(numbered(&n, 0, FRAME_START, b"") + &numbered(&n, 1, FRAME_STDOUT, b"one\n")));
    until("the follower read the head", || frames_followed(&ctx) == 2).await;
    // The stream drops; while none is open, frame 2 is written and rotated away.
    fake.cut_log_follows("job", "python");
    fake.append_log("job", "python", &numbered(&n, 2, FRAME_STDOUT, b"two\n"));
    fake.rotate_log("job", "python");
    let tail = numbered(&n, 3, FRAME_STDOUT, b"three\n") + &numbered(&n, 4, FRAME_END, br#"{"exit":0,"frames":4}"#);
    fake.append_log("job", "python", &tail);
    until("the follower noticed the gap", || ctx.followers.snapshot(POD_UID).is_some_and(|s| s.log.broken().is_some()))
        .await;

    let s = completed(&fake, &ctx).await;
    assert_eq!((s["phase"].as_str(), s["stdout"].as_str()), (Some("Completed"), Some("three\n")), "{s}");
    assert!(s["error"].as_str().unwrap().starts_with("output_lost:"), "{s}");
    assert_eq!(s["stdoutTruncated"], true);
    assert_eq!(log_reads(&fake).1, 1, "the log was read at the end");
    assert!(ctx.followers.is_empty());
}

#[tokio::test]
async fn a_runner_without_frame_numbers_is_still_collected_from_its_follower() {
    let (fake, ctx) = running().await;
    let n = nonce(&fake);
    let log = frame(&n, FRAME_START, b"")
        + &frame(&n, FRAME_STDOUT, b"old runner\n")
        + &frame(&n, FRAME_END, br#"{"exit":0,"frames":2}"#);
    fake.append_log("job", "python", &log);
    until("the follower read the log", || ctx.followers.snapshot(POD_UID).is_some_and(|s| s.log.complete())).await;
    let s = completed(&fake, &ctx).await;
    assert_eq!((s["phase"].as_str(), s["stdout"].as_str()), (Some("Completed"), Some("old runner\n")), "{s}");
    assert_eq!(log_reads(&fake).1, 0);
}

#[tokio::test]
async fn a_deleted_execution_leaves_no_follower() {
    let (fake, ctx) = running().await;
    fake.append_log("job", "python", &numbered(&nonce(&fake), 0, FRAME_START, b""));
    until("the follower read the start", || frames_followed(&ctx) == 1).await;
    // The resource (and with it the Pod) is deleted while the program runs: the sweep against the store forgets it.
    fake.delete(EXECUTIONS, "job");
    ctx.forget_gone([]);
    assert!(ctx.followers.is_empty());
}
