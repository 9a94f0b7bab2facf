//! `/docs`: the OpenAPI 3.1 document generated from the handlers, and the Swagger UI (vendored: works offline).

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "python-executor API",
        description = "Run untrusted Python in sandboxes. Wire-compatible with the original python-executor; \
                       see docs/api.md for where it deliberately differs.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::eval::eval,
        super::eval::eval_async,
        super::exec::exec_sync,
        super::exec::exec_async,
        super::executions::get,
        super::executions::kill,
        super::executions::list,
        super::executions::events,
        super::files::execution_list,
        super::files::execution_file,
        super::sessions::create,
        super::sessions::list,
        super::sessions::get,
        super::sessions::delete,
        super::sessions::eval,
        super::files::session_list,
        super::files::session_file,
        super::files::session_upload,
        super::health::health,
        super::health::metrics,
        super::whoami::whoami,
        crate::mcp::tools,
        crate::mcp::call_run_python,
    ),
    components(schemas(
        pyexec_core::ExecutionResult,
        pyexec_core::ExecutionStatus,
        pyexec_core::ExecutionConfig,
        pyexec_core::Metadata,
        pyexec_core::EvalRequest,
        pyexec_core::CodeFile,
        pyexec_core::AsyncResponse,
        pyexec_core::KillResponse,
        pyexec_core::ErrorResponse,
        pyexec_core::ExecutionPage,
        pyexec_core::model::DisplayOutput,
        pyexec_core::model::OutputFile,
        pyexec_core::session::NewSession,
        pyexec_core::session::SessionConfig,
        pyexec_core::session::SessionInfo,
        pyexec_core::session::SessionState,
        pyexec_core::session::SessionList,
        pyexec_core::session::FileList,
        super::whoami::Identity,
        super::whoami::QuotaView,
    )),
    modifiers(&BearerAuth, &RunPythonExample),
    tags(
        (name = "executions", description = "Run code and follow executions"),
        (name = "sessions", description = "Interpreters that keep their state between calls (docs/sessions.md)"),
        (name = "files", description = "Files runs leave in /work, and a session's files"),
        (name = "service", description = "Health and metrics"),
        (name = "agents", description = "Tool definitions for LLM agents (the MCP server itself is at /mcp)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API key, when the server requires one (PYEXEC_API_KEYS)"))
                    .build(),
            ),
        );
    }
}

/// `POST /api/v1/tools/run_python` takes the tool's own arguments (`pyexec_mcp::RunPython`, which has a JSON
/// Schema for the models but no OpenAPI schema), so its body is documented as a free-form object; without an
/// example, Swagger's "Try it out" would send `{}`, a call without code.
struct RunPythonExample;

impl utoipa::Modify for RunPythonExample {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        let body = openapi
            .paths
            .paths
            .get_mut("/api/v1/tools/run_python")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut());
        let Some(RefOr::T(body)) = body else { return };
        for content in body.content.values_mut() {
            if let RefOr::T(content) = content {
                content.example = Some(serde_json::json!({"code": "import sys\nprint(sys.version_info[:2], 6 * 7)"}));
            }
        }
    }
}

/// Routes of the UI and the document (`/docs/openapi.json`, and `/docs/doc.json` for old links).
pub fn router() -> Router<AppState> {
    let doc = ApiDoc::openapi();
    let legacy = doc.clone();
    Router::new()
        .route("/docs/doc.json", get(move || async move { Json(legacy) }))
        .merge(SwaggerUi::new("/docs").url("/docs/openapi.json", doc))
}

/// The API reference (`docs/api-reference.md`) rendered from the OpenAPI document, so it cannot drift from the
/// handlers (a test compares it with the committed file).
pub fn markdown_reference() -> String {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the OpenAPI document the server serves at `/docs/openapi.json` \
         (`UPDATE_DOCS=1 cargo test -p pyexec-apiserver --test api_reference` rewrites this file; a test fails when it \
         is stale). The guide, with examples and the differences from the original, is [api.md](api.md).\n",
    );
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for method in ["get", "post", "put", "delete"] {
            let op = &item[method];
            if op.is_null() {
                continue;
            }
            out.push_str(&format!("\n## `{} {path}`\n\n", method.to_uppercase()));
            if let Some(summary) = op["summary"].as_str() {
                out.push_str(&format!("{}\n\n", summary.replace('\n', " ")));
            }
            if let Some(description) = op["description"].as_str() {
                out.push_str(&format!("{}\n\n", description.replace('\n', " ")));
            }
            let auth = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if auth {
                out.push_str("Authentication: `Authorization: Bearer <key>` when the server has API keys.\n\n");
            }
            if let Some(params) = op["parameters"].as_array() {
                out.push_str("| parameter | in | required | type | description |\n|---|---|---|---|---|\n");
                for p in params {
                    out.push_str(&format!(
                        "| `{}` | {} | {} | {} | {} |\n",
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                        if p["required"].as_bool() == Some(true) { "yes" } else { "no" },
                        type_name(&p["schema"]),
                        p["description"].as_str().unwrap_or("").replace('\n', " ")
                    ));
                }
                out.push('\n');
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media, body) in content {
                    out.push_str(&format!("Request body (`{media}`): {}\n\n", type_name(&body["schema"])));
                    // The example Swagger's "Try it out" sends (a test sends each to a real server).
                    if let Some(example) = body.get("example").and_then(|e| serde_json::to_string_pretty(e).ok()) {
                        out.push_str(&format!("Example:\n\n```json\n{example}\n```\n\n"));
                    }
                }
            }
            out.push_str("| status | meaning | body |\n|---|---|---|\n");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let body = response["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .map(|m| type_name(&m["schema"]))
                    .unwrap_or_default();
                let meaning = response["description"].as_str().unwrap_or("").replace('\n', " ");
                out.push_str(&format!("| {status} | {meaning} | {body} |\n"));
            }
        }
    }
    out.push_str("\n## Schemas\n");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        out.push_str(&format!("\n### {name}\n\n"));
        if let Some(description) = schema["description"].as_str() {
            out.push_str(&format!("{}\n\n", description.replace('\n', " ")));
        }
        if let Some(values) = schema["enum"].as_array() {
            let names: Vec<String> = values.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect();
            out.push_str(&format!("One of {}.\n", names.join(", ")));
            continue;
        }
        let required: Vec<&str> =
            schema["required"].as_array().map(|r| r.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
        for (field, spec) in schema["properties"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "| `{field}` | {} | {} | {} |\n",
                type_name(spec),
                if required.contains(&field.as_str()) { "yes" } else { "no" },
                spec["description"].as_str().unwrap_or("").replace('\n', " ").replace('|', "\\|")
            ));
        }
    }
    out
}

/// A short name of a schema: its reference, its type, or the types it may be.
fn type_name(schema: &serde_json::Value) -> String {
    // A media type without a schema (file bytes, a tar) takes any body.
    if schema.is_null() {
        return "raw bytes".into();
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(options) = schema["oneOf"].as_array().or_else(|| schema["anyOf"].as_array()) {
        let names: Vec<String> = options.iter().map(type_name).filter(|n| n != "null").collect::<Vec<_>>();
        return names.join(" or ");
    }
    match &schema["type"] {
        serde_json::Value::String(t) if t == "array" => format!("list of {}", type_name(&schema["items"])),
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(types) => {
            types.iter().filter_map(|t| t.as_str()).filter(|t| *t != "null").collect::<Vec<_>>().join(" or ")
        }
        _ => "object".into(),
    }
}
