//! Every object the operator generates, and every example in `deploy/examples/`, checked against the upstream
//! schemas (strict, Kubernetes 1.33 and 1.37, with kubernetes-validate) and Pod Security "restricted" plus the
//! sandbox's own rules, by `scripts/k8s/validate_manifests.py`; the examples against the CRD schema and its CEL
//! rules. The Python tools come from `scripts/k8s/install-tools.sh` (the test command runs it); without them the
//! test says so loudly and, when `PYEXEC_REQUIRE_K8S_TOOLS=1` (set by the test command), fails.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pyexec_crds::PythonExecution;
use pyexec_operator::admission::{admit, inline_requirements};
use pyexec_operator::config::OperatorConfig;
use pyexec_operator::desired::{PolicyStage, config_map, network_policy, pod};
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The validator's interpreter, or `None` (after a loud note) when the tools are not installed.
fn validator() -> Option<PathBuf> {
    let python = root().join("target/k8s-venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let message = "kubernetes-validate is not installed: run scripts/k8s/install-tools.sh";
    if std::env::var("PYEXEC_REQUIRE_K8S_TOOLS").as_deref() == Ok("1") {
        panic!("{message}");
    }
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("\n!!! SKIPPED: {message}\n").as_bytes());
    None
}

fn validate(python: &Path, args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(python)
        .arg(root().join("scripts/k8s/validate_manifests.py"))
        .args(args)
        .args(files)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn execution(name: &str, spec: serde_json::Value) -> PythonExecution {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("0b7c6f0e-1f1e-4c43-9d3b-{:012}", name.len()), "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn config() -> OperatorConfig {
    serde_yaml_ng::from_str(
        r#"
packageIndex:
  url: https://pypi.internal.example/simple
  egressTo:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: pypi-proxy}}
    podSelector: {matchLabels: {app: devpi}}
archives: {url: "http://python-executor.pyexec-system.svc:8080/internal/v1/archives"}
allowedRuntimeClasses: [gvisor]
egress: {blockedCidrs: ["10.96.0.0/12", "fd00:10:96::/112"]}
docker: {enabled: true, namespaces: [team-a]}
allowSecretEnv: true
"#,
    )
    .unwrap()
}

/// Every kind of execution the operator builds objects for.
fn executions() -> Vec<PythonExecution> {
    let main = serde_json::json!({"files": [{"name": "main.py", "content": "print(1)"}]});
    vec![
        execution("plain", serde_json::json!({"source": main, "entrypoint": "main.py"})),
        execution("egress", serde_json::json!({"source": main, "network": "egress", "runtimeClassName": "gvisor"})),
        execution("installs", serde_json::json!({"source": main, "requirements": "numpy\n", "evalLastExpr": true})),
        execution(
            "archive",
            serde_json::json!({"source": {"archive": {"id": "a1b2", "sha256": "a".repeat(64), "sizeBytes": 2048}}, "requirements": "six"}),
        ),
        execution(
            "configmap",
            serde_json::json!({"source": {"configMap": {"name": "code"}}, "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
        ),
    ]
}

fn write_yaml<T: serde::Serialize>(dir: &Path, name: &str, object: &T) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, serde_yaml_ng::to_string(object).unwrap()).unwrap();
    path
}

#[test]
fn generated_objects_pass_the_schemas_and_pod_security_restricted() {
    let Some(python) = validator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let mut files = Vec::new();
    for cr in executions() {
        let name = cr.metadata.name.clone().unwrap();
        let admitted = admit(&cr, &config, inline_requirements(&cr)).unwrap();
        files.push(write_yaml(dir.path(), &format!("{name}-pod"), &pod(&cr, &admitted, &config, "nonce")));
        files.push(write_yaml(dir.path(), &format!("{name}-cm"), &config_map(&cr, &admitted, &config)));
        for stage in [PolicyStage::Install, PolicyStage::Run] {
            files.push(write_yaml(
                dir.path(),
                &format!("{name}-np-{}", stage.name()),
                &network_policy(&cr, &config, stage),
            ));
        }
    }
    let mut user_namespaces = config.clone();
    user_namespaces.host_users = true;
    let cr = &executions()[0];
    let admitted = admit(cr, &user_namespaces, None).unwrap();
    files.push(write_yaml(dir.path(), "userns-pod", &pod(cr, &admitted, &user_namespaces, "nonce")));

    let (ok, out) = validate(&python, &["--pss", "restricted", "--sandbox-extras"], &files);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("OK ")).count(), files.len(), "{out}");
}

