//! What the API server and the operator agree on besides the resource's schema: the annotation that asks for a kill,
//! the label that says who manages an object, and the stored output that `status.logsRef` points to. Both sides use
//! these definitions, so neither can drift from the other.

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

/// The label selector of the objects `manager` manages.
pub fn managed_by_selector(manager: &str) -> String {
    format!("{MANAGED_BY_LABEL}={manager}")
}

/// One execution's full output, as the operator's log store serves it at `status.logsRef` (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLogs {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The pre-commands' output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_commands_output: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_stored_logs() {
        assert_eq!(managed_by_selector(API_SERVER), "app.kubernetes.io/managed-by=pyexec-apiserver");
        let logs: StoredLogs = serde_json::from_str(r#"{"stdout": "a", "stderr": "b"}"#).unwrap();
        assert_eq!(logs, StoredLogs { stdout: "a".into(), stderr: "b".into(), pre_commands_output: None });
        assert_eq!(serde_json::to_string(&logs).unwrap(), r#"{"stdout":"a","stderr":"b"}"#);
    }
}
