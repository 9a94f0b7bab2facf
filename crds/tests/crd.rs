//! The committed CRD matches the types, and its CEL rules accept and refuse what they should (evaluated with kube's
//! CEL implementation, as the API server would).

#![allow(clippy::unwrap_used)]

use pyexec_crds::*;

#[test]
fn the_committed_crd_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pythonexecution.yaml")).unwrap();
    assert!(
        committed == crd_yaml(),
        "crds/pythonexecution.yaml is stale: run `cargo run -p pyexec-crds --bin crdgen > crds/pythonexecution.yaml`"
    );
}

#[test]
fn the_committed_pool_crd_is_current() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pythonexecutionpool.yaml")).unwrap_or_default();
    assert!(
        committed == pool_crd_yaml(),
        "crds/pythonexecutionpool.yaml is stale: run `cargo run -p pyexec-crds --bin crdgen -- --pool > crds/pythonexecutionpool.yaml`"
    );
}

#[test]
fn pool_cel_rules_refuse_an_image_and_a_python_version_together() {
    let pool = |spec: serde_json::Value| -> PythonExecutionPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecutionPool",
            "metadata": {"name": "p", "namespace": "default"}, "spec": spec,
        }))
        .unwrap()
    };
    pool(serde_json::json!({"replicas": 3, "pythonVersion": "3.12"})).validate_cel().unwrap();
    pool(serde_json::json!({"replicas": 3, "image": "python:3.12-slim", "network": "egress"})).validate_cel().unwrap();
    let err = pool(serde_json::json!({"image": "python:3.12-slim", "pythonVersion": "3.12"}))
        .validate_cel()
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most one of image, pythonVersion"), "{err}");
}

#[test]
fn the_committed_reference_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/crd-reference.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == reference::markdown(),
        "docs/crd-reference.md is stale: run `cargo run -p pyexec-crds --bin crdgen -- --reference > docs/crd-reference.md`"
    );
}

fn execution(spec: serde_json::Value) -> PythonExecution {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution",
        "metadata": {"name": "x", "namespace": "default"}, "spec": spec,
    }))
    .unwrap()
}

fn source() -> serde_json::Value {
    serde_json::json!({"files": [{"name": "main.py", "content": "print(1)"}]})
}

#[test]
fn cel_rules_accept_good_objects() {
    execution(serde_json::json!({"source": source()})).validate_cel().unwrap();
    let full = execution(serde_json::json!({
        "source": {"configMap": {"name": "code"}}, "entrypoint": "pkg/main.py", "pythonVersion": "3.12",
        "env": [{"name": "A", "value": "1"}, {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "limits": {"timeoutSeconds": 30, "memoryMB": 256, "cpu": "500m", "diskMB": 100}, "network": "egress",
    }));
    full.validate_cel().unwrap();
    assert_eq!(full.spec.limits.cpu.0, "500m");
}

#[test]
fn cel_rules_refuse_bad_objects() {
    let cases = [
        (serde_json::json!({"source": {}}), "exactly one of files"),
        (
            serde_json::json!({"source": {"files": [{"name": "a.py", "content": ""}], "configMap": {"name": "c"}}}),
            "exactly one of files",
        ),
        (serde_json::json!({"source": {"files": [{"name": "../a.py", "content": ""}]}}), "relative paths"),
        (serde_json::json!({"source": {"files": [{"name": "a/./b.py", "content": ""}]}}), "relative paths"),
        (serde_json::json!({"source": source(), "entrypoint": "/etc/passwd"}), "relative path inside /work"),
        (serde_json::json!({"source": source(), "entrypoint": "a/../../x.py"}), "relative path inside /work"),
        (serde_json::json!({"source": source(), "env": [{"name": "A"}]}), "exactly one of value, valueFrom"),
    ];
    for (spec, message) in cases {
        let err = execution(spec.clone()).validate_cel().unwrap_err().to_string();
        assert!(err.contains(message), "{spec}: {err}");
    }
}

#[test]
fn the_spec_is_immutable() {
    let old = execution(serde_json::json!({"source": source()}));
    let mut new = old.clone();
    new.spec.args = vec!["--changed".into()];
    let err = new.validate_cel_update(&old).unwrap_err().to_string();
    assert!(err.contains("spec is immutable"), "{err}");
    let mut status_only = old.clone();
    status_only.status = Some(PythonExecutionStatus { phase: Some(Phase::Running), ..Default::default() });
    status_only.validate_cel_update(&old).unwrap();
}

#[test]
fn the_committed_session_crd_is_current() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pythonsession.yaml")).unwrap_or_default();
    assert!(
        committed == session_crd_yaml(),
        "crds/pythonsession.yaml is stale: run `cargo run -p pyexec-crds --bin crdgen -- --session > crds/pythonsession.yaml`"
    );
}

fn python_session(name: &str, spec: serde_json::Value) -> PythonSession {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonSession",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec,
    }))
    .unwrap()
}

#[test]
fn session_cel_rules_accept_good_sessions_and_refuse_bad_ones() {
    python_session("s", serde_json::json!({})).validate_cel().unwrap();
    let full = python_session(
        &"s".repeat(63),
        serde_json::json!({"pythonVersion": "3.12", "env": [{"name": "MODE", "value": "test"}],
                           "limits": {"memoryMB": 512, "cpu": "500m", "diskMB": 100}, "network": "egress",
                           "idleTimeoutSeconds": 60, "maxLifetimeSeconds": 600}),
    );
    full.validate_cel().unwrap();
    assert_eq!((full.spec.idle_timeout_seconds, full.spec.limits.cpu.0.as_str()), (60, "500m"));
    let both = python_session("s", serde_json::json!({"image": "python:3.12-slim", "pythonVersion": "3.12"}));
    let err = both.validate_cel().unwrap_err().to_string();
    assert!(err.contains("at most one of image, pythonVersion"), "{err}");
    let long = python_session(&"s".repeat(64), serde_json::json!({}));
    let err = long.validate_cel().unwrap_err().to_string();
    assert!(err.contains("at most 63 characters"), "{err}");
}

#[test]
fn a_sessions_spec_is_immutable_and_its_status_is_not() {
    let old = python_session("s", serde_json::json!({}));
    let mut new = old.clone();
    new.spec.idle_timeout_seconds = 5;
    let err = new.validate_cel_update(&old).unwrap_err().to_string();
    assert!(err.contains("spec is immutable"), "{err}");
    let mut status_only = old.clone();
    status_only.status = Some(PythonSessionStatus { phase: Some(SessionPhase::Ready), ..Default::default() });
    status_only.validate_cel_update(&old).unwrap();
}
