//! The CRD reference (`docs/crd-reference.md`), generated from the same schemas the API server enforces, so it
//! cannot drift: for PythonExecution, PythonExecutionPool and PythonSession, every field of spec and status with its type, default,
//! bounds, rules and description, and the subresources and printer columns of the pool and the session; the few
//! paragraphs that a schema cannot say (how executions meet pools, a session's lifecycle) are written here, next to
//! the generator.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::{PythonExecution, PythonExecutionPool, PythonSession};

/// What the schema of PythonExecutionPool cannot say: how executions are matched to a pool, and how one that ran
/// warm shows it. Kept in step with the operator's `pool::fit` and `pool::claim`.
const POOL_MATCHING: &str = "\
### How executions are matched to a pool

The operator keeps `spec.replicas` idle Pods of the pool's class, each with its runner started and waiting for a
claim. Before it creates a Pod for a new PythonExecution in the same namespace, it looks for a pool that fits it; it
fits when all of these hold:

- the same image: the execution's `image`, or the image the operator maps its `pythonVersion` (or the default
  version) to, is the pool's;
- the same `limits.memoryMB` and `limits.diskMB`, and the same `limits.cpu` in millicores (`500m` and `0.5` are
  equal); `limits.timeoutSeconds` may be anything (the claimed Pod's deadline is set from it at the claim);
- the same `network` and `runtimeClassName` (both absent counts as the same);
- nothing that only a new Pod can get: no install stage (`requirements`, or a `requirements.txt` among the inline
  files), no `docker`, a `source.files` source (no `configMap`, no `archive`), no `env[].valueFrom`.

Of the fitting pools, the first by name is used, and of its idle Pods the oldest that is Ready. The claim is one
merge patch at the Pod's `resourceVersion`: of two executions claiming the same Pod one wins and the other tries the
next idle Pod; with none left (or none Ready) the execution runs cold, in a Pod of its own, exactly as without
pools. The operator then writes the run configuration, the files, stdin and the plain variables to the runner's
stdin through attach (retried, as a cold Pod's go-ahead is, when it fails).

A pool's class is admitted as an execution of that class would be (an allowed image and RuntimeClass, limits within
the operator's maximums, a name of at most 63 characters); a refused pool gets no Pods and has the condition
`Ready=False` with reason `Invalid`. When the pool is deleted, its idle Pods, ConfigMap and NetworkPolicy go with
it; claimed Pods belong to their executions and stay.

### An execution that ran warm

A PythonExecution that claimed a warm Pod has the condition `Accepted=True` with reason `WarmPod` (its message names
the Pod and the pool; a cold one has reason `Accepted`), `status.podName` the pool's Pod (`<pool>-xxxxx`) and
`status.startTime` the time of the claim. The rest is as for a cold execution: the claimed Pod is never returned to
the pool, and is deleted when the execution finished. Until the work is handed over (an attach that failed is
retried), `Started` is `False` with reason `HandOverPending`. A claimed Pod that ends before the execution was handed
over to it fails the execution with the `Finished` reason `PodLost`: its program did not run.

### Example

```yaml
apiVersion: pyexec.io/v1alpha1
kind: PythonExecutionPool
metadata:
  name: small                  # at most 63 characters (it labels the Pods)
spec:
  replicas: 3
  pythonVersion: \"3.12\"
  limits: {memoryMB: 1024, cpu: \"1\", diskMB: 2048}
  network: none
```

serves, among others:

```yaml
apiVersion: pyexec.io/v1alpha1
kind: PythonExecution
metadata:
  name: hello
spec:
  pythonVersion: \"3.12\"
  limits: {memoryMB: 1024, cpu: 1000m, diskMB: 2048, timeoutSeconds: 30}
  source:
    files: [{name: main.py, content: \"print('hello')\"}]
  entrypoint: main.py
```

`kubectl scale pyexecpool/small --replicas 5` (or a HorizontalPodAutoscaler) resizes it.
";

/// What the schema of PythonSession cannot say: its lifecycle, and how the API server and the operator share it.
/// Kept in step with the operator's `session` module.
const SESSION_LIFECYCLE: &str = "\
### Lifecycle

The operator gives each session a ConfigMap `pyexec-session-<name>` (the session runner, the eval runner, the Pod
runner, the network fence `fence.json` and the requirements, mounted read-only at `/opt/pyexec`), a NetworkPolicy
of the same name (an execution's of the session's `network` mode, selecting the session's Pods by its uid) and one
Pod at a time, named `<name>-xxxxx`, labelled `pyexec.io/session: <name>`, `pyexec.io/session-uid: <uid>` and
`pyexec.io/session-pod: <n>` (its number). Its container `python` runs
`python -I /opt/pyexec/session_runner.py --mux` with stdin open (`stdin: true`, `stdinOnce: false`, no TTY) and
`PYEXEC_GATE=1`, and is locked down as an execution's (Pod Security \"restricted\", uid 1000, read-only root,
`/work` sized by `limits.diskMB`, no service account token). With `requirementsTxt`, an execution's `install` init
container first pip-installs them into `/deps` (binary wheels only unless the operator's `packageIndex.allowSdist`),
reaching the package index through a second NetworkPolicy, `pyexec-session-<name>-install`, that selects that Pod
alone.

- `Pending` until the Pod's runner is up: once its container runs, the operator deletes the install stage's policy
  (if any) and sends the go-ahead on the runner's stdin (attach); the runner checks that what the session must not
  reach does not answer (the cloud metadata endpoint, the Kubernetes API, without network DNS: an execution's
  fence), writes its report to its log, and starts the interpreter with `/deps` on `PYTHONPATH`. Once the operator
  read the report, `Ready`, with `status.podName` the Pod to attach to, `status.readyAt` set and
  `status.installedPackages` what was installed. A failed install fails the session (`InstallFailed`, pip's
  reason in `status.message`); a Pod that ends or fails before it was ready (a fence found open) fails it
  (`PodFailed`), and so does one not ready within the operator's `startupSeconds`, plus the package index's
  `timeoutSeconds` when it installs (`StartupTimeout`).
- While the session is `Ready`, a Pod that disappears (deleted: that is how the API server restarts the
  interpreter) or ends (out of memory, `os._exit`) is replaced by a new one, which installs the requirements again:
  `restarts` counts them, and the phase is `Pending` (reason `Restarting`) until the new Pod is ready.
- `Ended` once `maxLifetimeSeconds` passed since the resource's creation (`LifetimeExceeded`), or
  `idleTimeoutSeconds` since the later of `status.lastActivityAt` and `status.readyAt` (`IdleTimeout`: before the
  first call, and after a restart, the count starts when the Pod became ready); its Pod is deleted and
  `status.message` says why. The operator looks at each session again at its next expiry. The API server deletes ended sessions; the operator deletes `Ended` and
  `Failed` ones 10 minutes after they ended.
- `status.lastActivityAt` is the API server's: it writes it with a merge patch of the status after each call,
  and the operator never writes it.
- Refusals are an execution's of the same class and requirements (`ImageNotAllowed`, `RuntimeClassNotAllowed`,
  `LimitTooHigh`, `InstallUnavailable` without a package index, ...), with that reason.

### Example

```yaml
apiVersion: pyexec.io/v1alpha1
kind: PythonSession
metadata:
  name: analysis               # at most 63 characters (it labels the Pod)
spec:
  pythonVersion: \"3.12\"
  env: [{name: MODE, value: test}]
  limits: {memoryMB: 1024, cpu: \"1\", diskMB: 1024}
  network: none
  idleTimeoutSeconds: 600
  maxLifetimeSeconds: 3600
```
";

/// The reference as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# CRD reference\n\n\
         Generated from the CRDs (`cargo run -p pyexec-crds --bin crdgen -- --reference > docs/crd-reference.md`); \
         a test fails when it is stale. Design and examples: [kubernetes.md](kubernetes.md).\n\n\
         ## PythonExecution\n\n\
         Group `pyexec.io`, version `v1alpha1`, kind `PythonExecution`, namespaced, short name `pyexec`: one \
         execution, which the operator runs in a Pod (a new one, or a warm pool's).\n",
    );
    tables(&serde_json::to_value(PythonExecution::crd()).unwrap_or_default(), &mut out);
    out.push_str(
        "\n## PythonExecutionPool\n\n\
         Group `pyexec.io`, version `v1alpha1`, kind `PythonExecutionPool`, namespaced, short name `pyexecpool`: \
         a warm pool of idle execution Pods of one class, which the PythonExecutions that fit it claim instead of \
         waiting for a new Pod ([Warm pools](kubernetes.md#warm-pools)).\n",
    );
    let pool = serde_json::to_value(PythonExecutionPool::crd()).unwrap_or_default();
    subresources(&pool, &mut out);
    out.push('\n');
    out.push_str(POOL_MATCHING);
    tables(&pool, &mut out);
    out.push_str(
        "\n## PythonSession\n\n\
         Group `pyexec.io`, version `v1alpha1`, kind `PythonSession`, namespaced, short name `pyexecsession`: a \
         Python interpreter that keeps its state between calls, in a Pod of its own ([Sessions](kubernetes.md#sessions)).\n",
    );
    let session = serde_json::to_value(PythonSession::crd()).unwrap_or_default();
    subresources(&session, &mut out);
    out.push('\n');
    out.push_str(SESSION_LIFECYCLE);
    tables(&session, &mut out);
    out
}

/// The tables of `spec` and `status` of a CRD (its first version), with the rules of each.
fn tables(crd: &Value, out: &mut String) {
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for part in ["spec", "status"] {
        out.push_str(&format!("\n### `{part}`\n\n"));
        if let Some(rules) = schema["properties"][part]["x-kubernetes-validations"].as_array() {
            for rule in rules {
                out.push_str(&format!(
                    "Rule: `{}` ({})\n\n",
                    rule["rule"].as_str().unwrap_or(""),
                    rule["message"].as_str().unwrap_or("")
                ));
            }
        }
        out.push_str("| field | type | default | constraints | description |\n|---|---|---|---|---|\n");
        walk(&schema["properties"][part], part, out);
    }
}

/// The subresources and printer columns of a CRD (its first version).
fn subresources(crd: &Value, out: &mut String) {
    let version = &crd["spec"]["versions"][0];
    let scale = &version["subresources"]["scale"];
    if scale.is_object() {
        out.push_str(&format!(
            "\nSubresources: `status`, and `scale` (`kubectl scale`, a HorizontalPodAutoscaler): its replicas are \
             `{}` (desired) and `{}` (current), its label selector `{}`.\n",
            scale["specReplicasPath"].as_str().unwrap_or(""),
            scale["statusReplicasPath"].as_str().unwrap_or(""),
            scale["labelSelectorPath"].as_str().unwrap_or(""),
        ));
    }
    if let Some(columns) = version["additionalPrinterColumns"].as_array() {
        let shown: Vec<String> = columns
            .iter()
            .map(|c| format!("{} (`{}`)", c["name"].as_str().unwrap_or(""), c["jsonPath"].as_str().unwrap_or("")))
            .collect();
        out.push_str(&format!("\n`kubectl get` columns: {}.\n", shown.join(", ")));
    }
}

fn walk(node: &Value, path: &str, out: &mut String) {
    let Some(properties) = node["properties"].as_object() else { return };
    let required: Vec<&str> =
        node["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for (name, field) in properties {
        let here = format!("{path}.{name}");
        let (kind, items) = type_of(field);
        let mut constraints = Vec::new();
        if required.contains(&name.as_str()) {
            constraints.push("required".to_string());
        }
        for (key, label) in [
            ("minimum", "min"),
            ("maximum", "max"),
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("maxItems", "max items"),
            ("pattern", "pattern"),
        ] {
            let value = field.get(key).or_else(|| items.and_then(|i| i.get(key)));
            if let Some(v) = value {
                let shown = match v {
                    Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| format!("{}", f as i64)),
                    Value::String(s) => format!("`{s}`"),
                    other => other.to_string(),
                };
                constraints.push(format!("{label} {shown}"));
            }
        }
        if let Some(values) = field["enum"].as_array() {
            let names: Vec<String> = values.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")).collect();
            constraints.push(format!("one of {}", names.join(", ")));
        }
        for rule in field["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(items.and_then(|i| i["x-kubernetes-validations"].as_array()).into_iter().flatten())
        {
            constraints.push(format!("rule: {}", rule["message"].as_str().unwrap_or("")));
        }
        let default = match &field["default"] {
            Value::Null => String::new(),
            Value::Object(_) => "see fields".into(),
            v => format!("`{v}`"),
        };
        let description = field["description"].as_str().unwrap_or("").replace('\n', " ").replace('|', "\\|");
        out.push_str(&format!(
            "| `{here}` | {kind} | {default} | {} | {description} |\n",
            constraints.join("; ").replace('|', "\\|")
        ));
        walk(field, &here, out);
        if let Some(items) = items {
            walk(items, &format!("{here}[]"), out);
        }
    }
}

fn type_of(field: &Value) -> (String, Option<&Value>) {
    if field["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return ("int or string".into(), None);
    }
    match field["type"].as_str() {
        Some("array") => {
            let items = &field["items"];
            let (inner, _) = type_of(items);
            (format!("list of {inner}"), Some(items))
        }
        Some(t) => (t.to_string(), None),
        None if field["enum"].is_array() => ("string".into(), None),
        None => ("object".into(), None),
    }
}
