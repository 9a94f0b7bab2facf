//! `POST /api/v1/eval`: JSON in, result out; `POST /api/v1/eval/async`: the same body, queued, its id out.
//!
//! The body is read into one buffer and parsed from it. `code`, file contents and `stdin` are taken as raw JSON
//! text first: code is decoded only once its size is known to be within the limit, and a large `stdin` is
//! decoded straight into a file (see [`upload::take_stdin`]); the buffer is dropped before the execution is
//! queued. Parsing runs on a blocking thread.

use axum::Json;
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use pyexec_core::{
    AsyncResponse, CodeFile, ErrorResponse, EvalRequest, ExecutionConfig, ExecutionResult, ExecutionSpec, Policy,
    PythonVersion,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backend::{Source, StdinFile};
use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;
use crate::tenants::Caller;
use crate::upload::{self, InputError};

/// Runs code (or a few files) and waits for the result. With `eval_last_expr`, the value of a trailing
/// expression is returned in `result`.
#[utoipa::path(
    post,
    path = "/api/v1/eval",
    operation_id = "eval",
    tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key (1 to 255 printable ASCII characters) with the same request returns the first request's execution instead of running again; with another request, 422 (docs/api.md, Retries)")),
    // Without an example, Swagger's "Try it out" fills every field with a placeholder (`"python_version":
    // "string"`), which the server refuses; this one runs anywhere (no imports, no network, default interpreter).
    request_body(
        content = EvalRequest,
        description = "Code to run. The Content-Type header is not checked.",
        example = json!({
            "code": "print('hello from python-executor')\n6 * 7",
            "eval_last_expr": true,
            "config": {"timeout_seconds": 30}
        })
    ),
    responses(
        (status = 200, description = "The execution ended (any status: a timeout is `failed`)", body = ExecutionResult),
        (status = 400, description = "Invalid JSON or request", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 413, description = "More than 102400 bytes of code, files over their own limit, or body over the upload limit", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorResponse),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn eval(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Json<ExecutionResult>, ApiError> {
    let key = idempotency::key_of(request.headers(), caller.0.name.as_deref())?;
    let (spec, files, stdin) = receive(&state, &caller, request).await?;
    idempotency::run(&state, key, spec, Source::Files(files), stdin).await
}

/// *(ours)* Queues the `/eval` body and returns its id at once: follow its output live with
/// `GET /api/v1/executions/{id}/events`, or poll `GET /api/v1/executions/{id}`. Everything `/eval` does applies
/// (detected imports, `eval_last_expr`, display `outputs`, files kept).
#[utoipa::path(
    post,
    path = "/api/v1/eval/async",
    operation_id = "eval_async",
    tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key with the same request returns the first request's execution id instead of queueing again; with another request, 422 (docs/api.md, Retries)")),
    request_body(
        content = EvalRequest,
        description = "The `/api/v1/eval` body.",
        example = json!({
            "code": "import time\nfor i in range(3):\n    print('step', i, flush=True)\n    time.sleep(1)",
            "config": {"timeout_seconds": 30}
        })
    ),
    responses(
        (status = 202, description = "Queued", body = AsyncResponse),
        (status = 400, description = "Invalid JSON or request", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 413, description = "More than 102400 bytes of code, files over their own limit, or body over the upload limit", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorResponse),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn eval_async(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<(StatusCode, Json<AsyncResponse>), ApiError> {
    let key = idempotency::key_of(request.headers(), caller.0.name.as_deref())?;
    let (spec, files, stdin) = receive(&state, &caller, request).await?;
    let execution_id = idempotency::submit(&state, key, spec, Source::Files(files), stdin).await?;
    Ok((StatusCode::ACCEPTED, Json(AsyncResponse { execution_id })))
}

/// Reads and validates the body (parsing on a blocking thread) into the caller's spec, its files and stdin.
async fn receive(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<(ExecutionSpec, Vec<CodeFile>, Option<StdinFile>), ApiError> {
    let body = upload::read_body(request, state.upload_limit_mb).await?;
    let (mut spec, files, stdin) = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || prepare(&state, body))
            .await
            .map_err(|e| ApiError::Internal(format!("parsing task failed: {e}")))??
    };
    spec.tenant = caller.0.name.clone();
    Ok((spec, files, stdin))
}

/// The body as [`EvalRequest`], with the texts that may be large kept raw (borrowed from the body).
#[derive(Default, Deserialize)]
struct EvalFields<'a> {
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
    #[serde(borrow, default)]
    files: Option<Vec<RawFile<'a>>>,
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(borrow, default)]
    stdin: Option<&'a RawValue>,
    #[serde(default)]
    config: Option<ExecutionConfig>,
    #[serde(default)]
    python_version: Option<String>,
    #[serde(default)]
    eval_last_expr: Option<bool>,
    #[serde(default)]
    requirements_txt: Option<String>,
    #[serde(default)]
    callback_url: Option<String>,
}

#[derive(Deserialize)]
struct RawFile<'a> {
    name: String,
    #[serde(borrow)]
    content: &'a RawValue,
}

fn invalid_json(message: String) -> ApiError {
    ApiError::BadRequest(format!("invalid JSON: {message}"))
}

fn json_error(e: InputError) -> ApiError {
    e.into_api_error(invalid_json)
}

/// Validates the body into a spec, its files and its spooled stdin; the body is gone when this returns.
fn prepare(state: &AppState, body: Vec<u8>) -> Result<(ExecutionSpec, Vec<CodeFile>, Option<StdinFile>), ApiError> {
    let fields = parse(&body)?;
    pyexec_core::placement::check(&body, pyexec_core::placement::Body::Eval)?;
    let request = decode_code(&fields, &state.policy)?;
    // A stdin of the wrong type is a JSON error, which comes before any rule.
    if let Some(stdin) = fields.stdin.filter(|r| r.get() != "null") {
        upload::expect_string(stdin).map_err(json_error)?;
    }
    let (mut spec, files) = state.policy.spec_from_eval(request)?;
    state.backend.check(&spec)?;
    let (stdin, file) = upload::take_stdin(fields.stdin, state.backend.staging_dir()).map_err(json_error)?;
    spec.stdin = stdin.filter(|s| !s.is_empty());
    Ok((spec, files, file))
}

/// The body as the original read it: any Content-Type, `null` meaning `{}`, errors prefixed `invalid JSON:`.
fn parse(body: &[u8]) -> Result<EvalFields<'_>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("invalid JSON: EOF".into()));
    }
    serde_json::from_slice::<Option<EvalFields<'_>>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| invalid_json(e.to_string()))
}

