//! Sessions and files out over HTTP, against a real server on the embedded backend (docs/sessions.md): state
//! across calls, interrupts and restarts, one call at a time, idle expiry, the cap on live sessions, isolation
//! between two sessions, files listed, downloaded and uploaded with hostile paths, and nothing left behind.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pyexec_testkit::*;
use serde_json::{Value, json};

async fn new_session(s: &Server, body: Value) -> String {
    let (code, info) = json_of(s.post("/api/v1/sessions").json(&body).send().await.unwrap()).await;
    assert_eq!(code, 201, "{info}");
    assert_eq!(info["state"], "idle");
    let id = info["session_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ses_"), "{id}");
    id
}

async fn call(s: &Server, id: &str, body: Value) -> (u16, Value) {
    json_of(s.post(&format!("/api/v1/sessions/{id}/eval")).json(&body).send().await.unwrap()).await
}

async fn run(s: &Server, id: &str, code: &str) -> Value {
    let (status, result) = call(s, id, json!({"code": code})).await;
    assert_eq!(status, 200, "{result}");
    result
}

/// Processes on the host whose command line is `cmdline` (NUL-separated).
fn processes(cmdline: &[u8]) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == cmdline) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_between_calls_and_each_call_is_an_execution() {
    let s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    let first = run(&s, &id, "x = 41\nimport json\nprint('defined')").await;
    assert_eq!((first["status"].as_str(), first["stdout"].as_str()), (Some("completed"), Some("defined\n")));
    let second = run(&s, &id, "x + 1").await;
    assert_eq!(second["result"], "42", "{second}");
    assert_eq!(second["session_id"], id.as_str());
    let third = run(&s, &id, "json.dumps({'k': x})").await;
    assert_eq!(third["result"], "'{\"k\": 41}'", "imports persist: {third}");

    // The call is an execution too.
    let exec_id = second["execution_id"].as_str().unwrap();
    let (code, record) = json_of(s.get(&format!("/api/v1/executions/{exec_id}")).send().await.unwrap()).await;
    assert_eq!((code, record["result"].as_str(), record["session_id"].as_str()), (200, Some("42"), Some(id.as_str())));

    // Errors are reported like a script's and leave the state alone; a SystemExit ends the cell, not the session.
    let failed = run(&s, &id, "y = 1\n1/0").await;
    assert_eq!((failed["exit_code"].as_i64(), failed["error_type"].as_str()), (Some(1), Some("ZeroDivisionError")));
    assert_eq!(failed["error_line"], 2);
    let exited = run(&s, &id, "import sys\nsys.exit(3)").await;
    assert_eq!(exited["exit_code"], 3, "{exited}");
    assert_eq!(run(&s, &id, "x + y").await["result"], "42");

    // Standard input is the call's own; print without a newline stays exact.
    let (code, r) = call(&s, &id, json!({"code": "print(input()[::-1], end='')", "stdin": "abc\n"})).await;
    assert_eq!((code, r["stdout"].as_str()), (200, Some("cba")));

    let (code, info) = json_of(s.get(&format!("/api/v1/sessions/{id}")).send().await.unwrap()).await;
    assert_eq!((code, info["calls"].as_u64(), info["restarts"].as_u64()), (200, Some(7), Some(0)), "{info}");
    let (_, list) = json_of(s.get("/api/v1/sessions").send().await.unwrap()).await;
    assert!(list["sessions"].as_array().unwrap().iter().any(|x| x["session_id"] == id.as_str()));

    // The session's calls, and only they, listed by `session_id`, newest first.
    let other = new_session(&s, json!({})).await;
    run(&s, &other, "1").await;
    s.eval(json!({"code": "1"})).await;
    let (code, calls) = json_of(s.get(&format!("/api/v1/executions?session_id={id}")).send().await.unwrap()).await;
    let calls = calls["executions"].as_array().unwrap().clone();
    assert_eq!((code, calls.len()), (200, 7), "{calls:?}");
    assert!(calls.iter().all(|c| c["session_id"] == id.as_str()), "{calls:?}");
    assert_eq!(calls[5]["execution_id"], second["execution_id"], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_interrupts_and_a_call_that_will_not_stop_restarts_the_session() {
    let s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    run(&s, &id, "kept = 'yes'").await;
    let (_, slow) = call(
        &s,
        &id,
        json!({"code": "import time\nwhile True:\n    time.sleep(0.05)", "config": {"timeout_seconds": 1}}),
    )
    .await;
    assert_eq!((slow["status"].as_str(), slow["exit_code"].as_i64()), (Some("failed"), Some(124)), "{slow}");
    assert_eq!(slow["error_type"], "KeyboardInterrupt");
    assert!(slow.get("session_restarted").is_none(), "{slow}");
    assert_eq!(run(&s, &id, "kept").await["result"], "'yes'", "interrupted, the state survives");

    // Ignoring SIGINT: the session is replaced and says so.
    let stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass";
    let (_, r) = call(&s, &id, json!({"code": stubborn, "config": {"timeout_seconds": 1}})).await;
    assert_eq!((r["status"].as_str(), r["session_restarted"].as_bool()), (Some("failed"), Some(true)), "{r}");
    assert!(r["error"].as_str().unwrap().contains("state is lost"), "{r}");
    let after = run(&s, &id, "'kept' in globals()").await;
    assert_eq!(after["result"], "False", "a fresh interpreter: {after}");

    // Killing the interpreter restarts it too.
    let r = run(&s, &id, "import os\nos._exit(7)").await;
    assert_eq!(r["session_restarted"], true, "{r}");
    assert_eq!(run(&s, &id, "1 + 1").await["result"], "2");
    let (_, info) = json_of(s.get(&format!("/api/v1/sessions/{id}")).send().await.unwrap()).await;
    assert_eq!(info["restarts"], 2, "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_call_at_a_time_and_deleted_sessions_leave_nothing() {
    let s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    let slow = {
        let (client, url, id) = (s.client.clone(), s.url.clone(), id.clone());
        tokio::spawn(async move {
            let r = client
                .post(format!("{url}/api/v1/sessions/{id}/eval"))
                .json(&json!({"code": "import time\ntime.sleep(2)\n'slow'"}))
                .send()
                .await
                .unwrap();
            json_of(r).await
        })
    };
    // Wait until the first call is running, then a second one is refused at once.
    let mut busy = false;
    for _ in 0..100 {
        let (_, info) = json_of(s.get(&format!("/api/v1/sessions/{id}")).send().await.unwrap()).await;
        if info["state"] == "busy" {
            busy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(busy, "the first call never showed as busy");
    let (code, refused) = call(&s, &id, json!({"code": "1"})).await;
    assert_eq!(code, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("busy"), "{refused}");
    let (code, first) = slow.await.unwrap();
    assert_eq!((code, first["result"].as_str()), (200, Some("'slow'")));

    // A call that leaves a process behind: DELETE ends it all.
    let marker = b"sleep\x003141\x00";
    run(&s, &id, "import subprocess\nsubprocess.Popen(['sleep', '3141'])").await;
    assert_eq!(processes(marker), 1, "the call's process runs on after it");
    let (code, ended) = json_of(s.delete(&format!("/api/v1/sessions/{id}")).send().await.unwrap()).await;
    assert_eq!((code, ended["state"].as_str()), (200, Some("ended")));
    assert_eq!(processes(marker), 0, "no process stays after DELETE");
    for r in [
        s.get(&format!("/api/v1/sessions/{id}")).send().await.unwrap(),
        s.post(&format!("/api/v1/sessions/{id}/eval")).json(&json!({"code": "1"})).send().await.unwrap(),
        s.delete(&format!("/api/v1/sessions/{id}")).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), 404);
    }
    for bad in ["nope", "ses_../../x", "exe_00000000-0000-0000-0000-000000000000"] {
        let r = s.get(&format!("/api/v1/sessions/{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_the_cap_answers_429() {
    if Server::external() {
        eprintln!("!!! SKIPPED idle_sessions_expire_and_the_cap_answers_429: it configures its own server");
        return;
    }
    let s = Server::start_with(&[("PYEXEC_MAX_SESSIONS", "2")]).await;
    let short = new_session(&s, json!({"config": {"idle_timeout_seconds": 1}})).await;
    let _long = new_session(&s, json!({})).await;
    let r = s.post("/api/v1/sessions").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The idle one ends by itself, which frees a place.
    let mut gone = false;
    for _ in 0..100 {
        if s.get(&format!("/api/v1/sessions/{short}")).send().await.unwrap().status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "an idle session did not expire");
    new_session(&s, json!({})).await;

    // Settings are checked, and what belongs to the session is refused in a call.
    let (code, e) = json_of(
        s.post("/api/v1/sessions").json(&json!({"config": {"idle_timeout_seconds": 999999}})).send().await.unwrap(),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    let (code, e) = call(&s, &_long, json!({"code": "1", "python_version": "3.12"})).await;
    assert_eq!(code, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("belongs to the session"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_see_nothing_of_each_other() {
    let s = Server::start().await;
    let a = new_session(&s, json!({})).await;
    let b = new_session(&s, json!({})).await;
    run(&s, &a, "secret = 'alpha'\nopen('mine.txt', 'w').write('alpha')").await;
    let probe = "import os\n(sorted(os.listdir('.')), 'secret' in globals(), sorted(p for p in os.listdir('/proc') if p.isdigit()))";
    let seen = run(&s, &b, probe).await;
    let text = seen["result"].as_str().unwrap();
    assert!(text.starts_with("([], False,"), "b sees a's files or variables: {text}");
    assert!(!text.contains("alpha"));
    // Each sees only its own processes (its own pid namespace), and different users.
    let uid_a = run(&s, &a, "import os\nos.getuid(), os.getpid()").await["result"].as_str().unwrap().to_owned();
    let uid_b = run(&s, &b, "import os\nos.getuid(), os.getpid()").await["result"].as_str().unwrap().to_owned();
    assert!(uid_a.starts_with("(") && uid_b.starts_with("("));
    let (_, files_b) = json_of(s.get(&format!("/api/v1/sessions/{b}/files")).send().await.unwrap()).await;
    assert_eq!(files_b["files"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_in_and_out_and_hostile_paths_are_refused() {
    let s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    // Upload, then use it.
    let r = s
        .client
        .put(format!("{}/api/v1/sessions/{id}/files/data/in.csv", s.url))
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    let (code, put) = json_of(r).await;
    assert_eq!((code, put["path"].as_str(), put["size"].as_u64()), (201, Some("data/in.csv"), Some(8)), "{put}");
    let r = run(
        &s,
        &id,
        "rows = open('data/in.csv').read().splitlines()\nopen('out.txt', 'w').write(str(len(rows)))\nlen(rows)",
    )
    .await;
    assert_eq!(r["result"], "2");
    let files: Vec<&str> = r["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, ["out.txt"], "only what the call wrote is kept with it: {r}");
    let exec_id = r["execution_id"].as_str().unwrap();
    let body = s.get(&format!("/api/v1/executions/{exec_id}/files/out.txt")).send().await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.headers()["content-type"], "text/plain");
    assert_eq!(body.text().await.unwrap(), "2");

    let (code, listing) = json_of(s.get(&format!("/api/v1/sessions/{id}/files")).send().await.unwrap()).await;
    assert_eq!(code, 200);
    let paths: Vec<&str> = listing["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["data/in.csv", "out.txt"]);
    let tar = s.get(&format!("/api/v1/sessions/{id}/files?format=tar")).send().await.unwrap();
    assert_eq!(tar.headers()["content-type"], "application/x-tar");
    let bytes = tar.bytes().await.unwrap();
    let mut archive = tar::Archive::new(bytes.as_ref());
    let names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert_eq!(names, ["data/in.csv", "out.txt"]);

    // A link out of /work is never followed, neither by listing nor by download.
    run(&s, &id, "import os\nos.symlink('/etc/passwd', 'link')\nos.symlink('/etc', 'dir')").await;
    for path in ["link", "dir/passwd"] {
        let r = s.get(&format!("/api/v1/sessions/{id}/files/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let (_, listing) = json_of(s.get(&format!("/api/v1/sessions/{id}/files")).send().await.unwrap()).await;
    assert!(!listing.to_string().contains("link"), "{listing}");
    for bad in ["..%2F..%2Fetc%2Fpasswd", "a%2F..%2F..%2Fb", "%2Fetc%2Fpasswd", "a%00b"] {
        let r = s.get(&format!("/api/v1/sessions/{id}/files/{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let r = s.client.put(format!("{}/api/v1/sessions/{id}/files/{bad}", s.url)).body("x").send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let r = s.get(&format!("/api/v1/executions/{exec_id}/files/{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = s.get(&format!("/api/v1/executions/{exec_id}/files/missing.txt")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // A directory is not a file, to read or to write.
    let r = s.get(&format!("/api/v1/sessions/{id}/files/data")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = s.client.put(format!("{}/api/v1/sessions/{id}/files/data", s.url)).body("x").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Over the upload limit: 413, and nothing of it is kept.
    assert_eq!(
        run(
            &s,
            &id,
            "import os
os.path.exists('data/in.csv')"
        )
        .await["result"],
        "True"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_in_eval_are_limited_apart_from_code() {
    let s = Server::start().await;
    let csv = "1,2\n".repeat(55_000);
    let (code, r) = s
        .eval(json!({"files": [{"name": "main.py", "content": "print(len(open('data.csv').read()))"}, {"name": "data.csv", "content": csv}]}))
        .await;
    assert_eq!((code, r["stdout"].as_str()), (200, Some("220000\n")), "{r}");
    let (code, r) = s.eval(json!({"code": "x".repeat(102_401)})).await;
    assert_eq!(code, 413, "{r}");
}

/// Decodes a PNG far enough to know it is one: signature, chunk CRCs, IHDR, and image data that inflates to
/// exactly the rows the header announces. Returns (width, height).
fn decode_png(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let (mut at, mut header, mut idat) = (8, None, Vec::new());
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
        let mut check = flate2::Crc::new();
        check.update(&bytes[at + 4..at + 8 + len]);
        assert_eq!(check.sum(), crc, "CRC of {}", String::from_utf8_lossy(kind));
        match kind {
            b"IHDR" => header = Some(data.to_vec()),
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let h = header.expect("IHDR");
    let (width, height) =
        (u32::from_be_bytes(h[0..4].try_into().unwrap()), u32::from_be_bytes(h[4..8].try_into().unwrap()));
    let channels = match h[9] {
        6 => 4,
        2 => 3,
        0 => 1,
        4 => 2,
        other => panic!("colour type {other}"),
    };
    assert_eq!(h[8], 8, "8-bit samples");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(idat.as_slice()), &mut raw).unwrap();
    assert_eq!(raw.len(), height as usize * (1 + width as usize * channels), "rows of the announced size");
    (width, height)
}

/// The agent's walk-through (docs/agents.md): upload a CSV, analyse it with pandas over several calls, and get the
/// chart back as an image and as a file. Needs the package index (pandas and matplotlib are installed once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_analysed_with_pandas_over_calls_gives_a_chart_back() {
    use base64::Engine;
    let s = Server::start().await;
    let (code, info) = json_of(
        s.post("/api/v1/sessions")
            .json(&json!({"requirements_txt": "pandas\nmatplotlib", "config": {"memory_mb": 1024}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{info}");
    let id = info["session_id"].as_str().unwrap();
    let csv: String = std::iter::once("month,sales\n".to_owned())
        .chain((1..=12).map(|m| format!("{m},{}\n", m * 10 + m % 3)))
        .collect();
    let r = s.client.put(format!("{}/api/v1/sessions/{id}/files/sales.csv", s.url)).body(csv).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let loaded = run(&s, id, "import pandas as pd\ndf = pd.read_csv('sales.csv')\nlen(df)").await;
    assert_eq!(loaded["result"], "12", "{loaded}");
    let total = run(&s, id, "int(df['sales'].sum())").await;
    assert_eq!(total["result"], "792", "{total}");
    let chart = run(
        &s,
        id,
        "import matplotlib.pyplot as plt\nax = df.plot(x='month', y='sales')\nplt.savefig('chart.png')\nplt.show()",
    )
    .await;
    assert_eq!(chart["status"], "completed", "{chart}");
    let outputs = chart["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "one figure, shown once: {outputs:?}");
    assert_eq!(outputs[0]["type"], "image/png");
    let png = base64::engine::general_purpose::STANDARD.decode(outputs[0]["data"].as_str().unwrap()).unwrap();
    let (w, h) = decode_png(&png);
    assert!(w >= 200 && h >= 150, "{w}x{h}");
    // The saved file is kept with the call and can be fetched.
    let exec_id = chart["execution_id"].as_str().unwrap();
    let file = s.get(&format!("/api/v1/executions/{exec_id}/files/chart.png")).send().await.unwrap();
    assert_eq!(file.headers()["content-type"], "image/png");
    decode_png(&file.bytes().await.unwrap());
    // A figure left open at the end of a call is shown too.
    let open = run(&s, id, "plt.figure()\nplt.bar([1, 2], [3, 4])\n'drawn'").await;
    assert_eq!((open["result"].as_str(), open["outputs"].as_array().map(Vec::len)), (Some("'drawn'"), Some(1)));
    s.delete(&format!("/api/v1/sessions/{id}")).send().await.unwrap();
}

/// Files a one-shot run leaves in `/work` are kept with its execution, warm or cold, eval or exec; links, unchanged
/// inputs and what is over the caps are not; they expire with the execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_a_run_leaves_are_kept_with_its_execution_and_expire_with_it() {
    if Server::external() {
        eprintln!(
            "!!! SKIPPED files_a_run_leaves_are_kept_with_its_execution_and_expire_with_it: it configures its own server"
        );
        return;
    }
    let s = Server::start_with(&[("PYEXEC_FILES_MAX_COUNT", "3"), ("PYEXEC_CLEANUP_TTL", "2")]).await;
    let list = |id: String| {
        let s = &s;
        async move { json_of(s.get(&format!("/api/v1/executions/{id}/files")).send().await.unwrap()).await }
    };
    // /eval (through a warm sandbox when one is idle): the new and changed files only, never a link.
    let code = "import os\nopen('data.csv', 'a').write('3,4\\n')\nos.makedirs('out')\nopen('out/r.txt', 'w').write('r')\nos.symlink('/etc/passwd', 'link')";
    let (code_status, r) = s
        .eval(json!({"files": [{"name": "main.py", "content": code}, {"name": "data.csv", "content": "1,2\n"}, {"name": "same.txt", "content": "x"}]}))
        .await;
    assert_eq!((code_status, r["status"].as_str()), (200, Some("completed")), "{r}");
    let paths: Vec<&str> = r["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["data.csv", "out/r.txt"], "{r}");
    let id = r["execution_id"].as_str().unwrap().to_owned();
    let (code_status, listing) = list(id.clone()).await;
    assert_eq!((code_status, listing["truncated"].as_bool()), (200, Some(false)));
    let csv = s.get(&format!("/api/v1/executions/{id}/files/data.csv")).send().await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv");
    assert_eq!(csv.text().await.unwrap(), "1,2\n3,4\n");

    // An uploaded project run without evaluation (exec): the same; over the count cap the list says truncated.
    let main = b"for i in range(5):\n    open(f'f{i}.txt', 'w').write(str(i))\nprint('done')";
    let (code_status, r) = s.exec("sync", &[("main.py", main)], json!({"entrypoint": "main.py"})).await;
    assert_eq!((code_status, r["stdout"].as_str()), (200, Some("done\n")), "{r}");
    assert_eq!(r["files"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["files_truncated"], true);
    let id2 = r["execution_id"].as_str().unwrap().to_owned();
    let tar = s.get(&format!("/api/v1/executions/{id2}/files?format=tar")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(tar::Archive::new(tar.as_ref()).entries().unwrap().count(), 3);

    // A run that writes nothing has no files; an unknown execution is a 404.
    let (_, r) = s.eval(json!({"code": "print(1)"})).await;
    assert!(r.get("files").is_none(), "{r}");
    let (code_status, _) = list("exe_00000000-0000-0000-0000-000000000000".into()).await;
    assert_eq!(code_status, 404);

    // Files expire with their execution.
    let mut expired = false;
    for _ in 0..100 {
        if list(id.clone()).await.0 == 404 {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired, "files outlived their execution");
    let r = s.get(&format!("/api/v1/executions/{id}/files/data.csv")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Display outputs of a one-shot eval: `display()` and a rich last value, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_results_carry_display_outputs() {
    let s = Server::start().await;
    let code = "class Table:\n    def _repr_html_(self):\n        return '<table></table>'\ndisplay('plain')\nfor i in range(30):\n    display(Table())\nTable()";
    let (code_status, r) = s.eval(json!({"code": code, "eval_last_expr": true})).await;
    assert_eq!(code_status, 200, "{r}");
    let outputs = r["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 17, "16 items and the note that more were dropped");
    assert_eq!(outputs[0], json!({"type": "text/plain", "data": "'plain'"}));
    assert_eq!(outputs[1], json!({"type": "text/html", "data": "<table></table>"}));
    assert!(outputs[16]["data"].as_str().unwrap().contains("truncated"), "{}", outputs[16]);
    assert!(r["result"].as_str().unwrap().contains("Table object"), "{r}");
}

/// A cell can write to the runner's reply descriptor: forged or endless replies break only its own session, which
/// is restarted; the server holds nothing of what it wrote between calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_only_break_their_own_session() {
    let s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    let other = new_session(&s, json!({})).await;
    run(&s, &other, "kept = 1").await;
    let forged = run(&s, &id, "import os\nos.write(3, b'garbage\\n')\n'ok'").await;
    assert_eq!(forged["session_restarted"], true, "{forged}");
    assert_eq!(run(&s, &id, "1 + 1").await["result"], "2");
    // Writing replies without end between calls: the writes block, the next call finds the stream broken.
    let flood = "import os, threading\ndef spam():\n    while True:\n        os.write(3, b'x' * 65536)\nthreading.Thread(target=spam, daemon=True).start()";
    run(&s, &id, flood).await;
    let next = run(&s, &id, "2 + 2").await;
    assert!(next["result"] == "4" || next["session_restarted"] == true, "{next}");
    assert_eq!(run(&s, &id, "3 + 3").await["result"], "6");
    assert_eq!(run(&s, &other, "kept").await["result"], "1", "the other session is untouched");
}

/// A server that dies (SIGKILL, no clean-up) takes its sessions with it: no process of them stays, and after a
/// restart their ids are unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_ends_every_session() {
    if Server::external() {
        eprintln!("!!! SKIPPED a_server_restart_ends_every_session: it restarts its own server");
        return;
    }
    let mut s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    let marker = b"sleep\x003142\x00";
    run(&s, &id, "import subprocess\nsubprocess.Popen(['sleep', '3142'])\nx = 1").await;
    assert_eq!(processes(marker), 1);
    s.kill_hard();
    // The sandboxes die with the server (their init has the parent-death signal): give the kernel a moment.
    let mut gone = false;
    for _ in 0..100 {
        if processes(marker) == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "a session's process outlived its server");
    s.restart().await;
    let r = s.get(&format!("/api/v1/sessions/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = s.post(&format!("/api/v1/sessions/{id}/eval")).json(&json!({"code": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// A running call is an execution like any other: listed as running, followed to its end, and DELETE stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_call_can_be_followed_and_killed_as_an_execution() {
    let s = Server::start().await;
    let id = new_session(&s, json!({})).await;
    run(&s, &id, "before = 1").await;
    let slow = {
        let (client, url, id) = (s.client.clone(), s.url.clone(), id.clone());
        tokio::spawn(async move {
            let r = client
                .post(format!("{url}/api/v1/sessions/{id}/eval"))
                .json(&json!({"code": "import time\ntime.sleep(60)"}))
                .send()
                .await
                .unwrap();
            json_of(r).await
        })
    };
    let mut running = None;
    for _ in 0..200 {
        let (_, page) = json_of(s.get("/api/v1/executions?status=running").send().await.unwrap()).await;
        if let Some(e) = page["executions"].as_array().unwrap().iter().find(|e| e["session_id"] == id.as_str()) {
            running = Some(e["execution_id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exec_id = running.expect("the running call is listed");
    let events = {
        let (client, url, exec_id) = (s.client.clone(), s.url.clone(), exec_id.clone());
        tokio::spawn(async move {
            client.get(format!("{url}/api/v1/executions/{exec_id}/events")).send().await.unwrap().text().await.unwrap()
        })
    };
    let (code, killed) = json_of(s.delete(&format!("/api/v1/executions/{exec_id}")).send().await.unwrap()).await;
    assert_eq!((code, killed["status"].as_str()), (200, Some("killed")), "{killed}");
    let (code, answer) = slow.await.unwrap();
    assert_eq!((code, answer["status"].as_str(), answer["exit_code"].as_i64()), (200, Some("killed"), Some(137)));
    assert_eq!(answer["session_restarted"], true, "{answer}");
    let streamed = events.await.unwrap();
    let (_, last) = output_and_result(&streamed);
    assert_eq!(last.unwrap()["status"], "killed", "{streamed}");
    // The session goes on, with a fresh interpreter.
    assert_eq!(run(&s, &id, "'before' in globals()").await["result"], "False");
}
