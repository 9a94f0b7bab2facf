//! The one mapping between the execution model of `pyexec-core` (what the REST API validates and returns) and a
//! `PythonExecution`: the API server turns a validated request into a spec, the operator turns a spec back into the
//! `ExecutionSpec` that `pyexec_core::finalize` needs and its result into a status, and the API server turns a
//! status back into the wire result.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use pyexec_core::{
    ExecutionResult, ExecutionSpec, ExecutionStatus, Limits as CoreLimits, PythonVersion, Requirements, Timestamp,
};

use crate::types::{
    EnvVar, Limits, NetworkMode, Phase, PythonExecutionSpec, PythonExecutionStatus, STATUS_OUTPUT_BYTES, Source,
};

/// The resource name of an execution id (`exe_<uuid>` → `exe-<uuid>`: resource names cannot hold `_`).
pub fn resource_name(execution_id: &str) -> Option<String> {
    let uuid = execution_id.strip_prefix("exe_")?;
    let parsed = uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    parsed.then(|| format!("exe-{uuid}"))
}

/// The execution id of a resource: `exe_<uuid>` for the API server's resources, the name for others.
pub fn execution_id(resource_name: &str) -> String {
    match resource_name.strip_prefix("exe-") {
        Some(rest) => format!("exe_{rest}"),
        None => resource_name.to_owned(),
    }
}

/// `requirements` value that installs nothing, not even the project's own `requirements.txt` (as the API's `"-"`).
pub const NO_REQUIREMENTS: &str = "-";

/// The spec of a validated execution whose files are in `source`. `requirements` is what to install: the API
/// server resolves it (request, project file, detected imports) before creating the resource.
pub fn spec_from_execution(spec: &ExecutionSpec, source: Source, requirements: Option<String>) -> PythonExecutionSpec {
    PythonExecutionSpec {
        source,
        entrypoint: spec.entrypoint.clone(),
        python_version: spec.python.map(|v| v.to_string()),
        image: spec.image.clone(),
        args: spec.args.clone(),
        env: spec
            .env
            .iter()
            .map(|(name, value)| EnvVar { name: name.clone(), value: Some(value.clone()), value_from: None })
            .collect(),
        stdin: spec.stdin.clone(),
        requirements,
        pre_commands: spec.pre_commands.clone(),
        eval_last_expr: spec.eval_last_expr,
        limits: Limits {
            timeout_seconds: spec.limits.timeout_seconds,
            memory_mb: spec.limits.memory_mb,
            cpu: cpu_quantity(spec.limits.cpu_shares),
            disk_mb: spec.limits.disk_mb,
        },
        network: if spec.network { NetworkMode::Egress } else { NetworkMode::None },
        runtime_class_name: None,
        docker: false,
        ttl_seconds_after_finished: None,
        session_ref: None,
    }
}

/// CPU shares (1024 = one CPU) as a Kubernetes quantity in millicores.
pub fn cpu_quantity(shares: u64) -> Quantity {
    let millis = (shares.saturating_mul(1000) / 1024).max(1);
    if millis.is_multiple_of(1000) { Quantity((millis / 1000).to_string()) } else { Quantity(format!("{millis}m")) }
}

/// Millicores of a CPU quantity (`500m`, `1`, `1.5`, `2`), if it is one.
pub fn cpu_millis(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().ok();
    }
    let value: f64 = s.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * 1000.0).round() as u64)
}

