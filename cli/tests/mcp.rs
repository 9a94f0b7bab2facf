//! The MCP server over both transports agents use, driven by the official Rust MCP client (`rmcp`) against a live
//! server: streamable HTTP at `/mcp` (behind the API keys) and stdio (`python-executor mcp`). Each runs
//! `initialize`, `tools/list` and `tools/call`: a result value, a failing program's structured error, a timeout, a
//! long run submitted, polled and killed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pyexec_testkit::Server;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

type Session = RunningService<RoleClient, ()>;

async fn call(session: &Session, tool: &'static str, arguments: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool).with_arguments(arguments.as_object().unwrap().clone());
    session.call_tool(params).await.unwrap()
}

fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

/// The checks every transport must pass.
async fn exercise(session: Session) {
    let info = session.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "python-executor");
    let tools = session.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names.len(), 9, "{names:?}");
    for name in [
        "run_python",
        "submit_python",
        "get_execution",
        "kill_execution",
        "create_session",
        "session_run_python",
        "close_session",
        "list_files",
        "get_file",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    for tool in &tools {
        let listed = pyexec_mcp::tools::mcp_tools().into_iter().find(|t| t.name == tool.name).unwrap();
        assert_eq!(tool.input_schema, listed.input_schema, "{}: the schema of the tool definitions", tool.name);
    }
    let run = tools.iter().find(|t| t.name == "run_python").unwrap();
    assert!(run.description.as_deref().unwrap().contains("no network access"), "written for models");
    assert_eq!(
        serde_json::Value::Object((*run.input_schema).clone()),
        pyexec_mcp::tools::run_python_schema(),
        "the same schema as /api/v1/tools"
    );

    let ok = call(&session, "run_python", json!({"code": "print('hello')\n6 * 7"})).await;
    assert_eq!(ok.is_error, Some(false), "{ok:?}");
    let value = ok.structured_content.clone().unwrap();
    assert_eq!(
        (value["status"].as_str(), value["result"].as_str(), value["stdout_bytes"].as_u64()),
        (Some("completed"), Some("42"), Some(5))
    );
    assert!(value.get("stdout").is_none(), "stdout is sent once, in the text");
    assert!(text(&ok).contains("result: 42") && text(&ok).contains("--- stdout ---\nhello\n"), "{}", text(&ok));

    let bad = call(&session, "run_python", json!({"code": "x = 1\ny = 0\nx / y"})).await;
    assert_eq!(bad.is_error, Some(true), "a failing program is a tool error the model sees");
    let error = bad.structured_content.clone().unwrap();
    assert_eq!((error["error_type"].as_str(), error["error_line"].as_i64()), (Some("ZeroDivisionError"), Some(3)));
    assert!(text(&bad).contains("exception: ZeroDivisionError at line 3: division by zero"), "{}", text(&bad));

    let slow = call(
        &session,
        "run_python",
        json!({"code": "import time\nprint('start', flush=True)\ntime.sleep(30)", "timeout_seconds": 1}),
    )
    .await;
    assert_eq!(slow.is_error, Some(true));
    let timeout = slow.structured_content.clone().unwrap();
    assert_eq!(
        (timeout["exit_code"].as_i64(), timeout["error"].as_str()),
        (Some(124), Some("execution timeout after 1s"))
    );
    assert!(text(&slow).contains("--- stdout ---\nstart\n"), "output before the timeout is kept: {}", text(&slow));

    let refused = call(&session, "run_python", json!({"code": "1", "python_version": "2.7"})).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("unsupported python_version"), "{}", text(&refused));

    let submitted = call(&session, "submit_python", json!({"code": "import time\ntime.sleep(60)"})).await;
    let id = submitted.structured_content.clone().unwrap()["execution_id"].as_str().unwrap().to_owned();
    let state = call(&session, "get_execution", json!({"execution_id": id})).await;
    assert!(matches!(state.structured_content.unwrap()["status"].as_str(), Some("pending" | "running")));
    let killed = call(&session, "kill_execution", json!({"execution_id": id})).await;
    assert_eq!(killed.structured_content.unwrap()["status"], "killed");
    let unknown =
        call(&session, "get_execution", json!({"execution_id": "exe_00000000-0000-4000-8000-000000000000"})).await;
    assert_eq!(unknown.is_error, Some(true));

    sessions_files_and_images(&session).await;
    let big = call(&session, "run_python", json!({"code": A_MEBIBYTE})).await;
    assert_cut(&big, 64 << 10);
    session.cancel().await.unwrap();
}

/// 1024 lines of 1024 bytes: 1 MiB of stdout, the server's whole output cap.
const A_MEBIBYTE: &str = "import sys\nfor n in range(1024):\n    sys.stdout.write(f'{n:04d} ' + 'x' * 1018 + '\\n')\n";

/// A run that printed A_MEBIBYTE came back with stdout once, within `budget` bytes, cut with a note.
fn assert_cut(answer: &CallToolResult, budget: usize) {
    assert_eq!(answer.is_error, Some(false), "{}", &text(answer)[..500]);
    let structured = answer.structured_content.clone().unwrap();
    assert_eq!((structured.get("stdout"), &structured["stdout_bytes"]), (None, &json!(1 << 20)));
    let text = text(answer);
    assert!(text.len() < budget + 2000, "{} bytes for a budget of {budget}", text.len());
    assert!(text.contains("\n0000 xxx") && text.contains("\n1023 xxx"), "the start and the end");
    let id = structured["execution_id"].as_str().unwrap();
    let note = format!("bytes of stdout left out here; the whole output is in GET /api/v1/executions/{id}");
    assert!(text.contains(&note), "{text}");
    assert_eq!(serde_json::to_string(answer).unwrap().matches("0000 xxx").count(), 1, "stdout is sent once");
}

