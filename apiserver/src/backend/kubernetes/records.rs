//! The records of session calls (docs/kubernetes.md, "Sessions"): each call made in a `PythonSession` is also a
//! `PythonExecution` resource with `spec.sessionRef`, so that `GET /api/v1/executions/{id}`, the listing, `/events`
//! and `DELETE` know it as they know any execution, on every replica. The call runs in the session's Pod, not in a
//! Pod of its own: the operator creates nothing for a record. This API server writes its status instead, `Running`
//! when the call starts and the result when it ends; the whole output, the files the call wrote and its display
//! outputs go to the operator's store (`status.logsRef`) when the status cannot hold them and the store's address is
//! configured. A record whose writer stopped during the call is failed by the operator after its timeout, and every
//! record is deleted after the executions' time to live.
//!
//! `DELETE /api/v1/executions/{id}` of a running call sets the kill annotation on the record and deletes the
//! session's Pod (no signal reaches a Pod's process through an attach): the call's link breaks, the call's maker
//! reads the annotation and records `killed`, and the operator starts the session's next Pod (its state is lost,
//! as the result says).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use pyexec_core::files_out::FilesOut;
use pyexec_core::outcome::EXIT_TIMEOUT;
use pyexec_core::session::SessionCall;
use pyexec_core::{ExecutionResult, ExecutionStatus, Timestamp};
use pyexec_crds::contract::{
    API_SERVER, FINGERPRINT_ANNOTATION, KILL_ANNOTATION, MANAGED_BY_LABEL, StoredLogs, TENANT_LABEL,
};
use pyexec_crds::convert::{resource_name, status_from_result, time_of};
use pyexec_crds::session::SESSION_LABEL;
use pyexec_crds::status::{set_condition, status_patch};
use pyexec_crds::types::{Limits, Source, SourceFile};
use pyexec_crds::{Phase, PythonExecution, PythonExecutionSpec, PythonExecutionStatus, PythonSession};

use super::results::Results;
use crate::backend::BackendError;

/// The file the record shows the call's code as.
const CODE_FILE: &str = "main.py";

/// Writes the records of one namespace's session calls (cheap to clone).
#[derive(Clone)]
pub struct Records {
    api: Api<PythonExecution>,
    results: Results,
    /// The operator's log store (`http://…:8081`), where full outputs and files go; `None`: only the status.
    store_url: Option<Arc<str>>,
    /// Seconds a finished record is kept.
    ttl_seconds: u32,
}

/// A record being written: the resource as created.
pub struct Record {
    resource: PythonExecution,
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

impl Records {
    /// Records in the namespace of `api`.
    pub(super) fn new(
        api: Api<PythonExecution>,
        results: Results,
        store_url: Option<String>,
        ttl_seconds: u32,
    ) -> Records {
        Records { api, results, store_url: store_url.map(|u| u.trim_end_matches('/').into()), ttl_seconds }
    }

    /// Creates the record of the call `execution_id` about to run in `session`, `Running` from `started`.
    pub async fn open(
        &self,
        session: &PythonSession,
        execution_id: &str,
        call: &SessionCall,
        started: Timestamp,
    ) -> Result<Record, BackendError> {
        let name = resource_name(execution_id).ok_or_else(|| internal("execution ids are exe_<uuid>"))?;
        let mut cr = PythonExecution::new(&name, record_spec(session, call, self.ttl_seconds));
        let session_name = session.name_any();
        let mut labels: std::collections::BTreeMap<String, String> =
            [(MANAGED_BY_LABEL.to_owned(), API_SERVER.to_owned()), (SESSION_LABEL.to_owned(), session_name)].into();
        // The call is the session's tenant's.
        if let Some(tenant) = session.metadata.labels.as_ref().and_then(|l| l.get(TENANT_LABEL)) {
            labels.insert(TENANT_LABEL.to_owned(), tenant.clone());
        }
        cr.metadata.labels = Some(labels);
        if let Some(record) = &call.idempotency {
            cr.metadata.annotations = Some([(FINGERPRINT_ANNOTATION.to_owned(), record.fingerprint.clone())].into());
        }
        let pp = PostParams { field_manager: Some(API_SERVER.into()), ..PostParams::default() };
        let created = self.api.create(&pp, &cr).await.map_err(internal)?;
        let mut status = PythonExecutionStatus {
            phase: Some(Phase::Running),
            start_time: Some(time_of(started)),
            ..PythonExecutionStatus::default()
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let accepted = "the call runs in the session's Pod";
        set_condition(&mut status, &created, "Accepted", true, "SessionCall", accepted, &now);
        set_condition(&mut status, &created, "Started", true, "Running", "the call is running", &now);
        self.write(&created, status).await?;
        Ok(Record { resource: created })
    }

    /// Whether the record was asked to be killed since it was opened.
    pub async fn kill_requested(&self, record: &Record) -> bool {
        match self.api.get_opt(&record.resource.name_any()).await {
            Ok(Some(cr)) => cr.annotations().contains_key(KILL_ANNOTATION),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(record = %record.resource.name_any(), error = %e, "could not read a call's record");
                false
            }
        }
    }

