//! The wire result of a resource, the same for every reader: `GET /api/v1/executions/{id}`, synchronous requests,
//! and the last event of `/events`. It is the status, with the whole output from the operator's log store
//! (`status.logsRef`) when the status had to cut it, so no reader sees less than another.

use kube::ResourceExt;
use pyexec_core::ExecutionResult;
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::StoredLogs;
use pyexec_crds::convert::result_from_status;

/// Reads results of resources (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Results {
    http: reqwest::Client,
    /// Token of the operator's log store.
    logs_token: Option<String>,
    /// Bytes of stdout/stderr returned.
    max_output_bytes: usize,
}

impl Results {
    pub(super) fn new(logs_token: Option<String>, max_output_bytes: usize) -> Results {
        Results { http: reqwest::Client::new(), logs_token, max_output_bytes }
    }

    /// The wire result of the resource `cr` of execution `id`.
    pub(super) async fn result_of(&self, id: &str, cr: &PythonExecution) -> ExecutionResult {
        let mut result = result_from_status(id, cr.status.as_ref());
        let status = cr.status.as_ref();
        let cut = status.is_some_and(|s| s.stdout_truncated || s.stderr_truncated);
        if let (true, Some(logs_ref)) = (cut, status.and_then(|s| s.logs_ref.as_deref())) {
            if !names_resource(logs_ref, cr) {
                // The token is this namespace's: it goes only to the operator's address of this resource's output.
                tracing::warn!(execution_id = id, logs_ref, "status.logsRef does not name this execution; not read");
                return result;
            }
            match self.stored(logs_ref).await {
                Ok(stored) => {
                    let max = self.max_output_bytes;
                    let (stdout, out_cut) = pyexec_core::text::head(&stored.stdout, max);
                    let (stderr, err_cut) = pyexec_core::text::head(&stored.stderr, max);
                    result.stdout_truncated = out_cut || stdout.len() < result.stdout.len();
                    result.stderr_truncated = err_cut;
                    (result.stdout, result.stderr) = (stdout, stderr);
                }
                Err(e) => {
                    tracing::warn!(execution_id = id, error = %e, "fetching the full output failed; returning the status's")
                }
            }
        }
        result
    }

    async fn stored(&self, logs_ref: &str) -> Result<StoredLogs, reqwest::Error> {
        let mut request = self.http.get(logs_ref);
        if let Some(token) = &self.logs_token {
            request = request.bearer_auth(token);
        }
        request.send().await?.error_for_status()?.json().await
    }
}

/// Whether `logs_ref` is the operator's `/logs/{namespace}/{uid}` of the resource `cr` (nothing after it).
fn names_resource(logs_ref: &str, cr: &PythonExecution) -> bool {
    let (Some(namespace), Some(uid)) = (cr.namespace(), cr.uid()) else { return false };
    let path = logs_ref.split(['?', '#']).next().unwrap_or_default();
    path.ends_with(&format!("/logs/{namespace}/{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_resources_own_logs_ref_is_read() {
        let mut cr = PythonExecution::new("exe-1", Default::default());
        cr.metadata.namespace = Some("team-a".into());
        cr.metadata.uid = Some("uid-1".into());
        assert!(names_resource("http://op.pyexec-system.svc:8081/logs/team-a/uid-1", &cr));
        assert!(!names_resource("http://op.pyexec-system.svc:8081/logs/team-b/uid-1", &cr), "another namespace");
        assert!(!names_resource("http://op:8081/logs/team-a/uid-2", &cr), "another execution");
        assert!(!names_resource("http://op:8081/logs/team-a/uid-1/x", &cr));
        cr.metadata.uid = None;
        assert!(!names_resource("http://op:8081/logs/team-a/", &cr));
    }
}