/// The budget is the server's setting (`PYEXEC_MCP_MAX_STDOUT_BYTES`) at `/mcp`, and the `mcp` command's flag on
/// stdio.
#[tokio::test]
async fn the_output_budget_is_configurable() {
    let server = Server::start_with(&[("PYEXEC_MCP_MAX_STDOUT_BYTES", "4096")]).await;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.url));
    let session = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    assert_cut(&call(&session, "run_python", json!({"code": A_MEBIBYTE})).await, 4096);
    session.cancel().await.unwrap();

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_python-executor"));
    command.args(["mcp", "--max-stdout-bytes", "4096"]).env("PYEXEC_SERVER", &server.url);
    let session = tokio::time::timeout(Duration::from_secs(30), ().serve(TokioChildProcess::new(command).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_cut(&call(&session, "run_python", json!({"code": A_MEBIBYTE})).await, 4096);
    session.cancel().await.unwrap();
}

/// Shows a 1x1 PNG with `display` (no matplotlib needed).
const SHOW_PNG: &str = "import base64\n\
class Dot:\n    def _repr_png_(self):\n        return base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n\
display(Dot())\n";

fn images(result: &CallToolResult) -> Vec<(String, String)> {
    result.content.iter().filter_map(|c| c.as_image().map(|i| (i.mime_type.clone(), i.data.clone()))).collect()
}

/// Sessions, files and image outputs (docs/sessions.md) through MCP.
async fn sessions_files_and_images(session: &Session) {
    let plot = call(session, "run_python", json!({"code": SHOW_PNG})).await;
    assert_eq!(plot.is_error, Some(false), "{}", text(&plot));
    let shown = images(&plot);
    assert_eq!(shown.len(), 1, "the plot is image content: {:?}", plot.content);
    assert_eq!(shown[0].0, "image/png");
    assert!(shown[0].1.starts_with("iVBORw0KGgo"));

    let wrote = call(session, "run_python", json!({"code": "open('report.txt', 'w').write('total: 42\\n')"})).await;
    let id = wrote.structured_content.clone().unwrap()["execution_id"].as_str().unwrap().to_owned();
    let list = call(session, "list_files", json!({"execution_id": id})).await;
    assert_eq!(list.is_error, Some(false), "{}", text(&list));
    let files = list.structured_content.clone().unwrap();
    assert!(files["files"].as_array().unwrap().iter().any(|f| f["path"] == "report.txt"), "{files}");
    let file = call(session, "get_file", json!({"execution_id": id, "path": "report.txt"})).await;
    assert_eq!(text(&file), "total: 42\n");
    let hostile = call(session, "get_file", json!({"execution_id": id, "path": "../../etc/passwd"})).await;
    assert_eq!(hostile.is_error, Some(true));

    let created = call(session, "create_session", json!({"idle_timeout_seconds": 120})).await;
    assert_eq!(created.is_error, Some(false), "{}", text(&created));
    let sid = created.structured_content.clone().unwrap()["session_id"].as_str().unwrap().to_owned();
    let first = call(
        session,
        "session_run_python",
        json!({"session_id": sid, "code": "rows = open('data.csv').read().splitlines()",
               "files": [{"name": "data.csv", "content": "a\n1\n2\n"}]}),
    )
    .await;
    assert_eq!(first.is_error, Some(false), "{}", text(&first));
    let second = call(session, "session_run_python", json!({"session_id": sid, "code": "len(rows)"})).await;
    assert_eq!(second.structured_content.clone().unwrap()["result"], "3", "state is kept: {}", text(&second));
    let plot = call(session, "session_run_python", json!({"session_id": sid, "code": SHOW_PNG})).await;
    assert_eq!(images(&plot).len(), 1, "{:?}", plot.content);
    let list = call(session, "list_files", json!({"session_id": sid})).await;
    assert!(text(&list).contains("data.csv"), "{}", text(&list));
    let file = call(session, "get_file", json!({"session_id": sid, "path": "data.csv"})).await;
    assert_eq!(text(&file), "a\n1\n2\n");
    let closed = call(session, "close_session", json!({"session_id": sid})).await;
    assert_eq!(closed.structured_content.clone().unwrap()["state"], "ended");
    let gone = call(session, "session_run_python", json!({"session_id": sid, "code": "1"})).await;
    assert_eq!(gone.is_error, Some(true));
}

#[tokio::test]
async fn streamable_http_at_mcp_behind_the_api_keys() {
    let server = Server::start_with(&[("PYEXEC_API_KEYS", "agent-key")]).await;
    let url = format!("{}/mcp", server.url);
    let anonymous =
        ().serve(StreamableHttpClientTransport::from_config(StreamableHttpClientTransportConfig::with_uri(
            url.clone(),
        )))
        .await;
    assert!(anonymous.is_err(), "no key, no session");
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header("agent-key");
    let session = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    exercise(session).await;
}

#[tokio::test]
async fn stdio_through_the_cli() {
    let server = Server::start_with(&[("PYEXEC_API_KEYS", "agent-key")]).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_python-executor"));
    command.arg("mcp").env("PYEXEC_SERVER", &server.url).env("PYEXEC_API_KEY", "agent-key");
    let session = tokio::time::timeout(Duration::from_secs(30), ().serve(TokioChildProcess::new(command).unwrap()))
        .await
        .unwrap()
        .unwrap();
    exercise(session).await;
}
