//! The server's memory stays bounded whatever a request carries or the executions printed. Each test measures a
//! real server process: its peak resident set (`VmHWM`) is reset to the current resident set before the step
//! (`/proc/<pid>/clear_refs`), and the growth of the peak over that step is what the bound applies to.
//!
//! The bounds, and why:
//! - 90 MB of `stdin` in one `/eval`: the peak grows by less than 1.5 times the request body. The body is held
//!   once while it is read and parsed, stdin goes to a file before the execution is queued, and the run reads it
//!   back only after the body is gone; copies of the body (axum's buffering, a parsed `String`, the stored spec,
//!   the sandbox's copy) would each add another 1x.
//! - 8 simultaneous listings of 100 executions that each printed 1 MB: the peak grows by less than 64 MiB, and
//!   each answer is under the list's page budget. Without summaries each listing alone would be 100 MB.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use pyexec_testkit::*;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

fn skip_external(name: &str) -> bool {
    if Server::external() {
        eprintln!("!!! SKIPPED {name}: it measures the memory of a server it starts (PYEXEC_TEST_SERVER is set)");
        return true;
    }
    false
}

/// A `VmXXX` value of `/proc/<pid>/status`, in bytes.
fn vm(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Resets the peak resident set to the current one; returns the current one.
fn reset_peak(pid: u32) -> u64 {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting VmHWM needs the server's uid");
    vm(pid, "VmRSS")
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| e.metadata().map_or(0, |m| if m.is_dir() { dir_bytes(&e.path()) } else { m.len() }))
            .sum()
    })
}

fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn ninety_megabytes_of_stdin_are_held_once_and_reach_the_program_whole() {
    if skip_external("ninety_megabytes_of_stdin_are_held_once_and_reach_the_program_whole") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_MAX_CONCURRENT", "1")]).await;
    let pid = s.pid();
    // The first run initialises what every later run reuses.
    let (code, warm) = s.eval(json!({"code": "import sys\nprint(len(sys.stdin.buffer.read()))", "stdin": "abc"})).await;
    assert_eq!((code, warm["stdout"].as_str()), (200, Some("3\n")), "{warm}");

    // Lines with newlines, so that the JSON carries escapes that must be decoded.
    let line = format!("{}\n", "a".repeat(99));
    let stdin = line.repeat(900_000);
    let body = serde_json::to_vec(&json!({
        "code": "import sys\nprint(len(sys.stdin.buffer.read()))",
        "stdin": stdin,
    }))
    .unwrap();
    drop(stdin);
    let body_len = body.len() as u64;

    let before = reset_peak(pid);
    let started = Instant::now();
    let r = s.post("/api/v1/eval").header("content-type", "application/json").body(body).send().await.unwrap();
    let (code, result) = json_of(r).await;
    let growth = vm(pid, "VmHWM").saturating_sub(before);
    eprintln!(
        "stdin eval: body {} MiB, VmRSS before {} MiB, VmHWM growth {} MiB ({:.2}x the body), {:?}",
        body_len / MIB,
        before / MIB,
        growth / MIB,
        growth as f64 / body_len as f64,
        started.elapsed()
    );
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["stdout"], "90000000\n", "the program reads all of its stdin");
    assert!(
        growth < body_len * 3 / 2,
        "the server's peak memory grew by {} MiB for a {} MiB body (bound: 1.5x)",
        growth / MIB,
        body_len / MIB
    );

    let data = s.data_dir().join("data");
    assert!(file_names(&data.join("stdin")).is_empty(), "the spooled stdin goes with its execution");
    assert!(file_names(&data.join("uploads")).is_empty(), "nothing stays in the staging area");
    let store = dir_bytes(&data).saturating_sub(dir_bytes(&data.join("environments")));
    assert!(store < 16 * MIB, "stdin is not kept in the store: the data directory holds {} MiB", store / MIB);
}

