//! Tenants and retries through a real server on 127.0.0.1 with the real sandbox (docs/tenants.md, docs/api.md
//! "Retries"): each key's tenant sees only its own executions, sessions and files (another tenant's answer 404 as
//! unknown ids do), an admin sees all, quotas answer 429 with Retry-After, and an `Idempotency-Key` makes a retried
//! request return the first one's execution instead of running twice.

#![allow(clippy::unwrap_used)]

use pyexec_testkit::*;
use serde_json::{Value, json};

const KEYS: &str = "alice:alice-key,bob:bob-key,ops:ops-key";

fn skip(test: &str) -> bool {
    if Server::external() {
        eprintln!("SKIPPED {test}: it configures its own server");
        return true;
    }
    false
}

async fn call(s: &Server, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let request = match method {
        "GET" => s.get(path),
        "DELETE" => s.delete(path),
        _ => s.post(path),
    }
    .bearer_auth(key);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    json_of(request.send().await.unwrap()).await
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_work_and_an_admin_sees_all() {
    if skip("each_tenant_sees_only_its_own_work_and_an_admin_sees_all") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_API_KEYS", KEYS), ("PYEXEC_ADMIN_TENANTS", "ops")]).await;
    let code = "open('/work/secret.txt', 'w').write('alice only')\nprint('alice output')";
    let (status, alice_run) = call(&s, "POST", "/api/v1/eval", "alice-key", Some(json!({"code": code}))).await;
    assert_eq!((status, alice_run["tenant"].as_str()), (200, Some("alice")), "{alice_run}");
    let id = alice_run["execution_id"].as_str().unwrap().to_owned();
    let (_, bob_run) = call(&s, "POST", "/api/v1/eval", "bob-key", Some(json!({"code": "print('bob')"}))).await;
    let bob_id = bob_run["execution_id"].as_str().unwrap().to_owned();

    // Bob: alice's execution does not exist for him, whatever he asks of it.
    for (method, path) in [
        ("GET", format!("/api/v1/executions/{id}")),
        ("GET", format!("/api/v1/executions/{id}/events")),
        ("GET", format!("/api/v1/executions/{id}/files")),
        ("GET", format!("/api/v1/executions/{id}/files/secret.txt")),
        ("DELETE", format!("/api/v1/executions/{id}")),
    ] {
        let (status, body) = call(&s, method, &path, "bob-key", None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(!body.to_string().contains("alice"), "nothing of alice's leaks: {body}");
    }
    let unknown = call(&s, "GET", "/api/v1/executions/exe_00000000-0000-4000-8000-000000000000", "bob-key", None).await;
    let other = call(&s, "GET", &format!("/api/v1/executions/{id}"), "bob-key", None).await;
    assert_eq!(unknown, other, "another tenant's id answers exactly as an unknown one");
    let (_, bob_list) = call(&s, "GET", "/api/v1/executions", "bob-key", None).await;
    let ids = |list: &Value| -> Vec<String> {
        list["executions"].as_array().unwrap().iter().map(|e| e["execution_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&bob_list), std::slice::from_ref(&bob_id));

    // Alice reads her own, files included.
    let (status, files) = call(&s, "GET", &format!("/api/v1/executions/{id}/files"), "alice-key", None).await;
    assert_eq!((status, files["files"][0]["path"].as_str()), (200, Some("secret.txt")), "{files}");

    // The admin sees both, and can narrow the list to one tenant.
    let (_, all) = call(&s, "GET", "/api/v1/executions", "ops-key", None).await;
    assert!(ids(&all).contains(&id) && ids(&all).contains(&bob_id), "{all}");
    let (_, only_bob) = call(&s, "GET", "/api/v1/executions?tenant=bob", "ops-key", None).await;
    assert_eq!(ids(&only_bob), std::slice::from_ref(&bob_id));
    let (status, _) = call(&s, "GET", &format!("/api/v1/executions/{id}"), "ops-key", None).await;
    assert_eq!(status, 200);
    // A tenant naming another in the list's filter still gets its own.
    let (_, bob_asks) = call(&s, "GET", "/api/v1/executions?tenant=alice", "bob-key", None).await;
    assert_eq!(ids(&bob_asks), [bob_id]);

    // Sessions: the same walls.
    let (status, session) = call(&s, "POST", "/api/v1/sessions", "alice-key", Some(json!({}))).await;
    assert_eq!(status, 201, "{session}");
    let sid = session["session_id"].as_str().unwrap().to_owned();
    assert_eq!(session["tenant"], "alice");
    let (status, call_result) =
        call(&s, "POST", &format!("/api/v1/sessions/{sid}/eval"), "alice-key", Some(json!({"code": "x = 1\nx"}))).await;
    assert_eq!((status, call_result["tenant"].as_str()), (200, Some("alice")), "{call_result}");
    for (method, path, body) in [
        ("GET", format!("/api/v1/sessions/{sid}"), None),
        ("POST", format!("/api/v1/sessions/{sid}/eval"), Some(json!({"code": "x"}))),
        ("GET", format!("/api/v1/sessions/{sid}/files"), None),
        ("DELETE", format!("/api/v1/sessions/{sid}"), None),
    ] {
        let (status, body) = call(&s, method, &path, "bob-key", body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (_, bob_sessions) = call(&s, "GET", "/api/v1/sessions", "bob-key", None).await;
    assert_eq!(bob_sessions["sessions"], json!([]));
    let call_id = call_result["execution_id"].as_str().unwrap();
    let (status, _) = call(&s, "GET", &format!("/api/v1/executions/{call_id}"), "bob-key", None).await;
    assert_eq!(status, 404, "a session's calls are its tenant's");
    let (status, _) = call(&s, "DELETE", &format!("/api/v1/sessions/{sid}"), "ops-key", None).await;
    assert_eq!(status, 200, "an admin may end anyone's session");

    let (status, _) = call(&s, "GET", "/api/v1/executions", "nobody-key", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn quotas_answer_429_with_retry_after() {
    if skip("quotas_answer_429_with_retry_after") {
        return;
    }
    let s = Server::start_with(&[
        ("PYEXEC_API_KEYS", KEYS),
        ("PYEXEC_TENANT_REQUESTS_PER_MINUTE", "5"),
        ("PYEXEC_TENANT_MAX_SESSIONS", "1"),
    ])
    .await;
    let (status, _) = call(&s, "POST", "/api/v1/sessions", "alice-key", Some(json!({}))).await;
    assert_eq!(status, 201);
    let second = s.post("/api/v1/sessions").bearer_auth("alice-key").json(&json!({})).send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    assert!(second.text().await.unwrap().contains("PYEXEC_TENANT_MAX_SESSIONS"));
    // Bob has a session quota of his own.
    let (status, _) = call(&s, "POST", "/api/v1/sessions", "bob-key", Some(json!({}))).await;
    assert_eq!(status, 201);

    // Alice has used 2 of her 5 requests this minute.
    for _ in 0..3 {
        assert_eq!(call(&s, "GET", "/api/v1/executions", "alice-key", None).await.0, 200);
    }
    let over = s.get("/api/v1/executions").bearer_auth("alice-key").send().await.unwrap();
    assert_eq!(over.status(), 429);
    let wait: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(call(&s, "GET", "/api/v1/executions", "bob-key", None).await.0, 200, "bob is not slowed by alice");
    let metrics = s.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pyexec_requests_rate_limited_total{tenant=\"alice\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_retried_request_with_the_same_idempotency_key_runs_once() {
    if skip("a_retried_request_with_the_same_idempotency_key_runs_once") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_API_KEYS", KEYS)]).await;
    // Each run appends to a file no run can see across executions; the count of executions is what is checked.
    let body = json!({"code": "import uuid\nprint(uuid.uuid4())"});
    let send = |key: &'static str, idem: &'static str, body: Value| {
        let request = s.post("/api/v1/eval").bearer_auth(key).header("Idempotency-Key", idem).json(&body);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, first) = send("alice-key", "retry-1", body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = send("alice-key", "retry-1", body.clone()).await;
    assert_eq!(again["execution_id"], first["execution_id"], "the same execution");
    assert_eq!(again["stdout"], first["stdout"], "not run again");
    // The same key from another tenant is another key.
    let (_, bobs) = send("bob-key", "retry-1", body.clone()).await;
    assert_ne!(bobs["execution_id"], first["execution_id"]);
    // The same key with another request is refused.
    let (status, other) = send("alice-key", "retry-1", json!({"code": "print(2)"})).await;
    assert_eq!(status, 422, "{other}");
    assert!(other["error"].as_str().unwrap().contains("Idempotency-Key"), "{other}");
    let (status, _) = send("alice-key", "has space", body.clone()).await;
    assert_eq!(status, 400);

    // Async: the same id, once; concurrent retries too.
    let metadata = json!({"entrypoint": "main.py"});
    let form = || {
        reqwest::multipart::Form::new()
            .part(
                "tar",
                reqwest::multipart::Part::bytes(tar_of(&[("main.py", b"print('async')\n")])).file_name("c.tar"),
            )
            .part("metadata", reqwest::multipart::Part::text(metadata.to_string()))
    };
    let submit =
        || s.post("/api/v1/exec/async").bearer_auth("alice-key").header("Idempotency-Key", "async-1").multipart(form());
    let (a, b) = tokio::join!(submit().send(), submit().send());
    let (code_a, a) = json_of(a.unwrap()).await;
    let (code_b, b) = json_of(b.unwrap()).await;
    assert_eq!((code_a, code_b), (202, 202), "{a} {b}");
    assert_eq!(a["execution_id"], b["execution_id"], "concurrent retries get one execution");
    let (_, listed) = call(&s, "GET", "/api/v1/executions", "alice-key", None).await;
    let runs = listed["executions"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "one /eval and one /exec/async: {listed}");
}

#[tokio::test]
async fn a_retried_session_start_with_the_same_idempotency_key_starts_one_session() {
    if skip("a_retried_session_start_with_the_same_idempotency_key_starts_one_session") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_API_KEYS", KEYS), ("PYEXEC_TENANT_MAX_SESSIONS", "1")]).await;
    let start = |key: &'static str, idem: &'static str, body: Value| {
        let request = s.post("/api/v1/sessions").bearer_auth(key).header("Idempotency-Key", idem).json(&body);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let settings = json!({"env_vars": ["A=1"]});
    let (status, first) = start("alice-key", "start-1", settings.clone()).await;
    assert_eq!(status, 201, "{first}");
    // The retry is answered with the session, not refused by the quota of one live session it fills itself.
    let (status, again) = start("alice-key", "start-1", settings.clone()).await;
    assert_eq!((status, &again["session_id"]), (201, &first["session_id"]), "{again}");
    let (_, listed) = call(&s, "GET", "/api/v1/sessions", "alice-key", None).await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
    let (status, other) = start("alice-key", "start-1", json!({"env_vars": ["A=2"]})).await;
    assert_eq!(status, 422, "other settings under the key: {other}");
    // Another tenant's key of the same text is its own.
    let (status, bobs) = start("bob-key", "start-1", settings.clone()).await;
    assert_eq!(status, 201, "{bobs}");
    assert_ne!(bobs["session_id"], first["session_id"]);
    // The key names the session while it lives: once deleted, the same key starts a new one.
    let sid = first["session_id"].as_str().unwrap();
    assert_eq!(call(&s, "DELETE", &format!("/api/v1/sessions/{sid}"), "alice-key", None).await.0, 200);
    let (status, fresh) = start("alice-key", "start-1", settings).await;
    assert_eq!(status, 201, "{fresh}");
    assert_ne!(fresh["session_id"], first["session_id"]);
}

#[tokio::test]
async fn a_retried_session_call_with_the_same_idempotency_key_runs_the_cell_once() {
    if skip("a_retried_session_call_with_the_same_idempotency_key_runs_the_cell_once") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_API_KEYS", KEYS)]).await;
    let (status, session) = call(&s, "POST", "/api/v1/sessions", "alice-key", Some(json!({}))).await;
    assert_eq!(status, 201, "{session}");
    let path = format!("/api/v1/sessions/{}/eval", session["session_id"].as_str().unwrap());
    // The cell counts its own runs in the session's state: a second run would answer 2.
    let cell = json!({"code": "n = globals().get('n', 0) + 1\nn"});
    let send = |idem: Option<&'static str>, body: Value| {
        let mut request = s.post(&path).bearer_auth("alice-key").json(&body);
        if let Some(idem) = idem {
            request = request.header("Idempotency-Key", idem);
        }
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, first) = send(Some("cell-1"), cell.clone()).await;
    assert_eq!((status, first["result"].as_str()), (200, Some("1")), "{first}");
    let (status, again) = send(Some("cell-1"), cell.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["execution_id"], first["execution_id"], "the first call's record");
    assert_eq!(again["result"], first["result"], "not run again");
    let (status, other) = send(Some("cell-1"), json!({"code": "n"})).await;
    assert_eq!(status, 422, "another call under the key: {other}");
    let (_, unkeyed) = send(None, json!({"code": "n"})).await;
    assert_eq!(unkeyed["result"].as_str(), Some("1"), "the cell ran once in all: {unkeyed}");
}

/// One tool call over MCP's streamable HTTP as the holder of `key`: initialize, initialized, tools/call; the call's
/// result (from the JSON answer or the server-sent event that carries it).
async fn mcp_call(s: &Server, key: &str, tool: &str, arguments: Value) -> Value {
    let post = |body: Value, session: Option<String>| {
        let mut request = s
            .post("/mcp")
            .bearer_auth(key)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .json(&body);
        if let Some(session) = session {
            request = request.header("Mcp-Session-Id", session);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26",
                      "capabilities": {}, "clientInfo": {"name": "tenants-test", "version": "1"}}});
    let r = post(init, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    r.text().await.unwrap();
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), session.clone()).await.unwrap();
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
    let text = post(call, session).await.unwrap().text().await.unwrap();
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.contains("\"id\":2"))
        .unwrap_or(text.as_str())
        .to_owned();
    serde_json::from_str::<Value>(&json).unwrap()["result"].clone()
}

#[tokio::test]
async fn mcp_tools_run_as_the_tenant_of_the_key_they_were_called_with() {
    if skip("mcp_tools_run_as_the_tenant_of_the_key_they_were_called_with") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_API_KEYS", KEYS)]).await;
    let ran = mcp_call(&s, "alice-key", "submit_python", json!({"code": "print('mcp')"})).await;
    let id = ran["structuredContent"]["execution_id"].as_str().unwrap().to_owned();
    let (status, run) = call(&s, "GET", &format!("/api/v1/executions/{id}"), "alice-key", None).await;
    assert_eq!((status, run["tenant"].as_str()), (200, Some("alice")), "{run}");
    let seen_by_bob = mcp_call(&s, "bob-key", "get_execution", json!({"execution_id": id})).await;
    assert_eq!(seen_by_bob["isError"], true, "{seen_by_bob}");
    assert!(seen_by_bob.to_string().contains("no execution"), "{seen_by_bob}");
    let killed_by_bob = mcp_call(&s, "bob-key", "kill_execution", json!({"execution_id": id})).await;
    assert_eq!(killed_by_bob["isError"], true, "{killed_by_bob}");
    let seen_by_alice = mcp_call(&s, "alice-key", "get_execution", json!({"execution_id": id})).await;
    assert_ne!(seen_by_alice["isError"], true, "{seen_by_alice}");
}
