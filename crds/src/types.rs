//! The `PythonExecution` resource (`pyexec.io/v1alpha1`): one execution of untrusted Python, as a namespaced,
//! auditable object. Its spec says what to run and under which limits (immutable once created); its status, written
//! by the operator, says what happened, with bounded output and a reference to the full logs.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most bytes of `stdout` and of `stderr` kept in the status (the full output is where `logsRef` points).
pub const STATUS_OUTPUT_BYTES: usize = 64 << 10;

/// What to run, with what, under which limits. Immutable after creation: to run something else, create another
/// PythonExecution.
// The printer columns repeat `type_ = ...`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "pyexec.io",
    version = "v1alpha1",
    kind = "PythonExecution",
    namespaced,
    shortname = "pyexec",
    category = "pyexec",
    status = "PythonExecutionStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "One execution of untrusted Python in a locked-down Pod.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Exit", type_ = "integer", json_path = ".status.exitCode"),
    printcolumn(name = "Duration", type_ = "integer", json_path = ".status.durationMs", description = "Run time, ms"),
    printcolumn(name = "Error", type_ = "string", json_path = ".status.error", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".status.phase"
)]
// Every string and list is bounded, also to keep the CEL cost of `self == oldSelf` within the API server's budget.
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create a new PythonExecution"))]
#[serde(rename_all = "camelCase")]
pub struct PythonExecutionSpec {
    /// Where the program's files come from: exactly one of `files`, `configMap`, `archive`.
    pub source: Source,
    /// File to run, relative to `/work`. Absent: the directory itself runs, as `python /work` (its `__main__.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')")
        .message("entrypoint must be a relative path inside /work"))]
    pub entrypoint: Option<String>,
    /// CPython version (`3.10` to `3.13`); the operator maps it to an allowed image. Default: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^3\.(10|11|12|13)$"))]
    pub python_version: Option<String>,
    /// Container image instead of `pythonVersion`; must be on the operator's allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// `sys.argv[1:]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// Environment variables of the program.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<EnvVar>,
    /// Standard input, then end-of-file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1048576))]
    pub stdin: Option<String>,
    /// requirements.txt text to install before the program (from the operator's package index, in an init
    /// container; the program itself never gets that network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub requirements: Option<String>,
    /// Shell commands run before the program, in the same container, as the same unprivileged user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 8192)))]
    pub pre_commands: Vec<String>,
    /// Report the value of a trailing expression in `status.result` (REPL mode).
    #[serde(default, skip_serializing_if = "is_false")]
    pub eval_last_expr: bool,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// `none` (the default): no network at all. `egress`: the public internet only (never private ranges, the
    /// cluster, link-local or cloud metadata).
    #[serde(default)]
    pub network: NetworkMode,
    /// A RuntimeClass for stronger isolation (gVisor, Kata), when the operator allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub runtime_class_name: Option<String>,
    /// Give the program a Docker engine (a privileged DinD sidecar). Only when the operator enables it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub docker: bool,
    /// Delete this object this many seconds after it finished (default: the operator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub ttl_seconds_after_finished: Option<u32>,
    /// Set by the API server on the record of a call made in a `PythonSession` (the session's name): the call ran
    /// in the session's Pod, so the operator creates nothing for this resource; the API server that made the call
    /// writes its status, and the operator only fails a record left unfinished past its timeout (the API server
    /// stopped during the call) and deletes it after its time to live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub session_ref: Option<String>,
}

/// A detected import that was not installed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SkippedPackage {
    /// The distribution name.
    #[schemars(length(max = 256))]
    pub name: String,
    /// Why it was not installed.
    #[schemars(length(max = 1024))]
    pub reason: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The program's files. Exactly one source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.files) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.archive) ? 1 : 0) == 1")
        .message("set exactly one of files, configMap, archive")
)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Files given inline (small programs: the whole object must stay under the API server's 1.5 MB; use a
    /// ConfigMap or an archive for more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub files: Vec<SourceFile>,
    /// A ConfigMap in the same namespace whose keys are file names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// An archive uploaded to the API server, streamed into the Pod before the program starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSource>,
}