    /// Writes the call's result as the record's final status, after storing what the status cannot hold.
    pub async fn close(&self, record: Record, result: &ExecutionResult, files: Option<&FilesOut>) {
        let cr = &record.resource;
        let mut status = status_from_result(result);
        status.logs_ref = self.store(cr, result, files, &status).await;
        status.conditions = cr.status.clone().unwrap_or_default().conditions;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        // The conditions as the operator would have written them, so `kubectl wait` works alike.
        let message = result.error.clone().unwrap_or_else(|| format!("exit code {}", result.exit_code));
        set_condition(&mut status, cr, "Accepted", true, "SessionCall", "the call ran in the session's Pod", &now);
        set_condition(&mut status, cr, "Started", true, "Running", "the call ran", &now);
        set_condition(&mut status, cr, "Finished", true, finished_reason(result), &message, &now);
        if let Err(e) = self.write(cr, status).await {
            // The operator fails it after its timeout; the caller has the result.
            tracing::warn!(record = %cr.name_any(), error = %e, "could not write a session call's result");
        }
    }

    /// Stores the output, files and display outputs when the status cannot hold them; the record's `logsRef`.
    async fn store(
        &self,
        cr: &PythonExecution,
        result: &ExecutionResult,
        files: Option<&FilesOut>,
        status: &PythonExecutionStatus,
    ) -> Option<String> {
        let cut = status.stdout.len() < result.stdout.len() || status.stderr.len() < result.stderr.len();
        let has_files = files.is_some_and(|f| !f.files.is_empty());
        if !cut && !has_files && result.outputs.is_empty() {
            return None;
        }
        let Some(base) = &self.store_url else {
            tracing::debug!(record = %cr.name_any(), "no log store configured: the record keeps the status only");
            return None;
        };
        let (Some(namespace), Some(uid)) = (cr.namespace(), cr.uid()) else { return None };
        let logs = StoredLogs {
            stdout: result.stdout.clone(),
            stderr: result.stderr.clone(),
            pre_commands_output: None,
            files: result.files.clone(),
            files_truncated: result.files_truncated,
            outputs: result.outputs.clone(),
        };
        let kept: &[(pyexec_core::model::OutputFile, Vec<u8>)] = files.map_or(&[], |f| &f.files);
        match self.results.store(base, &namespace, &uid, &logs, kept).await {
            Ok(logs_ref) => Some(logs_ref),
            Err(e) => {
                tracing::warn!(record = %cr.name_any(), error = %e, "storing a session call's output failed");
                None
            }
        }
    }

    async fn write(&self, cr: &PythonExecution, status: PythonExecutionStatus) -> Result<(), BackendError> {
        let patch = status_patch(cr, status);
        let params = PatchParams::apply(API_SERVER).force();
        self.api.patch_status(&cr.name_any(), &params, &Patch::Apply(&patch)).await.map_err(internal)?;
        Ok(())
    }
}

/// The spec of a call's record: the session's class, the call's code, eval mode and timeout.
fn record_spec(session: &PythonSession, call: &SessionCall, ttl_seconds: u32) -> PythonExecutionSpec {
    let limits = &session.spec.limits;
    PythonExecutionSpec {
        source: Source {
            files: vec![SourceFile { name: CODE_FILE.into(), content: call.code.clone() }],
            ..Source::default()
        },
        python_version: session.spec.python_version.clone(),
        image: session.spec.image.clone(),
        eval_last_expr: call.eval_last_expr,
        limits: Limits {
            timeout_seconds: call.timeout.as_secs().max(1),
            memory_mb: limits.memory_mb,
            cpu: limits.cpu.clone(),
            disk_mb: limits.disk_mb,
        },
        network: session.spec.network,
        runtime_class_name: session.spec.runtime_class_name.clone(),
        ttl_seconds_after_finished: Some(ttl_seconds),
        session_ref: Some(session.name_any()),
        ..PythonExecutionSpec::default()
    }
}

/// The reason of a finished record's `Finished` condition, as the operator names the endings of executions.
fn finished_reason(result: &ExecutionResult) -> &'static str {
    match result.status {
        ExecutionStatus::Killed => "Killed",
        _ if result.oom_killed => "OOMKilled",
        ExecutionStatus::Failed if result.exit_code == EXIT_TIMEOUT => "TimedOut",
        ExecutionStatus::Completed => "Completed",
        _ => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use pyexec_backend::session::mark_killed;
    use pyexec_core::outcome::EXIT_KILLED;

    use super::*;

    #[test]
    fn a_record_has_the_sessions_class_and_the_calls_code() {
        let mut session = PythonSession::new("ses-1", Default::default());
        session.spec.python_version = Some("3.12".into());
        session.spec.limits.memory_mb = 256;
        let call = SessionCall {
            code: "x + 1".into(),
            files: Vec::new(),
            stdin: None,
            eval_last_expr: true,
            timeout: std::time::Duration::from_secs(30),
            idempotency: None,
        };
        let spec = record_spec(&session, &call, 300);
        assert_eq!(spec.source.files[0].content, "x + 1");
        assert_eq!((spec.limits.timeout_seconds, spec.limits.memory_mb), (30, 256));
        assert_eq!(spec.session_ref.as_deref(), Some("ses-1"));
        assert_eq!(spec.ttl_seconds_after_finished, Some(300));
        assert!(spec.eval_last_expr);
    }

    #[test]
    fn endings_are_named_as_the_operator_names_them() {
        let mut r = ExecutionResult::pending("exe_1");
        r.status = ExecutionStatus::Completed;
        assert_eq!(finished_reason(&r), "Completed");
        r.status = ExecutionStatus::Failed;
        r.exit_code = EXIT_TIMEOUT;
        assert_eq!(finished_reason(&r), "TimedOut");
        r.oom_killed = true;
        assert_eq!(finished_reason(&r), "OOMKilled");
        mark_killed(&mut r, true);
        assert_eq!((finished_reason(&r), r.exit_code), ("Killed", EXIT_KILLED));
        assert!(r.error.as_deref().is_some_and(|e| e.contains("state is lost")));
    }
}