/// The `ExecutionSpec` a resource describes, for the semantics shared with the embedded backend (timeout message,
/// eval mode). Environment variables from Secrets are not part of it (the Pod resolves them).
pub fn execution_spec(spec: &PythonExecutionSpec) -> ExecutionSpec {
    let cpu_shares = cpu_millis(&spec.limits.cpu).map(|m| m * 1024 / 1000).unwrap_or(1024).max(2);
    ExecutionSpec {
        entrypoint: spec.entrypoint.clone(),
        args: spec.args.clone(),
        env: spec.env.iter().filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect(),
        stdin: spec.stdin.clone(),
        limits: CoreLimits {
            timeout_seconds: spec.limits.timeout_seconds,
            memory_mb: spec.limits.memory_mb,
            disk_mb: spec.limits.disk_mb,
            cpu_shares,
        },
        network: spec.network == NetworkMode::Egress,
        python: spec.python_version.as_deref().and_then(|v| PythonVersion::parse_supported(v).ok()),
        image: spec.image.clone(),
        eval_last_expr: spec.eval_last_expr,
        requirements: match spec.requirements.as_deref() {
            Some(NO_REQUIREMENTS) => Requirements::Nothing,
            Some(text) => Requirements::Listed(text.to_owned()),
            None => Requirements::FromProject,
        },
        auto_detect_imports: false,
        // The API server applied the allow-list before it wrote `requirements`.
        auto_install: pyexec_core::requirements::AutoInstall::Any,
        pre_commands: spec.pre_commands.clone(),
        tenant: None,
        callback_url: None,
        idempotency: None,
    }
}

/// The status of a finished (or running) execution: outputs cut to [`STATUS_OUTPUT_BYTES`] (flagged), times,
/// error fields. Conditions, pod name and logs reference are the operator's to add.
pub fn status_from_result(result: &ExecutionResult) -> PythonExecutionStatus {
    let (stdout, stdout_cut) = bounded(&result.stdout);
    let (stderr, stderr_cut) = bounded(&result.stderr);
    PythonExecutionStatus {
        phase: Some(phase_of(result.status)),
        start_time: result.started_at.map(time_of),
        completion_time: result.finished_at.map(time_of),
        duration_ms: Some(result.duration_ms),
        exit_code: (result.status.is_terminal()).then_some(result.exit_code),
        stdout,
        stderr,
        stdout_truncated: result.stdout_truncated || stdout_cut,
        stderr_truncated: result.stderr_truncated || stderr_cut,
        result: result.result.clone(),
        error: result.error.clone(),
        error_type: result.error_type.clone(),
        error_line: result.error_line,
        error_message: result.error_message.clone(),
        oom_killed: result.oom_killed,
        installed_packages: result.installed_packages.clone(),
        skipped_packages: result
            .skipped_packages
            .iter()
            .take(100)
            .map(|p| crate::types::SkippedPackage { name: p.name.clone(), reason: p.reason.clone() })
            .collect(),
        pre_commands_output: result.pre_commands_output.as_deref().filter(|o| !o.is_empty()).map(|o| bounded(o).0),
        session_restarted: result.session_restarted,
        // The files and display outputs themselves have no room here: the log store keeps them, these counts say
        // that a reader should fetch them from `logsRef`.
        files_count: u32::try_from(result.files.len()).unwrap_or(u32::MAX),
        files_truncated: result.files_truncated,
        outputs_count: u32::try_from(result.outputs.len()).unwrap_or(u32::MAX),
        ..PythonExecutionStatus::default()
    }
}

/// The wire result of a resource's status (an absent status reads as `pending`).
pub fn result_from_status(execution_id: &str, status: Option<&PythonExecutionStatus>) -> ExecutionResult {
    let mut result = ExecutionResult::pending(execution_id);
    let Some(status) = status else { return result };
    result.status = status_of(status.phase.unwrap_or(Phase::Pending));
    result.stdout = status.stdout.clone();
    result.stderr = status.stderr.clone();
    result.exit_code = status.exit_code.unwrap_or(0);
    result.error = status.error.clone();
    result.error_type = status.error_type.clone();
    result.error_line = status.error_line;
    result.error_message = status.error_message.clone();
    result.started_at = status.start_time.as_ref().and_then(timestamp_of);
    result.finished_at = status.completion_time.as_ref().and_then(timestamp_of);
    result.duration_ms = status.duration_ms.unwrap_or(0);
    result.result = status.result.clone();
    result.stdout_truncated = status.stdout_truncated;
    result.stderr_truncated = status.stderr_truncated;
    result.oom_killed = status.oom_killed;
    result.installed_packages = status.installed_packages.clone();
    result.skipped_packages = status
        .skipped_packages
        .iter()
        .map(|p| pyexec_core::model::SkippedPackage { name: p.name.clone(), reason: p.reason.clone() })
        .collect();
    // An empty one (written by an operator that kept it) is absent, as every empty value of a result.
    result.pre_commands_output = status.pre_commands_output.clone().filter(|o| !o.is_empty());
    result.session_restarted = status.session_restarted;
    // The list of files and the outputs are in the log store (`logsRef`); what the status alone says is whether
    // some files were left out.
    result.files_truncated = status.files_truncated;
    result
}