/// One inline file.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SourceFile {
    /// Relative path inside `/work` (`main.py`, `pkg/util.py`).
    #[schemars(length(min = 1, max = 1024), pattern(r"^[A-Za-z0-9_.+@=-][A-Za-z0-9_.+@=/-]*$"))]
    #[x_kube(validation = Rule::new("!self.matches('(^|/)[.][.]?(/|$)') && !self.endsWith('/')")
        .message("file names are relative paths without '.' or '..' parts"))]
    pub name: String,
    /// The file's text.
    #[schemars(length(max = 262144))]
    pub content: String,
}

/// Files from a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ConfigMapSource {
    /// The ConfigMap's name (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// An archive held by the API server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSource {
    /// The upload's id at the API server.
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9-]+$"))]
    pub id: String,
    /// SHA-256 of the archive, hex; checked in the Pod before unpacking.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Size in bytes.
    #[schemars(range(min = 0))]
    pub size_bytes: u64,
}

/// One environment variable: a value, or a key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("set exactly one of value, valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,
    /// Where the value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// The source of an environment variable's value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret in the same namespace.
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// Run without the variable when the Secret or key does not exist (default: fail).
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// Resource limits of the run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Wall-clock limit (the Pod's `activeDeadlineSeconds`), seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: u64,
    /// Memory, MiB.
    #[serde(rename = "memoryMB", default = "default_memory")]
    #[schemars(range(min = 16, max = 262144))]
    pub memory_mb: u64,
    /// CPU (a quantity: `500m`, `1`, `2`, `0.5`).
    #[serde(default = "default_cpu", deserialize_with = "cpu_or_default")]
    // An int-or-string: the pattern applies to the strings only (`schemars(pattern)` would skip it).
    #[schemars(extend("pattern" = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"))]
    pub cpu: Quantity,
    /// Size of `/work` (and the ephemeral storage of the Pod), MiB.
    #[serde(rename = "diskMB", default = "default_disk")]
    #[schemars(range(min = 1, max = 1048576))]
    pub disk_mb: u64,
}

fn default_timeout() -> u64 {
    300
}
fn default_memory() -> u64 {
    1024
}
fn default_cpu() -> Quantity {
    Quantity("1".into())
}
/// The schema lets `cpu` be null (it has a default): null reads as absent, so such an object still decodes.
fn cpu_or_default<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
    Ok(Option::<Quantity>::deserialize(deserializer)?.unwrap_or_else(default_cpu))
}
fn default_disk() -> u64 {
    2048
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_seconds: default_timeout(),
            memory_mb: default_memory(),
            cpu: default_cpu(),
            disk_mb: default_disk(),
        }
    }
}

/// Network of the program.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum NetworkMode {
    /// No network at all.
    #[default]
    None,
    /// The public internet only.
    Egress,
}

/// What happened, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PythonExecutionStatus {
    /// `Pending` → `Running` → `Completed` | `Failed`; `Pending`/`Running` → `Killed`. Terminal phases never change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Accepted`, `Started`, `Finished` (with reasons such as `Completed`, `TimedOut`, `OOMKilled`,
    /// `InstallFailed`, `Killed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the program started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Run time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The program's exit code: 124 on timeout, 137 when killed or out of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Standard output (at most 64 KiB here; see `logsRef`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// Standard error (at most 64 KiB here; see `logsRef`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// `stdout` here is shorter than the program's output.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdout_truncated: bool,
    /// `stderr` here is shorter than the program's output.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stderr_truncated: bool,
    /// Eval mode: `repr()` of the trailing expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the execution failed or was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Class name of the uncaught exception.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Line of the uncaught exception in the user's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_line: Option<u32>,
    /// The exception's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The memory limit was hit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_killed: bool,
    /// `name==version` of the packages installed for the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed_packages: Vec<String>,
    /// Detected imports that were not installed, and why (not in the index, not on the allow-list, optional
    /// without a wheel): the run went on without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub skipped_packages: Vec<SkippedPackage>,
    /// What the `preCommands` printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_commands_output: Option<String>,
    /// The Pod that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Where the full output is kept (`GET` it from the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_ref: Option<String>,
    /// How many files the program created or changed under `/work` are kept with the full output (`logsRef`):
    /// their list is there, each file at `<logsRef>/files/<sha256>`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_count: u32,
    /// Some files the program created or changed were left out (over the operator's caps, or lost with the
    /// container log).
    #[serde(default, skip_serializing_if = "is_false")]
    pub files_truncated: bool,
    /// How many display outputs (matplotlib figures, `display(obj)`) the run showed; they are kept with the full
    /// output (`logsRef`), the status has no room for them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outputs_count: u32,
    /// A session call (`spec.sessionRef`) whose interpreter was replaced after it: the session's state was lost.
    #[serde(default, skip_serializing_if = "is_false")]
    pub session_restarted: bool,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The phase of an execution.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; its Pod is not running yet.
    Pending,
    /// Running (dependencies, pre-commands or the program).
    Running,
    /// The program ran to an exit code (any code).
    Completed,
    /// It could not run to completion: timeout, failed install, refused spec, lost Pod.
    Failed,
    /// Stopped on request.
    Killed,
}

