//! Running an execution for a synchronous request: submit, wait, and kill the run if the client goes away. Every
//! submission passes [`submit_with_stdin`], which also starts the completion webhook a request asked for.

use std::sync::Arc;

use axum::Json;
use pyexec_core::{ExecutionResult, ExecutionSpec};

use crate::backend::{Backend, BackendError, KillReason, Source, StdinFile};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::{self, Target};

/// Kills the execution if the request future is dropped before the result is in (the client disconnected).
struct KillOnDrop {
    backend: Arc<dyn Backend>,
    id: Option<String>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let backend = self.backend.clone();
            tracing::info!(execution_id = %id, "client disconnected; killing its execution");
            tokio::spawn(async move {
                if let Err(e) = backend.kill(&id, KillReason::ClientGone).await {
                    tracing::warn!(execution_id = %id, error = %e, "could not kill an abandoned execution");
                }
            });
        }
    }
}

/// Submits and waits; the answer is the final result, whatever the program did (status `failed` is a 200 too).
pub async fn run(state: &AppState, spec: ExecutionSpec, source: Source) -> Result<Json<ExecutionResult>, ApiError> {
    run_with_stdin(state, spec, source, None).await
}

/// [`run`], with a standard input spooled to a file.
pub async fn run_with_stdin(
    state: &AppState,
    spec: ExecutionSpec,
    source: Source,
    stdin: Option<StdinFile>,
) -> Result<Json<ExecutionResult>, ApiError> {
    let record = submit_with_stdin(state, spec, source, stdin).await?;
    let mut guard = KillOnDrop { backend: state.backend.clone(), id: Some(record.execution_id.clone()) };
    let result = state.backend.wait(&record.execution_id).await?;
    guard.id = None;
    result.map(Json).ok_or_else(|| ApiError::Internal("the execution's record vanished".into()))
}

/// Submits, counting refusals for the metrics.
pub async fn submit(state: &AppState, spec: ExecutionSpec, source: Source) -> Result<ExecutionResult, ApiError> {
    submit_with_stdin(state, spec, source, None).await
}

/// [`submit`], with a standard input spooled to a file.
pub async fn submit_with_stdin(
    state: &AppState,
    spec: ExecutionSpec,
    source: Source,
    stdin: Option<StdinFile>,
) -> Result<ExecutionResult, ApiError> {
    // A callback is set up before the submission, so that an execution is never accepted with one it cannot get.
    let callback = match callback_of(state, &spec) {
        Ok(callback) => callback,
        Err(e) => {
            // The backend owns an upload once it has it; refused before that, it is this request's to remove.
            if let Source::Directory(dir) = &source {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            return Err(e);
        }
    };
    let submitted = match stdin {
        Some(stdin) => state.backend.submit_with_stdin(spec, source, stdin).await,
        None => state.backend.submit(spec, source).await,
    };
    let record = submitted.map_err(|e| {
        if matches!(e, BackendError::QueueFull { .. }) {
            state.metrics.rejected();
        }
        ApiError::from(e)
    })?;
    if let Some((webhooks, target)) = callback {
        webhooks.deliver_when_done(state.backend.clone(), record.execution_id.clone(), target);
    }
    Ok(record)
}

/// The webhooks and target of the spec's callback, if it has one.
fn callback_of(state: &AppState, spec: &ExecutionSpec) -> Result<Option<(webhooks::Webhooks, Target)>, ApiError> {
    let Some(url) = spec.callback_url.as_deref() else { return Ok(None) };
    let target = Target::parse(url)
        .map_err(|e| ApiError::BadRequest(format!("invalid callback_url: it cannot be called: {e}")))?;
    // The policy takes callback URLs only on a server with a secret, whose state holds its webhooks.
    let webhooks = state.webhooks.clone().ok_or_else(|| {
        ApiError::BadRequest(
            "this server has no webhook secret (PYEXEC_WEBHOOK_SECRET_FILE), so it sends no callbacks: \
             callback_url cannot be used"
                .into(),
        )
    })?;
    Ok(Some((webhooks, target)))
}