#[tokio::test]
async fn listing_executions_with_large_outputs_stays_within_a_fixed_budget() {
    if skip_external("listing_executions_with_large_outputs_stays_within_a_fixed_budget") {
        return;
    }
    const RUNS: usize = 100;
    /// The list's page budget (`pyexec_core::listing::PAGE_BUDGET_BYTES`).
    const PAGE_BUDGET: usize = 2 << 20;
    let s = Server::start_with(&[("PYEXEC_MAX_OUTPUT_BYTES", "1048576"), ("PYEXEC_MAX_QUEUE", "500")]).await;
    let pid = s.pid();
    let started = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..RUNS {
        let (client, url) = (s.client.clone(), s.url.clone());
        runs.spawn(async move {
            let code = format!("import sys\nsys.stdout.write('{}' * 1_000_000)", i % 10);
            let r = client.post(format!("{url}/api/v1/eval")).json(&json!({"code": code})).send().await.unwrap();
            json_of(r).await
        });
    }
    while let Some(done) = runs.join_next().await {
        let (code, result) = done.unwrap();
        assert_eq!(code, 200, "{result}");
        assert_eq!(result["stdout"].as_str().map(str::len), Some(1_000_000), "full output on the execution itself");
    }
    eprintln!("{RUNS} runs of 1 MB output in {:?}", started.elapsed());

    let before = reset_peak(pid);
    let mut listings = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (s.client.clone(), s.url.clone());
        listings.spawn(async move {
            let r = client.get(format!("{url}/api/v1/executions?limit=500")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        });
    }
    let mut bodies = Vec::new();
    while let Some(body) = listings.join_next().await {
        bodies.push(body.unwrap());
    }
    let growth = vm(pid, "VmHWM").saturating_sub(before);
    let largest = bodies.iter().map(|b| b.len()).max().unwrap();
    eprintln!(
        "8 listings: largest body {} KiB, VmRSS before {} MiB, VmHWM growth {} MiB",
        largest / 1024,
        before / MIB,
        growth / MIB
    );
    for body in &bodies {
        assert!(body.len() <= PAGE_BUDGET, "a listing of {} bytes is over the page budget", body.len());
        let page: Value = serde_json::from_slice(body).unwrap();
        let items = page["executions"].as_array().unwrap();
        let mut seen = items.len();
        for item in items {
            let stdout = item["stdout"].as_str().unwrap_or_default();
            assert!(stdout.len() <= 4096, "list items carry at most 4 KiB of stdout, got {}", stdout.len());
            assert_eq!(item["stdout_truncated"], true, "a cut output says so: {item}");
            assert_eq!(item["status"], "completed");
        }
        // Pages may end early to stay in budget; the cursor then leads to the rest.
        let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
        while let Some(c) = cursor {
            let (code, next) =
                json_of(s.get(&format!("/api/v1/executions?limit=500&cursor={c}")).send().await.unwrap()).await;
            assert_eq!(code, 200);
            seen += next["executions"].as_array().unwrap().len();
            cursor = next["next_cursor"].as_str().map(str::to_owned);
        }
        assert_eq!(seen, RUNS, "every execution is listed");
    }
    assert!(growth < 64 * MIB, "8 listings grew the server's peak memory by {} MiB (bound: 64 MiB)", growth / MIB);
    // The full output is still there for whoever asks for the one execution.
    let first = serde_json::from_slice::<Value>(&bodies[0]).unwrap()["executions"][0]["execution_id"].clone();
    let (_, full) =
        json_of(s.get(&format!("/api/v1/executions/{}", first.as_str().unwrap())).send().await.unwrap()).await;
    assert_eq!(full["stdout"].as_str().map(str::len), Some(1_000_000));
    assert!(full.get("stdout_truncated").is_none(), "{}", full["stdout_truncated"]);
}

/// A large stdin sent in multipart metadata is spooled to a private file, not the store; a pending execution
/// keeps it across a crash and gets it whole after the restart; a refused request, a finished execution and a
/// crash leave no file behind.
#[tokio::test]
async fn a_spooled_stdin_survives_a_crash_and_is_removed_with_its_execution() {
    if skip_external("a_spooled_stdin_survives_a_crash_and_is_removed_with_its_execution") {
        return;
    }
    let mut s = Server::start_with(&[("PYEXEC_MAX_CONCURRENT", "1")]).await;
    let stdin_dir = s.data_dir().join("data/stdin");
    let (_, running) =
        s.exec("async", &[("main.py", b"import time\ntime.sleep(60)")], json!({"entrypoint": "main.py"})).await;
    let running_id = running["execution_id"].as_str().unwrap().to_owned();
    s.wait_status(&running_id, "running").await;

    let stdin = "0123456789abcdef\n".repeat(200_000);
    let code =
        b"import sys, hashlib\ndata = sys.stdin.buffer.read()\nprint(len(data), hashlib.sha256(data).hexdigest())";
    let (code_status, queued) =
        s.exec("async", &[("main.py", code)], json!({"entrypoint": "main.py", "stdin": stdin})).await;
    assert_eq!(code_status, 202, "{queued}");
    let queued_id = queued["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(file_names(&stdin_dir), [queued_id.as_str()], "the pending execution's stdin is a file of its own");
    let (refused, _) =
        s.exec("async", &[("main.py", b"1")], json!({"entrypoint": "../x.py", "stdin": stdin.clone()})).await;
    assert_eq!(refused, 400);
    assert_eq!(file_names(&stdin_dir).len(), 1, "a refused request leaves no stdin behind");
    assert!(file_names(&s.data_dir().join("data/uploads")).is_empty());
    for file in ["executions.db", "executions.db-wal"] {
        let db = std::fs::read(s.data_dir().join("data").join(file)).unwrap_or_default();
        assert!(!db.windows(64).any(|w| w == &stdin.as_bytes()[..64]), "the stdin is not in the store ({file})");
    }

    s.kill_hard();
    // What a crash between recording an end and removing the files would leave.
    let orphan = "exe_00000000-0000-4000-8000-000000000000";
    std::fs::write(stdin_dir.join(orphan), "left over").unwrap();
    std::fs::create_dir(s.data_dir().join("data/workspaces").join(orphan)).unwrap();
    s.restart().await;
    assert!(!stdin_dir.join(orphan).exists() && !s.data_dir().join("data/workspaces").join(orphan).exists());
    let r = s.wait_terminal(&queued_id).await;
    let expected = {
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(stdin.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!("{} {digest}\n", stdin.len())
    };
    assert_eq!((r["status"].as_str(), r["stdout"].as_str()), (Some("completed"), Some(expected.as_str())), "{r}");
    assert!(file_names(&stdin_dir).is_empty(), "the stdin file goes with its execution");
}