impl Phase {
    /// Completed, Failed and Killed never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed | Phase::Killed)
    }
}

impl PythonExecution {
    /// The phase, `Pending` when no status was written yet.
    pub fn phase(&self) -> Phase {
        self.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Pending)
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    use super::*;

    /// Paths (through `properties`, and `items` as element 0) of every field the schema lets be null.
    fn nullable_paths(schema: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if schema.get("nullable") == Some(&Value::Bool(true)) {
            out.push(path.clone());
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                path.push(name.clone());
                nullable_paths(child, path, out);
                path.pop();
            }
        }
        if let Some(items) = schema.get("items") {
            path.push("0".into());
            nullable_paths(items, path, out);
            path.pop();
        }
    }

    fn set_null(object: &mut Value, path: &[String]) {
        let (last, parents) = path.split_last().unwrap();
        let mut node = object;
        for step in parents {
            node = match step.parse::<usize>() {
                Ok(i) => &mut node[i],
                Err(_) => node.as_object_mut().unwrap().entry(step.clone()).or_insert_with(|| json!({})),
            };
        }
        node.as_object_mut().unwrap().insert(last.clone(), Value::Null);
    }

    #[test]
    fn every_field_the_schema_lets_be_null_decodes_as_absent() {
        let crd = serde_json::to_value(PythonExecution::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut paths = Vec::new();
        nullable_paths(schema, &mut Vec::new(), &mut paths);
        assert!(paths.iter().any(|p| p.join(".") == "spec.limits.cpu"), "{paths:?}");
        let base = json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"source": {"files": [{"name": "main.py", "content": "print(1)"}]},
                     "env": [{"name": "A", "value": "b"}], "limits": {"cpu": "500m"}},
            "status": {"phase": "Pending"},
        });
        for path in &paths {
            let mut object = base.clone();
            set_null(&mut object, path);
            if let Err(e) = serde_json::from_value::<PythonExecution>(object) {
                panic!("{} may be null in the CRD but does not decode: {e}", path.join("."));
            }
        }
        let mut object = base;
        object["spec"]["limits"]["cpu"] = Value::Null;
        let cr: PythonExecution = serde_json::from_value(object).unwrap();
        assert_eq!(cr.spec.limits.cpu, default_cpu());
    }

    #[test]
    fn cpu_has_a_quantity_pattern_and_conditions_are_a_map_keyed_by_type() {
        let crd = serde_json::to_value(PythonExecution::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        let cpu = &schema["spec"]["properties"]["limits"]["properties"]["cpu"];
        assert_eq!(cpu["pattern"], r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$", "{cpu}");
        assert_eq!(cpu["x-kubernetes-int-or-string"], true, "{cpu}");
        let conditions = &schema["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{conditions}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]), "{conditions}");
        assert!(conditions["items"]["required"].as_array().unwrap().contains(&json!("type")), "{conditions}");
    }
}