/// The wire result of a resource: its status, its tenant (label), and for the record of a session call
/// (`spec.sessionRef`) the id of the session it ran in.
pub fn result_from_resource(execution_id: &str, cr: &crate::PythonExecution) -> ExecutionResult {
    let mut result = result_from_status(execution_id, cr.status.as_ref());
    result.session_id = cr.spec.session_ref.as_deref().map(crate::session::session_id_of);
    result.tenant = tenant_of(cr);
    result
}

/// The tenant a resource belongs to: its `pyexec.io/tenant` label (`None`: created without API keys).
pub fn tenant_of(cr: &crate::PythonExecution) -> Option<String> {
    cr.metadata.labels.as_ref().and_then(|l| l.get(crate::contract::TENANT_LABEL)).cloned()
}

/// The resource phase of a wire status.
pub fn phase_of(status: ExecutionStatus) -> Phase {
    match status {
        ExecutionStatus::Pending => Phase::Pending,
        ExecutionStatus::Running => Phase::Running,
        ExecutionStatus::Completed => Phase::Completed,
        ExecutionStatus::Failed => Phase::Failed,
        ExecutionStatus::Killed => Phase::Killed,
    }
}

/// The wire status of a resource phase.
pub fn status_of(phase: Phase) -> ExecutionStatus {
    match phase {
        Phase::Pending => ExecutionStatus::Pending,
        Phase::Running => ExecutionStatus::Running,
        Phase::Completed => ExecutionStatus::Completed,
        Phase::Failed => ExecutionStatus::Failed,
        Phase::Killed => ExecutionStatus::Killed,
    }
}

