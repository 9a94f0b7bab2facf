//! What the API server and the operator agree on besides the resource's schema: the annotation that asks for a kill,
//! the label that says who manages an object, and the stored output (and files) that `status.logsRef` points to. Both sides use
//! these definitions, so neither can drift from the other.

use pyexec_core::model::{DisplayOutput, OutputFile};
use serde::{Deserialize, Serialize};

/// Annotation asking the operator to kill an execution (the API server's DELETE sets it; so can `kubectl annotate`).
/// Its value is informational (the API server writes the time of the request).
pub const KILL_ANNOTATION: &str = "pyexec.io/kill-requested";

/// The well-known label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The operator: the manager of every execution's children, its field manager, its Event reporter and its Lease.
pub const OPERATOR: &str = "pyexec-operator";
/// The API server: the manager of the resources it creates (the list endpoint shows only those) and its field
/// manager.
pub const API_SERVER: &str = "pyexec-apiserver";

/// Label naming the tenant an execution or session belongs to (docs/tenants.md): the API server sets it on what it
/// creates from a tenant's request and lists a tenant's work by it (tenant names are DNS labels).
pub const TENANT_LABEL: &str = "pyexec.io/tenant";

/// Annotation with the fingerprint of the request that created an execution with an `Idempotency-Key` (its hash
/// is the execution's name: docs/api.md, "Retries"); a retry with another fingerprint is refused.
pub const FINGERPRINT_ANNOTATION: &str = "pyexec.io/request-fingerprint";

/// The label selector of the objects `manager` manages.
pub fn managed_by_selector(manager: &str) -> String {
    format!("{MANAGED_BY_LABEL}={manager}")
}

/// One execution's full output, as the operator's log store serves it at `status.logsRef` (JSON): the output, the
/// display outputs and the list of the files the run left in `/work`, each file's bytes at
/// `<logsRef>/files/<sha256>`. Fields added after the first are optional, so records stored before them still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLogs {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The pre-commands' output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_commands_output: Option<String>,
    /// The files the program created or changed under `/work` (path, size, SHA-256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<OutputFile>,
    /// Some files were left out (over the caps, or lost with the container log).
    #[serde(default, skip_serializing_if = "is_false")]
    pub files_truncated: bool,
    /// The run's display outputs (matplotlib figures, `display(obj)`), in the order shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<DisplayOutput>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The path of one stored file below a `logsRef`: `<logsRef>/files/<sha256>`.
pub fn stored_file_url(logs_ref: &str, sha256: &str) -> String {
    format!("{}/files/{sha256}", logs_ref.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_stored_logs() {
        assert_eq!(managed_by_selector(API_SERVER), "app.kubernetes.io/managed-by=pyexec-apiserver");
        let logs: StoredLogs = serde_json::from_str(r#"{"stdout": "a", "stderr": "b"}"#).unwrap();
        assert_eq!(logs, StoredLogs { stdout: "a".into(), stderr: "b".into(), ..StoredLogs::default() });
        assert_eq!(serde_json::to_string(&logs).unwrap(), r#"{"stdout":"a","stderr":"b"}"#);
        let with_files = StoredLogs {
            files: vec![OutputFile { path: "out.csv".into(), size: 3, sha256: "ab".repeat(32) }],
            files_truncated: true,
            outputs: vec![DisplayOutput { kind: "image/png".into(), data: "iVBO".into() }],
            ..logs
        };
        let json = serde_json::to_string(&with_files).unwrap();
        assert!(json.contains(r#""files_truncated":true"#) && json.contains(r#""type":"image/png""#), "{json}");
        assert_eq!(serde_json::from_str::<StoredLogs>(&json).unwrap(), with_files);
        assert_eq!(stored_file_url("http://op/logs/ns/uid/", "ab"), "http://op/logs/ns/uid/files/ab");
    }
}