#[test]
fn the_docker_path_is_the_one_privileged_exception() {
    let Some(python) = validator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let main = serde_json::json!({"files": [{"name": "main.py", "content": "print(1)"}]});
    let cr = execution("docker", serde_json::json!({"source": main, "docker": true, "network": "egress"}));
    let admitted = admit(&cr, &config, None).unwrap();
    let docker_pod = pod(&cr, &admitted, &config, "nonce");
    let file = write_yaml(dir.path(), "docker-pod", &docker_pod);
    let (ok, out) = validate(&python, &[], std::slice::from_ref(&file));
    assert!(ok, "the schemas accept it: {out}");
    let (ok, out) = validate(&python, &["--pss", "restricted"], std::slice::from_ref(&file));
    assert!(!ok && out.contains("privileged"), "restricted refuses the DinD sidecar, as documented: {out}");
    // Exactly the daemon is the exception: every finding is about it (the first init container).
    let daemon = docker_pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap();
    assert_eq!(daemon.len(), 1);
    let findings: Vec<&str> = out.lines().filter(|l| l.starts_with("ERROR ")).collect();
    assert!(!findings.is_empty(), "{out}");
    for finding in &findings {
        assert!(finding.contains(": spec.initContainers[0]."), "only the daemon may break restricted: {finding}");
    }
    // Without the daemon (and its data root), the rest of the Pod is as locked down as every other.
    let mut rest = docker_pod.clone();
    let spec = rest.spec.as_mut().unwrap();
    spec.init_containers = None;
    spec.volumes.as_mut().unwrap().retain(|v| v.name != "docker-data");
    let file = write_yaml(dir.path(), "docker-pod-without-daemon", &rest);
    let (ok, out) = validate(&python, &["--pss", "restricted", "--sandbox-extras"], &[file]);
    assert!(ok, "the program's container stays restricted: {out}");
    // Docker is not offered elsewhere, nor without network.
    let mut elsewhere = execution("docker", serde_json::json!({"source": main, "docker": true, "network": "egress"}));
    elsewhere.metadata.namespace = Some("team-b".into());
    assert_eq!(admit(&elsewhere, &config, None).unwrap_err().reason, "DockerNotAllowed");
    let offline = execution("docker", serde_json::json!({"source": main, "docker": true}));
    assert_eq!(admit(&offline, &config, None).unwrap_err().reason, "DockerNeedsNetwork");
}

#[test]
fn the_crd_and_the_examples_are_valid() {
    let examples: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/examples"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(examples.len() >= 5);
    // CEL rules, evaluated as the API server would.
    for file in &examples {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_json::to_value(serde_yaml_ng::Value::deserialize(doc).unwrap()).unwrap();
            if value["kind"] == "PythonExecution" {
                let cr: PythonExecution = serde_json::from_value(value).unwrap();
                cr.validate_cel().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
        }
    }
    let Some(python) = validator() else { return };
    let crd = root().join("crds/pythonexecution.yaml");
    let (ok, out) = validate(&python, &[], std::slice::from_ref(&crd));
    assert!(ok, "the CRD object: {out}");
    let crd_arg = format!("--crd={}", crd.display());
    let (ok, out) = validate(&python, &[&crd_arg, "--pss", "restricted"], &examples);
    assert!(ok, "{out}");
    assert!(!out.contains("SKIP"), "every example was checked: {out}");
}

#[test]
fn session_objects_pass_the_schemas_and_pod_security_restricted() {
    let Some(python) = validator() else { return };
    use pyexec_operator::session::desired as session;
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let mut files = Vec::new();
    let specs = [
        ("plain", serde_json::json!({"env": [{"name": "MODE", "value": "test"}]})),
        ("egress", serde_json::json!({"network": "egress", "runtimeClassName": "gvisor", "limits": {"cpu": "500m"}})),
        ("installs", serde_json::json!({"requirementsTxt": "numpy\npandas\n"})),
    ];
    for (name, spec) in specs {
        let cr: pyexec_crds::PythonSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonSession",
            "metadata": {"name": name, "namespace": "team-a", "uid": "5e55-0001", "generation": 1},
            "spec": spec,
        }))
        .unwrap();
        let admitted = session::admit(&cr, &config).unwrap();
        let mut pod = session::pod(&cr, &admitted, &config, 0, 3720);
        // The API server names it from generateName; the validator needs a name.
        pod.metadata.name = Some(format!("{name}-x1y2z"));
        files.push(write_yaml(dir.path(), &format!("session-{name}-pod"), &pod));
        files.push(write_yaml(
            dir.path(),
            &format!("session-{name}-cm"),
            &session::config_map(&cr, &admitted, &config),
        ));
        files.push(write_yaml(dir.path(), &format!("session-{name}-np"), &session::network_policy(&cr, &config)));
        if admitted.installs() {
            assert!(pod.spec.as_ref().unwrap().init_containers.is_some(), "the install container is checked too");
            let install = session::install_policy(&cr, &config, 0);
            files.push(write_yaml(dir.path(), &format!("session-{name}-np-install"), &install));
        }
    }
    let (ok, out) = validate(&python, &["--pss", "restricted", "--sandbox-extras"], &files);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("OK ")).count(), files.len(), "{out}");
    let crd = root().join("crds/pythonsession.yaml");
    let (ok, out) = validate(&python, &[], std::slice::from_ref(&crd));
    assert!(ok, "the session CRD object: {out}");
}