/// The request without stdin, its code decoded. Code over the size limit is refused from its decoded length,
/// without decoding it, with the answer [`pyexec_core::Policy::spec_from_eval`] gives: after the checks that
/// come before the size in the original (presence, which a non-empty code passes, and `python_version`).
fn decode_code(fields: &EvalFields<'_>, policy: &Policy) -> Result<EvalRequest, ApiError> {
    let size = |raw: &RawValue| -> Result<u64, ApiError> {
        upload::expect_string(raw).map_err(json_error)?;
        upload::decode_json_string(raw.get(), &mut std::io::sink()).map_err(json_error)
    };
    let code = fields.code.filter(|r| r.get() != "null");
    let mut sizes = Vec::new();
    if let Some(files) = fields.files.as_ref().filter(|f| !f.is_empty()) {
        for file in files {
            sizes.push((file.name.as_str(), size(file.content)?));
        }
    } else if let Some(code) = code {
        sizes.push(("main.py", size(code)?));
    }
    if let Err(too_large) = policy.check_eval_sizes(&sizes, fields.entrypoint.as_deref()) {
        if let Some(v) = fields.python_version.as_deref().filter(|v| !v.is_empty()) {
            PythonVersion::parse_supported(v)?;
        }
        return Err(too_large.into());
    }
    let decode = |raw: &RawValue| upload::decode_string(raw).map_err(json_error);
    let files = match &fields.files {
        None => None,
        Some(files) => Some(
            files
                .iter()
                .map(|f| Ok(CodeFile { name: f.name.clone(), content: decode(f.content)? }))
                .collect::<Result<Vec<_>, ApiError>>()?,
        ),
    };
    Ok(EvalRequest {
        code: code.map(decode).transpose()?,
        files,
        entrypoint: fields.entrypoint.clone(),
        stdin: None,
        config: fields.config.clone(),
        python_version: fields.python_version.clone(),
        eval_last_expr: fields.eval_last_expr,
        requirements_txt: fields.requirements_txt.clone(),
        callback_url: fields.callback_url.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> Result<EvalRequest, ApiError> {
        decode_code(&parse(body.as_bytes())?, &Policy::default())
    }

    fn message(body: &str) -> String {
        match request(body) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_errors_say_invalid_json() {
        assert_eq!(message(""), "invalid JSON: EOF");
        assert!(message("not json").starts_with("invalid JSON: "));
        assert!(message(r#"{"code": 5}"#).starts_with("invalid JSON: invalid type: integer `5`, expected a string"));
        assert!(
            message(r#"{"files": [{"name": "a.py", "content": [1]}]}"#)
                .starts_with("invalid JSON: invalid type: sequence")
        );
        assert!(message(r#"{"code": "\udc00"}"#).contains("lone leading surrogate"));
        assert!(message(r#"{"code": "1", "python_version": 3}"#).starts_with("invalid JSON: invalid type: integer"));
        assert_eq!(request("null").unwrap(), EvalRequest::default());
    }

    /// Every field of the wire type is read, with the same meaning (apart from stdin, which is taken later).
    #[test]
    fn the_raw_form_reads_every_field_of_the_request() {
        let full = EvalRequest {
            code: Some("print('é\\n\"x\"')\n\u{1F600}".into()),
            files: Some(vec![CodeFile { name: "a.py".into(), content: "\t1".into() }]),
            entrypoint: Some("a.py".into()),
            stdin: None,
            config: Some(ExecutionConfig { timeout_seconds: Some(5), memory_mb: Some(64), ..Default::default() }),
            python_version: Some("3.12".into()),
            eval_last_expr: Some(true),
            requirements_txt: Some("numpy".into()),
            callback_url: Some("https://hooks.example.com/done".into()),
        };
        assert_eq!(request(&serde_json::to_string(&full).unwrap()).unwrap(), full);
        let empty = EvalRequest { code: Some(String::new()), files: Some(vec![]), ..Default::default() };
        assert_eq!(request(&serde_json::to_string(&empty).unwrap()).unwrap(), empty);
    }

    /// Oversized code is refused without being decoded, with the answer and the order of the core's rules.
    #[test]
    fn oversized_code_gets_the_answer_of_the_core_rules() {
        let policy = Policy::default();
        for body in [
            format!(r#"{{"code":"{}"}}"#, "x".repeat(102_401)),
            format!(r#"{{"code":"{}"}}"#, "\\n".repeat(102_401)),
            format!(r#"{{"code":"x","files":[{{"name":"a.py","content":"{}"}}]}}"#, "é".repeat(51_201)),
            format!(r#"{{"code":"{}","python_version":"2.7"}}"#, "x".repeat(102_401)),
        ] {
            let ours = match request(&body) {
                Err(ApiError::TooLarge(m) | ApiError::BadRequest(m)) => m,
                other => panic!("{other:?}"),
            };
            let core = policy.spec_from_eval(serde_json::from_str(&body).unwrap()).unwrap_err().message;
            assert_eq!(ours, core);
        }
        let exact = format!(r#"{{"code":"{}"}}"#, "x".repeat(102_400));
        assert_eq!(request(&exact).unwrap().code.map(|c| c.len()), Some(102_400));
    }
}