/// A Kubernetes time of a timestamp (the API keeps whole seconds; `durationMs` keeps the precision).
pub fn time_of(t: Timestamp) -> Time {
    Time(jiff::Timestamp::from_microsecond(t.unix_micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// The timestamp of a Kubernetes time.
pub fn timestamp_of(t: &Time) -> Option<Timestamp> {
    Timestamp::from_unix_micros(t.0.as_microsecond())
}

/// `text` cut to [`STATUS_OUTPUT_BYTES`], and whether it was cut.
fn bounded(text: &str) -> (String, bool) {
    pyexec_core::text::head(text, STATUS_OUTPUT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::Policy;

    #[test]
    fn names_and_ids() {
        let id = "exe_0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001";
        let name = resource_name(id).unwrap();
        assert_eq!(name, "exe-0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001");
        assert_eq!(execution_id(&name), id);
        assert_eq!(execution_id("nightly-report"), "nightly-report");
        assert_eq!(resource_name("exe_../../x"), None);
    }

    #[test]
    fn cpu_shares_and_quantities() {
        assert_eq!(cpu_quantity(1024).0, "1");
        assert_eq!(cpu_quantity(512).0, "500m");
        assert_eq!(cpu_quantity(2048).0, "2");
        assert_eq!(cpu_millis(&Quantity("250m".into())), Some(250));
        assert_eq!(cpu_millis(&Quantity("1.5".into())), Some(1500));
        assert_eq!(cpu_millis(&Quantity("lots".into())), None);
    }

    #[test]
    fn a_spec_survives_the_round_trip() {
        let meta = serde_json::from_str(
            r#"{"entrypoint":"app/main.py","script_args":["-v"],"env_vars":["A=1"],"stdin":"in",
                "requirements_txt":"six","pre_commands":["echo hi"],"python_version":"3.11",
                "config":{"timeout_seconds":60,"memory_mb":256,"cpu_shares":512,"disk_mb":100,"network_disabled":false}}"#,
        )
        .unwrap();
        let spec = Policy::default().spec_from_metadata(meta).unwrap();
        let cr = spec_from_execution(&spec, Source::default(), Some("six".into()));
        assert_eq!((cr.limits.cpu.0.as_str(), cr.network), ("500m", NetworkMode::Egress));
        let back = execution_spec(&cr);
        assert_eq!(back.limits, spec.limits);
        assert_eq!((back.args, back.env, back.stdin), (spec.args, spec.env, spec.stdin));
        assert_eq!((back.python, back.network, back.pre_commands), (spec.python, true, spec.pre_commands));
        assert_eq!(back.requirements, Requirements::Listed("six".into()));
        let nothing = PythonExecutionSpec { requirements: Some(NO_REQUIREMENTS.into()), ..cr };
        assert_eq!(execution_spec(&nothing).requirements, Requirements::Nothing);
    }

    #[test]
    fn results_and_statuses_map_both_ways_with_bounded_output() {
        let mut result = ExecutionResult::pending("exe_1");
        result.status = ExecutionStatus::Completed;
        result.exit_code = 3;
        result.stdout = "é".repeat(STATUS_OUTPUT_BYTES);
        result.stderr = "boom\n".into();
        result.error_type = Some("ValueError".into());
        result.started_at = Timestamp::from_unix_micros(1_700_000_000_000_000);
        result.finished_at = Timestamp::from_unix_micros(1_700_000_001_000_000);
        result.duration_ms = 1000;
        let status = status_from_result(&result);
        assert_eq!(status.stdout.len(), STATUS_OUTPUT_BYTES);
        assert!(status.stdout_truncated && !status.stderr_truncated);
        let back = result_from_status("exe_1", Some(&status));
        assert_eq!(
            (back.status, back.exit_code, back.error_type.as_deref()),
            (ExecutionStatus::Completed, 3, Some("ValueError"))
        );
        assert_eq!(
            (back.started_at, back.finished_at, back.duration_ms),
            (result.started_at, result.finished_at, 1000)
        );
        assert_eq!(result_from_status("exe_2", None).status, ExecutionStatus::Pending);
        assert_eq!((status.files_count, status.outputs_count, status.files_truncated), (0, 0, false));
        let json = serde_json::to_value(&status).unwrap();
        assert!(json.get("filesCount").is_none() && json.get("outputsCount").is_none(), "skipped when 0");
    }

    #[test]
    fn empty_pre_commands_output_is_absent_from_the_status_and_the_result() {
        let mut result = ExecutionResult::pending("exe_1");
        result.status = ExecutionStatus::Completed;
        result.pre_commands_output = Some(String::new());
        assert_eq!(status_from_result(&result).pre_commands_output, None);
        // A status that holds an empty one (an older operator's) reads as none.
        let status = PythonExecutionStatus { pre_commands_output: Some(String::new()), ..Default::default() };
        let back = result_from_status("exe_1", Some(&status));
        assert_eq!(back.pre_commands_output, None);
        assert!(serde_json::to_value(&back).unwrap().get("pre_commands_output").is_none());
        let status = PythonExecutionStatus { pre_commands_output: Some("ready\n".into()), ..Default::default() };
        assert_eq!(result_from_status("exe_1", Some(&status)).pre_commands_output.as_deref(), Some("ready\n"));
    }

    #[test]
    fn files_and_outputs_are_counted_in_the_status() {
        let mut result = ExecutionResult::pending("exe_1");
        result.status = ExecutionStatus::Completed;
        result.files = vec![pyexec_core::model::OutputFile { path: "a.csv".into(), size: 1, sha256: "0".repeat(64) }];
        result.files_truncated = true;
        result.outputs = vec![pyexec_core::model::DisplayOutput { kind: "image/png".into(), data: "iVBO".into() }; 2];
        let status = status_from_result(&result);
        assert_eq!((status.files_count, status.outputs_count, status.files_truncated), (1, 2, true));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!((json["filesCount"].as_u64(), json["outputsCount"].as_u64()), (Some(1), Some(2)));
        let back = result_from_status("exe_1", Some(&status));
        assert!(back.files.is_empty() && back.outputs.is_empty() && back.files_truncated, "the lists are stored apart");
    }
}
