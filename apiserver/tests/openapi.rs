//! The OpenAPI document a real server serves at `/docs/openapi.json`, as a new user meets it in Swagger's "Try it
//! out":
//! - it passes `openapi-spec-validator` (OpenAPI 3.1 schema and rules: parameters, operation ids, responses). The
//!   validator comes from `target/k8s-venv`, where the test command installs it; without it the test says
//!   SKIPPED loudly, and fails when `PYEXEC_REQUIRE_OPENAPI_VALIDATOR=1` (set by the test command);
//! - the rules Swagger relies on, checked here without Python: declared path parameters match the template,
//!   query strings are not declared as path parameters, every response has a description, every JSON or form
//!   body has an example (otherwise Swagger makes one up from the schema, with values such as
//!   `"python_version": "string"` that the server refuses);
//! - every operation, sent with the document's examples and defaults as they are, is accepted (no 4xx) by a real
//!   server on 127.0.0.1, and the runs they start succeed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pyexec_testkit::*;
use serde_json::{Value, json};
use utoipa::OpenApi;

/// Set to `1` by the test command: a missing validator fails the test instead of skipping it.
const REQUIRE_VALIDATOR: &str = "PYEXEC_REQUIRE_OPENAPI_VALIDATOR";

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn served_document(s: &Server) -> Value {
    let r = s.get("/docs/openapi.json").send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every operation: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// `#/components/schemas/X` resolved, other schemas as they are.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

/// The example of a media type (its own, its first named one, or its schema's), as Swagger would show it.
fn media_example(doc: &Value, media: &Value) -> Option<Value> {
    if let Some(example) = media.get("example") {
        return Some(example.clone());
    }
    if let Some(first) = media["examples"].as_object().and_then(|e| e.values().next()) {
        return Some(first["value"].clone());
    }
    let schema = resolve(doc, &media["schema"]);
    schema.get("example").cloned().or_else(|| schema["examples"].get(0).cloned())
}

#[test]
fn the_document_follows_the_rules_swagger_relies_on() {
    let doc = serde_json::to_value(pyexec_apiserver::routes::ApiDoc::openapi()).unwrap();
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        match op["operationId"].as_str() {
            Some(id) if !ids.insert(id.to_owned()) => problems.push(format!("{at}: operationId {id} is not unique")),
            Some(_) => {}
            None => problems.push(format!("{at}: no operationId")),
        }
        let template: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<&str> =
            params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
        if declared != template {
            problems.push(format!("{at}: path parameters {declared:?}, template {template:?}"));
        }
        for p in &params {
            if p["in"] == "path" && p["required"] != true {
                problems.push(format!("{at}: path parameter {} is not required", p["name"]));
            }
            if p["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{at}: parameter {} has no description", p["name"]));
            }
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            if response["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{at}: response {status} has no description"));
            }
        }
        for (media_type, media) in op["requestBody"]["content"].as_object().into_iter().flatten() {
            let example = media_example(&doc, media);
            if media_type == "application/json" && example.is_none() {
                problems.push(format!("{at}: the {media_type} body has no example"));
            }
            if media_type == "multipart/form-data" {
                let schema = resolve(&doc, &media["schema"]);
                for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                    if property["format"] != "binary" && property.get("example").is_none() {
                        problems.push(format!("{at}: form field {name} has no example"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "the OpenAPI document:\n{}", problems.join("\n"));
}

/// The validator's interpreter, or `None` (after a loud note) when it is not installed.
fn validator() -> Option<PathBuf> {
    let python = root().join("target/k8s-venv/bin/python");
    let installed =
        Command::new(&python).args(["-c", "import openapi_spec_validator"]).output().is_ok_and(|o| o.status.success());
    if installed {
        return Some(python);
    }
    skip(
        REQUIRE_VALIDATOR,
        "the_served_document_passes_openapi_spec_validator",
        "openapi-spec-validator is not installed in target/k8s-venv (scripts/test.sh installs it)",
    );
    None
}

#[tokio::test]
async fn the_served_document_passes_openapi_spec_validator() {
    let Some(python) = validator() else { return };
    let s = Server::start().await;
    let doc = served_document(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = Command::new(python)
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all", "--schema", "3.1"])
        .arg(&file)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.contains("OK"), "openapi-spec-validator refuses the document:\n{report}");
}

/// What the test puts where the document has nothing to send: ids of things that must exist, a file, a project.
struct Fixtures {
    execution_id: String,
    /// A file `execution_id` left in `/work`.
    execution_file: String,
    session_id: Option<String>,
    /// The file the upload operation writes into the session (and the download then reads).
    session_file: String,
}

/// The project sent as the form's file part: the `main.py` the form's example metadata runs.
fn project_tar() -> Vec<u8> {
    tar_of(&[("main.py", b"import os, sys\nprint('args', sys.argv[1:], os.environ.get('GREETING'))\n".as_slice())])
}

/// The request for one operation: the document's examples and defaults, and the fixtures in the path.
fn request(s: &Server, doc: &Value, method: &str, path: &str, op: &Value, f: &Fixtures) -> reqwest::RequestBuilder {
    let mut url = path.to_owned();
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap();
        if p["in"] == "path" {
            let value = match (name, path.starts_with("/api/v1/sessions")) {
                ("id", true) => f.session_id.clone().unwrap(),
                ("id", false) => f.execution_id.clone(),
                ("path", true) => f.session_file.clone(),
                ("path", false) => f.execution_file.clone(),
                _ => panic!("{path}: no fixture for path parameter {name}"),
            };
            // Encoded as Swagger encodes it (`encodeURIComponent`): a file path's slashes become `%2F`.
            url = url.replace(&format!("{{{name}}}"), &value.replace('/', "%2F"));
            continue;
        }
        let schema = resolve(doc, &p["schema"]);
        let value = p.get("example").or_else(|| schema.get("default")).or_else(|| schema.get("example"));
        match value {
            Some(Value::String(v)) => query.push((name.to_owned(), v.clone())),
            Some(v) => query.push((name.to_owned(), v.to_string())),
            None => assert!(p["required"] != true, "{path}: required parameter {name} has no example"),
        }
    }
    let mut builder = s.client.request(method.to_uppercase().parse().unwrap(), format!("{}{url}", s.url));
    if !query.is_empty() {
        builder = builder.query(&query);
    }
    let Some((media_type, media)) = op["requestBody"]["content"].as_object().and_then(|c| c.iter().next()) else {
        return builder;
    };
    builder = match media_type.as_str() {
        "application/json" => {
            let example = media_example(doc, media).unwrap_or_else(|| panic!("{path}: no example body"));
            builder.json(&example)
        }
        "multipart/form-data" => {
            let mut form = reqwest::multipart::Form::new();
            let schema = resolve(doc, &media["schema"]);
            for (name, property) in schema["properties"].as_object().unwrap() {
                form = if property["format"] == "binary" {
                    let part = reqwest::multipart::Part::bytes(project_tar()).file_name("project.tar");
                    form.part(name.clone(), part)
                } else {
                    form.text(name.clone(), property["example"].as_str().unwrap().to_owned())
                };
            }
            builder.multipart(form)
        }
        "application/octet-stream" => builder
            .header("content-type", "application/octet-stream")
            .body(media_example(doc, media).map_or_else(|| "a,b\n1,2\n".to_owned(), |e| e.to_string())),
        other => panic!("{path}: no way to send a {other} body"),
    };
    builder
}

/// Sessions are created first (their id is needed by the others), files uploaded before they are read, and
/// deletions come last.
fn order(method: &str, path: &str) -> u8 {
    match method {
        "post" if path == "/api/v1/sessions" => 0,
        "put" => 1,
        "delete" => 3,
        _ => 2,
    }
}

#[tokio::test]
async fn every_operation_answers_its_examples_without_a_client_error() {
    let s = Server::start().await;
    let doc = served_document(&s).await;
    let (code, run) = s
        .eval(json!({"code": "import pathlib\npathlib.Path('report.txt').write_text('fixture')\n", "eval_last_expr": false}))
        .await;
    assert_eq!((code, run["status"].as_str()), (200, Some("completed")), "{run}");
    let mut fixtures = Fixtures {
        execution_id: run["execution_id"].as_str().unwrap().to_owned(),
        execution_file: "report.txt".into(),
        session_id: None,
        session_file: "data/notes.csv".into(),
    };
    let mut ops = operations(&doc);
    ops.sort_by_key(|(method, path, _)| order(method, path));
    let mut refused = Vec::new();
    for (method, path, op) in &ops {
        let at = format!("{} {path}", method.to_uppercase());
        let response = request(&s, &doc, method, path, op, &fixtures).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if status >= 400 {
            // The other session operations need the session.
            assert!(!(method == "post" && path == "/api/v1/sessions"), "{at}: {status} {text}");
            refused.push(format!("{at}: {status} {text}"));
            continue;
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (method.as_str(), path.as_str()) {
            ("post", "/api/v1/sessions") => fixtures.session_id = body["session_id"].as_str().map(str::to_owned),
            // The examples that run code must run it successfully, not only be accepted.
            ("post", "/api/v1/eval" | "/api/v1/exec/sync" | "/api/v1/sessions/{id}/eval") => {
                assert_eq!(body["status"], "completed", "{at}: {body}");
            }
            ("post", "/api/v1/exec/async") => {
                let done = s.wait_terminal(body["execution_id"].as_str().unwrap()).await;
                assert_eq!(done["status"], "completed", "{at}: {done}");
            }
            ("post", "/api/v1/tools/run_python") => assert_eq!(body["is_error"], false, "{at}: {body}"),
            _ => {}
        }
        eprintln!("{at}: {status}");
    }
    assert!(refused.is_empty(), "operations sent as documented were refused:\n{}", refused.join("\n"));
}
