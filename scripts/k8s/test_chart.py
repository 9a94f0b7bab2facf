"""Tests of the Helm chart charts/python-executor, offline (no cluster). Run with the venv and the helm binary that
scripts/k8s/install-tools.sh installs under target/:

    target/k8s-venv/bin/python -m pytest scripts/k8s/test_chart.py

Value sets: the chart's defaults and every file under charts/python-executor/ci/ (the chart-testing convention).
For each: `helm lint --strict`, `helm template`, every rendered object through validate_manifests.py (schemas of
Kubernetes 1.33 and 1.37, the two CRDs, Pod Security "restricted"), minimal RBAC, the operator's configuration file
against the keys operator/src/config.rs accepts, and the wiring between the API server, the operator and the
Secrets. Without helm the tests are skipped, unless PYEXEC_REQUIRE_K8S_TOOLS=1 (then they fail).
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "python-executor"
CRD = ROOT / "crds" / "pythonexecution.yaml"
POOL_CRD = ROOT / "crds" / "pythonexecutionpool.yaml"
SESSION_CRD = ROOT / "crds" / "pythonsession.yaml"
HELM = ROOT / "target" / "k8s-tools" / "bin" / "helm"
VALIDATOR = ROOT / "scripts" / "k8s" / "validate_manifests.py"
DOCS = ROOT / "docs" / "helm.md"
RELEASE = "demo"
NAMESPACE = "pyexec-system"

if not HELM.exists():
    if os.environ.get("PYEXEC_REQUIRE_K8S_TOOLS") == "1":
        raise RuntimeError(f"{HELM.relative_to(ROOT)} is missing: run scripts/k8s/install-tools.sh")
    pytest.skip("helm is not installed (scripts/k8s/install-tools.sh)", allow_module_level=True)

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
VALUE_SETS = {"default": None, **{p.stem: p for p in CI_VALUES}}

# The keys operator/src/config.rs accepts (serde camelCase with deny_unknown_fields; `MB` suffixes are spelled
# as in the CRD: `tmpMB`, `memoryMB`, `sizeMB`, `diskMB`). A nested dict lists a struct's fields; None
# marks a value checked no deeper (maps, lists of Kubernetes objects). Keep in step with config.rs.
ACCEPTED_CONFIG_KEYS: dict[str, Any] = {
    "images": None,
    "defaultPythonVersion": None,
    "allowedImages": None,
    "allowedRuntimeClasses": None,
    "allowSecretEnv": None,
    "requireDefaultDeny": None,
    "hostUsers": None,
    "packageIndex": {
        "url": None, "egressTo": None, "ports": None, "allowSdist": None, "timeoutSeconds": None,
        "memoryMB": None, "sizeMB": None,
    },
    "egress": {"blockedCidrs": None, "dns": None},
    "docker": {"enabled": None, "namespaces": None, "image": None},
    "maxLimits": {"timeoutSeconds": None, "memoryMB": None, "cpuMillis": None, "diskMB": None},
    "tmpMB": None,
    "outputLimitBytes": None,
    "files": {"maxBytes": None, "maxCount": None},
    "startupSeconds": None,
    "poolRefill": {"pods": None, "intervalSeconds": None},
    "defaultTtlSecondsAfterFinished": None,
    "logs": {"dir": None, "url": None, "tokensDir": None, "tokenFile": None},
    "archives": {"url": None, "tokenFile": None},
    "imagePullPolicy": None,
}

# The RBAC the components need (docs/kubernetes.md), as (apiGroup, resource) -> verbs. Exactly these, no more.
APISERVER_RULES = {
    ("pyexec.io", "pythonexecutions"): {"get", "list", "watch", "create", "patch", "delete"},
    # The records of session calls (spec.sessionRef) are written by the API server that made the call.
    ("pyexec.io", "pythonexecutions/status"): {"patch"},
    # update: the busy annotation of a call is taken with an update that names the version read.
    ("pyexec.io", "pythonsessions"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("pyexec.io", "pythonsessions/status"): {"patch"},
    ("", "pods"): {"get", "delete"},
    ("", "pods/log"): {"get"},
    ("", "pods/attach"): {"create"},
}
OPERATOR_RULES = {
    ("pyexec.io", "pythonexecutions"): {"get", "list", "watch", "patch", "update", "delete"},
    ("pyexec.io", "pythonexecutions/status"): {"get", "patch", "update"},
    ("pyexec.io", "pythonexecutions/finalizers"): {"update"},
    ("pyexec.io", "pythonexecutionpools"): {"get", "list", "watch"},
    ("pyexec.io", "pythonexecutionpools/status"): {"get", "patch", "update"},
    ("pyexec.io", "pythonexecutionpools/finalizers"): {"update"},
    ("pyexec.io", "pythonsessions"): {"get", "list", "watch", "delete"},
    ("pyexec.io", "pythonsessions/status"): {"get", "patch", "update"},
    ("pyexec.io", "pythonsessions/finalizers"): {"update"},
    ("", "pods"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "pods/log"): {"get"},
    ("", "pods/attach"): {"create", "get"},
    ("", "configmaps"): {"get", "list", "watch", "create", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch", "delete"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"}}


# ------------------------------------------------------------------------------------------------ rendering


@functools.cache
def helm_home() -> str:
    """A throwaway HOME (helm writes its cache and config there); removed at exit."""
    home = tempfile.mkdtemp(prefix="pyexec-helm-home-")
    atexit.register(shutil.rmtree, home, True)
    return home


def helm(*args: str) -> subprocess.CompletedProcess:
    home = helm_home()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "XDG_CACHE_HOME": f"{home}/cache",
        "XDG_CONFIG_HOME": f"{home}/config",
        "XDG_DATA_HOME": f"{home}/data",
        # No cluster: `lookup` finds nothing and nothing is ever contacted.
        "KUBECONFIG": f"{home}/no-kubeconfig",
    }
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def values_args(values: Path | None) -> list[str]:
    return ["-f", str(values)] if values else []


@functools.cache
def merged_values(name: str) -> dict:
    """The chart's values with the value set's file merged in (as Helm merges maps; lists are replaced)."""
    def merge(base: Any, override: Any) -> Any:
        if isinstance(base, dict) and isinstance(override, dict):
            out = dict(base)
            for k, v in override.items():
                out[k] = merge(base.get(k), v) if k in base else v
            return out
        return override

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if VALUE_SETS[name]:
        values = merge(values, yaml.safe_load(VALUE_SETS[name].read_text()))
    return values


@functools.cache
def render(name: str) -> str:
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(VALUE_SETS[name]))
    assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
    return result.stdout


@functools.cache
def objects(name: str) -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all(render(name)) if d)


def of_kind(name: str, kind: str) -> list[dict]:
    return [o for o in objects(name) if o["kind"] == kind]


def named(name: str, kind: str, component: str) -> dict:
    found = [o for o in of_kind(name, kind)
             if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"{name}: expected one {kind} of component {component}, got {len(found)}"
    return found[0]


def executions_namespace(name: str) -> str:
    executions = merged_values(name)["executions"]
    return executions["namespace"] or (f"{RELEASE}-executions" if executions["dedicatedNamespace"] else NAMESPACE)


def operator_config(name: str) -> dict:
    cm = named(name, "ConfigMap", "operator")
    return yaml.safe_load(cm["data"]["config.yaml"])


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def mounted_files(pod_spec: dict, container: dict) -> set[str]:
    """Paths of the files the container sees from Secret, projected and ConfigMap volumes with items."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    files = set()
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        sources = volume.get("projected", {}).get("sources", [])
        if "secret" in volume:
            sources = [{"secret": volume["secret"]}]
            if "items" not in volume["secret"]:
                files.add(f"{mount['mountPath']}/*")
        for source in sources:
            for item in next(iter(source.values())).get("items", []):
                files.add(f"{mount['mountPath']}/{item['path']}")
        if "configMap" in volume:
            files.add(f"{mount['mountPath']}/*")
    return files


param_sets = pytest.mark.parametrize("name", list(VALUE_SETS))


# ----------------------------------------------------------------------------------------------------- the tests


def test_there_are_enough_value_sets():
    assert len(CI_VALUES) >= 4, "charts/python-executor/ci/ needs at least four value sets"


@param_sets
def test_lint_strict(name):
    result = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *values_args(VALUE_SETS[name]))
    assert result.returncode == 0, result.stdout + result.stderr


@param_sets
def test_rendered_objects_are_valid_and_restricted(name, tmp_path):
    rendered = tmp_path / f"{name}.yaml"
    rendered.write_text(render(name))
    result = subprocess.run(
        [sys.executable, str(VALIDATOR), "--crd", str(CRD), "--crd", str(POOL_CRD), "--k8s-version", "1.33.0",
         "--k8s-version", "1.37.0", "--pss", "restricted", str(rendered)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(objects(name))
    for line in lines:
        assert line.startswith("OK ") or (line.startswith("SKIP ") and " ServiceMonitor/" in line), line


@param_sets
def test_workloads_are_locked_down(name):
    for kind in ("Deployment", "Pod"):
        for obj in of_kind(name, kind):
            spec = obj["spec"]["template"]["spec"] if kind == "Deployment" else obj["spec"]
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            talks_to_api = component in ("apiserver", "operator")
            assert spec["automountServiceAccountToken"] is talks_to_api, (obj["metadata"]["name"], component)
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for c in spec["containers"] + spec.get("initContainers", []):
                sc = c["securityContext"]
                assert sc["runAsUser"] == 10001 and sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
                assert {"requests", "limits"} <= set(c["resources"]), c["name"]
                assert not c["image"].endswith(":latest") and ":" in c["image"].rsplit("/", 1)[-1], c["image"]
                if kind == "Deployment":
                    assert "livenessProbe" in c and "readinessProbe" in c, c["name"]


@param_sets
def test_rbac_is_minimal(name):
    values = merged_values(name)
    watch_all = values["operator"]["watchAllNamespaces"]
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects(name) if o["kind"] in ("Role", "ClusterRole")}
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert not rule.get("nonResourceURLs"), rule
    cluster_roles = [k for k in roles if k[0] == "ClusterRole"]
    assert bool(cluster_roles) == watch_all, cluster_roles
    assert bool(of_kind(name, "ClusterRoleBinding")) == watch_all

    def granted(sa: str) -> dict[tuple[str, str, str], set[str]]:
        """(namespace or '*', group, resource) -> verbs bound to the service account."""
        out: dict[tuple[str, str, str], set[str]] = {}
        for binding in of_kind(name, "RoleBinding") + of_kind(name, "ClusterRoleBinding"):
            if not any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == NAMESPACE
                       for s in binding["subjects"]):
                continue
            role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
            scope = binding["metadata"].get("namespace", "*")
            if binding["kind"] == "RoleBinding":
                assert role["metadata"]["namespace"] == scope
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        out.setdefault((scope, group, resource), set()).update(rule["verbs"])
        return out

    def expect(rules: dict, scope: str) -> dict:
        return {(scope, g, r): v for (g, r), v in rules.items()}

    api_sa = named(name, "Deployment", "apiserver")["spec"]["template"]["spec"]["serviceAccountName"]
    op_sa = named(name, "Deployment", "operator")["spec"]["template"]["spec"]["serviceAccountName"]
    assert granted(api_sa) == expect(APISERVER_RULES, executions_namespace(name))
    operator_scope = "*" if watch_all else executions_namespace(name)
    assert granted(op_sa) == {**expect(OPERATOR_RULES, operator_scope), **expect(LEASE_RULES, NAMESPACE)}
    # get/update/patch of the Lease only on its fixed name.
    lease_role = next(r for r in roles.values() if any("leases" in rule["resources"] for rule in r["rules"]))
    for rule in lease_role["rules"]:
        if set(rule["verbs"]) - {"create"}:
            assert rule.get("resourceNames") == ["pyexec-operator"], rule


def test_crd_copy_is_identical():
    assert (CHART / "crds" / "pythonexecution.yaml").read_bytes() == CRD.read_bytes(), (
        "charts/python-executor/crds/pythonexecution.yaml differs from crds/pythonexecution.yaml: copy it again")
    pool = ROOT / "crds" / "pythonexecutionpool.yaml"
    assert (CHART / "crds" / "pythonexecutionpool.yaml").read_bytes() == pool.read_bytes(), (
        "charts/python-executor/crds/pythonexecutionpool.yaml differs from crds/pythonexecutionpool.yaml: copy it again")
    assert (CHART / "crds" / "pythonsession.yaml").read_bytes() == SESSION_CRD.read_bytes(), (
        "charts/python-executor/crds/pythonsession.yaml differs from crds/pythonsession.yaml: copy it again")


@pytest.mark.parametrize("bad, words", [
    ({"apiserver": {"replicas": "two"}}, ["/apiserver/replicas", "integer"]),
    ({"apiserver": {"replicas": "two"}, "bogusTopLevel": 1}, ["/apiserver/replicas", "bogusTopLevel"]),
    ({"operator": {"config": {"tmpMb": 100}}}, ["tmpMb"]),
    ({"operator": {"replicass": 2}}, ["replicass"]),
    ({"executions": {"podSecurity": {"enforce": "strict"}}}, ["/executions/podSecurity/enforce"]),
    ({"apiserver": {"runtimeClassName": "gvisor"}}, ["apiserver.runtimeClassName", "allowedRuntimeClasses"]),
    ({"operator": {"config": {"defaultPythonVersion": "3.9"}}}, ["operator.config.defaultPythonVersion"]),
    ({"executions": {"namespace": NAMESPACE}}, ["executions.namespace", "dedicatedNamespace"]),
    ({"packageProxy": {"enabled": True}, "operator": {"config": {"packageIndex": {"url": "https://x/simple"}}}},
     ["operator.config.packageIndex.url"]),
    ({"packageProxy": {"enabled": True, "replicas": 2, "persistence": {"enabled": True}}}, ["packageProxy.replicas"]),
    ({"apiserver": {"persistence": {"enabled": True, "accessModes": ["ReadWriteOnce"]}}},
     ["apiserver.persistence", "ReadWriteMany"]),
    ({"operator": {"config": {"docker": {"enabled": True, "namespaces": ["pyexec-executions"]}}},
      "executions": {"namespace": "pyexec-executions", "createNamespace": True}},
     ["operator.config.docker.namespaces", "pyexec-executions", "executions.podSecurity.enforce"]),
    ({"operator": {"config": {"docker": {"enabled": True, "namespaces": ["*"]}}}},
     ["/operator/config/docker/namespaces/0"]),
    ({"operator": {"config": {"packageIndex": {"url": "https://pypi.internal/simple", "egressTo": []}}}},
     ["/operator/config/packageIndex"]),
    ({"apiKeys": {"keys": ["short"]}}, ["/apiKeys/keys/0"]),
    ({"operator": {"image": {"digest": "sha256:abc"}}}, ["/operator/image/digest"]),
    ({"test": {"image": {"digest": "md5:" + "a" * 64}}}, ["/test/image/digest"]),
    ({"operator": {"imageDigests": {"python": {"3.9": "sha256:" + "a" * 64}}}}, ["operator.imageDigests.python", "3.9"]),
    ({"operator": {"imageDigests": {"docker": "sha256:" + "A" * 64}}}, ["/operator/imageDigests/docker"]),
    ({"logsToken": {"extraNamespaces": ["Team_B"]}}, ["/logsToken/extraNamespaces/0"]),
    ({"pools": [{"name": "Small_Pool"}]}, ["/pools/0/name"]),
    ({"pools": [{"replicas": 2}]}, ["/pools/0", "name"]),
    ({"pools": [{"name": "small", "replicas": -1}]}, ["/pools/0/replicas"]),
    ({"pools": [{"name": "small", "image": "python:3.12-slim", "pythonVersion": "3.12"}]}, ["/pools/0"]),
    ({"pools": [{"name": "small", "network": "public"}]}, ["/pools/0/network"]),
    ({"pools": [{"name": "small", "pythonVersion": "3.9"}]}, ["/pools/0/pythonVersion"]),
    ({"pools": [{"name": "small", "limits": {"cpu": "lots"}}]}, ["/pools/0/limits/cpu"]),
    ({"pools": [{"name": "small", "limits": {"memoryMB": 8}}]}, ["/pools/0/limits/memoryMB"]),
    ({"pools": [{"name": "small", "timeoutSeconds": 30}]}, ["/pools/0", "timeoutSeconds"]),
])
def test_bad_values_are_refused_naming_the_value(bad, words, tmp_path):
    values = tmp_path / "bad.yaml"
    values.write_text(yaml.safe_dump(bad))
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values))
    assert result.returncode != 0, f"accepted: {bad}"
    for word in words:
        assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"


def test_values_files_match_the_schema():
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for name in VALUE_SETS:
        jsonschema.validate(merged_values(name), schema)

    def closed(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{path} is not closed"
            for key, child in node.items():
                closed(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                closed(child, f"{path}/{i}")

    closed(schema, "")


def check_keys(value: Any, accepted: Any, path: str) -> None:
    if accepted is None:
        return
    assert isinstance(value, dict), f"{path} should be a mapping"
    unknown = set(value) - set(accepted)
    assert not unknown, f"keys {sorted(unknown)} at {path or '/'} are not accepted by operator/src/config.rs"
    for key, child in value.items():
        check_keys(child, accepted[key], f"{path}.{key}" if path else key)


@param_sets
def test_operator_config_has_only_accepted_keys_and_points_at_the_services(name):
    values = merged_values(name)
    config = operator_config(name)
    check_keys(config, ACCEPTED_CONFIG_KEYS, "")
    # The fields config.rs's check() insists on.
    assert config["defaultPythonVersion"] in config["images"]
    assert ("dir" in config.get("logs", {})) == ("url" in config.get("logs", {}))
    if "packageIndex" in config:
        assert config["packageIndex"]["egressTo"] and re.match(r"https?://", config["packageIndex"]["url"])
    # An empty dns list would allow no DNS at all: the chart leaves it out instead.
    assert config["egress"].get("dns", ["default"]) != []

    fullname = f"{RELEASE}-python-executor"
    api_service = named(name, "Service", "apiserver")
    op_service = named(name, "Service", "operator")
    api_port = api_service["spec"]["ports"][0]["port"]
    op_port = op_service["spec"]["ports"][0]["port"]
    assert api_service["metadata"]["name"] == fullname and api_port == 8080
    assert config["archives"]["url"] == f"http://{fullname}.{NAMESPACE}.svc:{api_port}/internal/v1/archives"
    operator = named(name, "Deployment", "operator")["spec"]["template"]["spec"]
    files = mounted_files(operator, operator["containers"][0])
    assert config["archives"]["tokenFile"] in files
    if values["operator"]["logStore"]["enabled"]:
        assert config["logs"]["url"] == f"http://{op_service['metadata']['name']}.{NAMESPACE}.svc:{op_port}"
        if values["logsToken"]["existingSecret"]:
            assert config["logs"]["tokenFile"] in files and "tokensDir" not in config["logs"]
        else:
            assert f"{config['logs']['tokensDir']}/*" in files and "tokenFile" not in config["logs"]
        mounts = {m["mountPath"] for m in operator["containers"][0]["volumeMounts"]}
        assert config["logs"]["dir"] in mounts
    else:
        assert "logs" not in config

    if values["packageProxy"]["enabled"]:
        proxy = named(name, "Service", "package-proxy")
        assert config["packageIndex"]["url"] == (
            f"http://{proxy['metadata']['name']}.{NAMESPACE}.svc:{proxy['spec']['ports'][0]['port']}/index/")
        (peer,) = config["packageIndex"]["egressTo"]
        proxy_pods = named(name, "Deployment", "package-proxy")["spec"]["template"]["metadata"]["labels"]
        assert peer["podSelector"]["matchLabels"].items() <= proxy_pods.items()
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
        assert config["packageIndex"]["ports"] == [{"port": 5000, "protocol": "TCP"}]
        tag = named(name, "Deployment", "package-proxy")["spec"]["template"]["spec"]["containers"][0]["image"]
        assert re.search(r":\d+\.\d+\.\d+$", tag), f"the proxy image must be pinned: {tag}"


def built_binary(name: str) -> Path | None:
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / name
        if path.exists():
            return path
    return None


@param_sets
def test_operator_accepts_the_rendered_config(name, tmp_path):
    """The operator binary (when built) reads the rendered file: it gets past the configuration and fails only
    at connecting to the (absent) cluster."""
    binary = built_binary("pyexec-operator")
    if binary is None:
        pytest.skip("target/{debug,release}/pyexec-operator is not built")
    config = tmp_path / "config.yaml"
    config.write_text(named(name, "ConfigMap", "operator")["data"]["config.yaml"])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none"),
           "RUST_BACKTRACE": "0"}
    result = subprocess.run([str(binary), "--config", str(config), "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert "connecting to the Kubernetes API" in result.stderr, result.stderr


@param_sets
def test_apiserver_accepts_the_rendered_environment(name, tmp_path):
    """The API server binary (when built) parses the rendered environment, files relocated to a temp dir."""
    binary = built_binary("pyexec-apiserver")
    if binary is None:
        pytest.skip("target/{debug,release}/pyexec-apiserver is not built")
    pod = named(name, "Deployment", "apiserver")["spec"]["template"]["spec"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none"),
           "RUST_BACKTRACE": "0"}
    for key, value in env_of(pod["containers"][0]).items():
        if not isinstance(value, str):  # the downward API
            value = "demo-python-executor-0"
        if value.startswith("/"):
            local = tmp_path / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            if key.endswith("_FILE"):
                local.write_text("secret-value-123\n")
            value = str(local)
        env[key] = value
    env["PYEXEC_PORT"] = "0"
    result = subprocess.run([str(binary)], capture_output=True, text=True, env=env, timeout=60)
    assert "connecting to the Kubernetes API" in result.stderr, result.stderr


@param_sets
def test_control_plane_wiring(name):
    values = merged_values(name)
    api_pod = named(name, "Deployment", "apiserver")["spec"]["template"]["spec"]
    op_pod = named(name, "Deployment", "operator")["spec"]["template"]["spec"]
    api, op = api_pod["containers"][0], op_pod["containers"][0]
    api_env, op_env = env_of(api), env_of(op)
    files = mounted_files(api_pod, api)

    assert api_env["PYEXEC_BACKEND"] == "kubernetes" and api_env["PYEXEC_PORT"] == "8080"
    assert api_env["PYEXEC_K8S_NAMESPACE"] == executions_namespace(name)
    versions = sorted(values["operator"]["config"]["images"])
    assert api_env["PYEXEC_K8S_PYTHON_VERSIONS"] == ",".join(versions)
    assert api_env["PYEXEC_DEFAULT_IMAGE"] == f"python:{values['operator']['config']['defaultPythonVersion']}-slim"
    assert api_env["PYEXEC_ARCHIVE_TOKEN_FILE"] in files
    assert ("PYEXEC_LOGS_TOKEN_FILE" in api_env) == values["operator"]["logStore"]["enabled"]
    assert ("PYEXEC_API_KEYS_FILE" in api_env) == values["apiKeys"]["enabled"]
    for key in ("PYEXEC_LOGS_TOKEN_FILE", "PYEXEC_API_KEYS_FILE"):
        if key in api_env:
            assert api_env[key] in files, key
    assert api_env.get("PYEXEC_K8S_RUNTIME_CLASS") == (values["apiserver"]["runtimeClassName"] or None)
    mounts = {m["mountPath"]: m["name"] for m in api["volumeMounts"]}
    data = next(v for v in api_pod["volumes"] if v["name"] == mounts[api_env["PYEXEC_DATA_DIR"]])
    assert ("persistentVolumeClaim" in data) == values["apiserver"]["persistence"]["enabled"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health" and api["ports"][0]["containerPort"] == 8080

    assert op_env["PYEXEC_OPERATOR_LISTEN"] == "0.0.0.0:8081"
    assert op_env["PYEXEC_OPERATOR_CONFIG"].startswith(next(
        m["mountPath"] for m in op["volumeMounts"] if m["name"] == "config"))
    assert op_env["POD_NAME"] == api_env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert op_env["PYEXEC_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    if values["operator"]["watchAllNamespaces"]:
        assert "PYEXEC_OPERATOR_WATCH_NAMESPACE" not in op_env
    else:
        assert op_env["PYEXEC_OPERATOR_WATCH_NAMESPACE"] == executions_namespace(name)
    assert op["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert op["readinessProbe"]["httpGet"]["path"] == "/readyz"

    # Both sides read the archive token from the same Secret and key.
    def secret_ref(pod: dict, path: str) -> tuple[str, str]:
        for volume in pod["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                for item in source.get("secret", {}).get("items", []):
                    if item["path"] == path:
                        return source["secret"]["name"], item["key"]
        raise AssertionError(path)

    assert secret_ref(api_pod, "archive-token") == secret_ref(op_pod, "archive-token")
    if values["operator"]["logStore"]["enabled"]:
        if values["logsToken"]["existingSecret"]:
            assert secret_ref(api_pod, "logs-token") == secret_ref(op_pod, "logs-token")
        else:
            # The API server holds its namespace's token, from the Secret whose every key the operator reads.
            secret, key = secret_ref(api_pod, "logs-token")
            assert key == executions_namespace(name)
            tokens = next(v for v in op_pod["volumes"] if v["name"] == "logs-tokens")
            assert tokens["secret"]["secretName"] == secret and "items" not in tokens["secret"]
    secrets = {s["metadata"]["name"]: s for s in of_kind(name, "Secret")}
    for path, setting in (("archive-token", "archiveToken"), ("logs-token", "logsToken"), ("api-keys", "apiKeys")):
        try:
            secret, key = secret_ref(api_pod, path)
        except AssertionError:
            continue
        existing = values[setting]["existingSecret"]
        if setting == "logsToken" and not existing:
            existing = values[setting]["existingTokensSecret"]
        if existing:
            assert secret == existing and secret not in secrets
        else:
            assert base64.b64decode(secrets[secret]["data"][key]).strip(), (secret, key)


def rendered_with(tmp_path: Path, values: dict) -> list[dict]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(path))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def log_tokens_of(docs: list[dict]) -> tuple[dict, dict, dict]:
    """The operator's `logs` configuration, its Pod spec, and the API server's Pod spec."""
    def component(kind: str, name: str) -> dict:
        (found,) = [d for d in docs if d["kind"] == kind
                    and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name]
        return found
    config = yaml.safe_load(component("ConfigMap", "operator")["data"]["config.yaml"])
    return (config["logs"], component("Deployment", "operator")["spec"]["template"]["spec"],
            component("Deployment", "apiserver")["spec"]["template"]["spec"])


def test_log_store_tokens_are_one_per_namespace(tmp_path):
    docs = rendered_with(tmp_path, {"operator": {"watchAllNamespaces": True},
                                    "logsToken": {"extraNamespaces": ["team-b", "team-c"]}})
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-logs-tokens")]
    assert sorted(secret["data"]) == sorted([f"{RELEASE}-executions", "team-b", "team-c"])
    tokens = [base64.b64decode(v) for v in secret["data"].values()]
    assert len(set(tokens)) == 3 and all(len(t) == 48 for t in tokens), "a random token each"
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-logs-token")]
    logs, op_pod, api_pod = log_tokens_of(docs)
    assert logs["tokensDir"] == "/etc/pyexec-logs-tokens" and "tokenFile" not in logs
    (volume,) = [v for v in op_pod["volumes"] if v["name"] == "logs-tokens"]
    assert volume["secret"] == {"secretName": secret["metadata"]["name"], "defaultMode": 0o440}
    mounts = {m["name"]: m["mountPath"] for m in op_pod["containers"][0]["volumeMounts"]}
    assert mounts["logs-tokens"] == logs["tokensDir"]
    # The API server gets one key: its own namespace's token.
    items = [(src["secret"]["name"], item) for v in api_pod["volumes"] for src in v.get("projected", {}).get("sources", [])
             for item in src.get("secret", {}).get("items", []) if item["path"] == "logs-token"]
    assert items == [(secret["metadata"]["name"], {"key": f"{RELEASE}-executions", "path": "logs-token"})]
    assert not [v for v in api_pod["volumes"] if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]]
    text = (CHART / "templates" / "secrets.yaml").read_text()
    assert '"key" $namespace' in text, "each namespace's token is kept across upgrades (lookup by key)"


def test_log_store_tokens_from_an_existing_secret_or_the_shared_fallback(tmp_path):
    docs = rendered_with(tmp_path, {"logsToken": {"existingTokensSecret": "my-tokens"}})
    assert not [d for d in docs if d["kind"] == "Secret" and "logs-token" in d["metadata"]["name"]]
    logs, op_pod, api_pod = log_tokens_of(docs)
    assert logs["tokensDir"] and [v for v in op_pod["volumes"] if v.get("secret", {}).get("secretName") == "my-tokens"]
    sources = [src["secret"] for v in api_pod["volumes"] for src in v.get("projected", {}).get("sources", [])]
    assert {"name": "my-tokens", "items": [{"key": f"{RELEASE}-executions", "path": "logs-token"}]} in sources
    # One token for every namespace, as configured before per-namespace tokens: still works.
    docs = rendered_with(tmp_path, {"logsToken": {"existingSecret": "shared", "existingSecretKey": "t"}})
    logs, op_pod, api_pod = log_tokens_of(docs)
    assert logs["tokenFile"] == "/etc/pyexec/logs-token" and "tokensDir" not in logs
    assert not [v for v in op_pod["volumes"] if v["name"] == "logs-tokens"]
    for pod in (op_pod, api_pod):
        sources = [src["secret"] for v in pod["volumes"] for src in v.get("projected", {}).get("sources", [])]
        assert {"name": "shared", "items": [{"key": "t", "path": "logs-token"}]} in sources


def container_images(docs: list[dict]) -> list[tuple[str, str]]:
    """(object/container, image) of every container and init container of every Pod template or Pod."""
    out = []
    for doc in docs:
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec) if doc["kind"] != "Pod" else spec
        for key in ("initContainers", "containers"):
            for c in pod.get(key, []) or []:
                out.append((f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", c["image"]))
    return out


def test_every_image_can_be_pinned_by_digest(tmp_path):
    """With a digest for every image, every container of every template, and every image the operator gives
    execution Pods, names its image by that digest. (The digests here are placeholders made from the names, not
    digests of real images.)"""
    def digest(what: str) -> str:
        return "sha256:" + __import__("hashlib").sha256(what.encode()).hexdigest()

    values = merged_values("default")
    versions = list(values["operator"]["config"]["images"])
    docs = rendered_with(tmp_path, {
        "packageProxy": {"enabled": True, "image": {"digest": digest("proxy")}},
        "test": {"enabled": True, "image": {"digest": digest("test")}},
        "apiserver": {"image": {"digest": digest("apiserver")}},
        "operator": {"image": {"digest": digest("operator")},
                     "imageDigests": {"python": {v: digest(v) for v in versions}, "docker": digest("docker")}},
    })
    images = container_images(docs)
    names = {"proxy", "test", "apiserver", "operator"}
    assert len(images) >= len(names), images
    for where, image in images:
        assert re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", image), (where, image)
        assert image.split("@")[1] in {digest(n) for n in names}, (where, image)
    seen = {image.split("@")[1] for _, image in images}
    assert seen == {digest(n) for n in names}, "each image its own digest"
    for where, image in images:
        repository = image.split("@")[0].rsplit(":", 1)[0]
        component = where.split("/")[1]
        assert repository in (values["apiserver"]["image"]["repository"], values["operator"]["image"]["repository"],
                              values["packageProxy"]["image"]["repository"], values["test"]["image"]["repository"]), \
            (component, image)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator")]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["images"] == {v: f"{values['operator']['config']['images'][v]}@{digest(v)}" for v in versions}
    assert config["docker"]["image"] == f"{values['operator']['config']['docker']['image']}@{digest('docker')}"
    # Without digests, tags as before.
    plain = container_images([d for d in yaml.safe_load_all(render("default")) if d])
    assert plain and not [i for _, i in plain if "@" in i]
    # An image string that already names a digest cannot get a second one.
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"operator": {
        "config": {"docker": {"image": "docker@" + digest("x")}}, "imageDigests": {"docker": digest("docker")}}}))
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(bad))
    assert result.returncode != 0 and "already has a digest" in result.stderr


def test_generated_secrets_are_kept_across_upgrades():
    text = (CHART / "templates" / "secrets.yaml").read_text()
    assert 'lookup "v1" "Secret"' in text and "randAlphaNum" in text
    # Rendered twice without a cluster, generated tokens differ (no lookup): the Pods' checksum must not.
    first, second = render("default"), helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE).stdout
    checksums = [re.findall(r"checksum/secrets: (\w+)", t) for t in (first, second)]
    assert checksums[0] and checksums[0] == checksums[1]


@param_sets
def test_network_policies(name):
    values = merged_values(name)
    policies = [p for p in of_kind(name, "NetworkPolicy")
                if p["metadata"]["labels"]["app.kubernetes.io/component"] != "executions"]
    if not values["networkPolicies"]["enabled"]:
        assert not policies
        return
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in policies}
    assert components == {"apiserver", "operator"} | ({"package-proxy"} if values["packageProxy"]["enabled"] else set())
    for policy in policies:
        # Never an execution Pod: those carry no instance label.
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}

    def ports(rule: dict) -> set[int]:
        return {p["port"] for p in rule.get("ports", [])}

    api = named(name, "NetworkPolicy", "apiserver")["spec"]
    (ingress,) = api["ingress"]
    assert ports(ingress) == {8080}
    assert ("from" in ingress) == bool(values["networkPolicies"]["apiserver"]["ingressFrom"])
    kube_api = set(values["networkPolicies"]["kubernetesApi"]["ports"])
    for spec, peer_port in ((api, 8081), (named(name, "NetworkPolicy", "operator")["spec"], 8080)):
        egress_ports = [ports(rule) for rule in spec["egress"]]
        assert {53} in egress_ports and kube_api in egress_ports and {peer_port} in egress_ports
    op = named(name, "NetworkPolicy", "operator")["spec"]
    # The operator's egress: DNS, the Kubernetes API and the API server's archives, nothing else.
    assert sorted(sorted(ports(rule)) for rule in op["egress"]) == sorted([[53], sorted(kube_api), [8080]])
    dns, api_rule, archives = op["egress"]
    assert dns["to"] == values["networkPolicies"]["dns"]["to"]
    assert api_rule["to"] == [{"ipBlock": {"cidr": c}} for c in values["networkPolicies"]["kubernetesApi"]["cidrs"]]
    assert archives["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "apiserver"
    (ingress,) = op["ingress"]
    assert ports(ingress) == {8081}
    assert ingress["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "apiserver"


@param_sets
def test_default_deny_policy_for_executions(name):
    """A NetworkPolicy in the executions namespace denies everything to every execution Pod (the label the operator
    puts on each), and the operator is told to insist on it."""
    values = merged_values(name)
    policies = [p for p in of_kind(name, "NetworkPolicy")
                if p["metadata"]["labels"]["app.kubernetes.io/component"] == "executions"]
    if not values["executions"]["defaultDenyNetworkPolicy"]:
        assert not policies and operator_config(name)["requireDefaultDeny"] is False
        return
    (policy,) = policies
    assert policy["metadata"]["namespace"] == executions_namespace(name)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchExpressions": [{"key": "pyexec.io/execution", "operator": "Exists"}]}
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert not spec.get("ingress") and not spec.get("egress")
    assert operator_config(name)["requireDefaultDeny"] is True
    # The same label as the operator's Pods (operator/src/desired/mod.rs, EXECUTION_LABEL).
    assert 'EXECUTION_LABEL: &str = "pyexec.io/execution"' in (
        ROOT / "operator" / "src" / "desired" / "mod.rs").read_text()


@param_sets
def test_executions_namespace_holds_no_control_plane(name):
    """With a dedicated executions namespace, it holds only what executions need: no Secret, ServiceAccount,
    workload, Service or ConfigMap of the chart (all in the release namespace), the operator's Role there, and the
    warm pools."""
    values = merged_values(name)
    namespace = executions_namespace(name)
    assert operator_config(name)["allowSecretEnv"] is values["operator"]["config"]["allowSecretEnv"]
    if not values["executions"]["dedicatedNamespace"]:
        return
    assert namespace != NAMESPACE
    inside = {(o["kind"], o["metadata"]["name"]) for o in objects(name) if o["metadata"].get("namespace") == namespace}
    kinds = {kind for kind, _ in inside}
    assert kinds <= {"Role", "RoleBinding", "NetworkPolicy", "PythonExecutionPool"}, inside
    for o in objects(name):
        if o["kind"] in ("Secret", "ServiceAccount", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"):
            assert o["metadata"]["namespace"] == NAMESPACE, (o["kind"], o["metadata"]["name"])


@param_sets
def test_executions_namespace(name):
    values = merged_values(name)
    namespaces = of_kind(name, "Namespace")
    if not values["executions"]["createNamespace"] or executions_namespace(name) == NAMESPACE:
        assert not namespaces
        return
    (namespace,) = namespaces
    labels = namespace["metadata"]["labels"]
    assert namespace["metadata"]["name"] == executions_namespace(name) != NAMESPACE
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == values["executions"]["podSecurity"][mode]
    assert namespace["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@param_sets
def test_pools_render_into_the_executions_namespace(name):
    """One PythonExecutionPool per entry of `pools`, in the executions namespace, carrying the values given (absent
    ones left to the CRD's defaults, except `network`, written out; CPU always a string, as the CRD's int-or-string
    wants it)."""
    pools = merged_values(name)["pools"]
    rendered = {p["metadata"]["name"]: p for p in of_kind(name, "PythonExecutionPool")}
    assert sorted(rendered) == sorted(p["name"] for p in pools)
    for pool in pools:
        obj = rendered[pool["name"]]
        assert obj["apiVersion"] == "pyexec.io/v1alpha1"
        assert obj["metadata"]["namespace"] == executions_namespace(name)
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "pool"
        expected = {"replicas": pool.get("replicas", 0), "network": pool.get("network", "none")}
        for key in ("pythonVersion", "image", "runtimeClassName"):
            if key in pool:
                expected[key] = pool[key]
        if "limits" in pool:
            expected["limits"] = {k: (str(v) if k == "cpu" else v) for k, v in pool["limits"].items()}
        assert obj["spec"] == expected, pool["name"]


def test_a_value_set_renders_pools_of_every_kind():
    """The pool test above is not vacuous: some value set renders several pools, of both network modes, with and
    without a RuntimeClass, from a version and from an image, with CPU as a number."""
    pools = [p for name in VALUE_SETS for p in of_kind(name, "PythonExecutionPool")]
    specs = [p["spec"] for p in pools]
    assert len(pools) >= 2
    assert {s["network"] for s in specs} == {"none", "egress"}
    assert any("runtimeClassName" in s for s in specs) and any("runtimeClassName" not in s for s in specs)
    assert any("image" in s for s in specs) and any("pythonVersion" in s for s in specs)
    numbers = [p for name in VALUE_SETS for p in merged_values(name)["pools"]
               if isinstance(p.get("limits", {}).get("cpu"), (int, float))]
    assert numbers, "no pool's CPU is written as a number"
    for name in VALUE_SETS:
        config = operator_config(name)
        for pool in merged_values(name)["pools"]:
            # The operator refuses (Ready=False, Invalid) a pool whose class it would refuse to an execution.
            if "runtimeClassName" in pool:
                assert pool["runtimeClassName"] in config["allowedRuntimeClasses"], (name, pool["name"])
            if "image" in pool:
                assert pool["image"] in config["allowedImages"], (name, pool["name"])


def values_paths(node: Any, prefix: str = "") -> list[str]:
    """Leaf paths of values.yaml: mappings are walked, anything else (lists, scalars, empty maps) is a leaf, and so
    are maps of free keys (operator.config.images) and container resources."""
    if isinstance(node, dict) and node and prefix != "operator.config.images" and not prefix.endswith(".resources"):
        return [p for k, v in node.items() for p in values_paths(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def test_every_value_is_documented():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    doc = DOCS.read_text()
    missing = [p for p in values_paths(values) if f"`{p}`" not in doc]
    assert not missing, f"values missing from docs/helm.md (as `path`): {missing}"


def test_every_value_is_commented():
    """Every value of values.yaml has a comment line right above it, or lies inside a block whose key has one.
    Keys that only group other keys (`image:` above `repository:`) need none."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^[\s-]*[\"A-Za-z][\w.\"-]*:")

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip(" -"))

    def commented(i: int) -> bool:
        return i > 0 and lines[i - 1].strip().startswith("#")

    def groups(i: int) -> bool:
        if lines[i].split(":", 1)[1].strip():
            return False
        following = [l for l in lines[i + 1:] if l.strip() and not l.strip().startswith("#")]
        return bool(following) and indent(following[0]) > indent(lines[i]) and bool(key.match(following[0])) \
            and not following[0].lstrip().startswith("-")

    bad = []
    for i, line in enumerate(lines):
        if not key.match(line) or line.strip().startswith("#") or groups(i):
            continue
        j, level, ok = i, indent(line), commented(i)
        while not ok and j > 0 and level > 0:
            j -= 1
            if lines[j].strip() and not lines[j].strip().startswith("#") and indent(lines[j]) < level:
                level = indent(lines[j])
                ok = commented(j) and level > 0
        if not ok:
            bad.append(f"{i + 1}: {line.strip()}")
    assert not bad, f"values.yaml keys without a comment: {bad}"


def test_notes_render():
    result = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{RELEASE}-python-executor 8080:8080" in notes
    assert f"secret {RELEASE}-python-executor-api-keys" in notes
    assert "/api/v1/eval" in notes and "helm test" in notes


def test_test_hook_posts_an_eval_and_checks_the_answer():
    (pod,) = [o for o in of_kind("default", "Pod")
              if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    container = pod["spec"]["containers"][0]
    script = "\n".join(container["args"])
    assert env_of(container)["URL"] == f"http://{RELEASE}-python-executor.{NAMESPACE}.svc:8080/api/v1/eval"
    assert '"eval_last_expr": true' in script and '"completed"' in script and '"42"' in script
    assert pod["spec"]["restartPolicy"] == "Never"


# ------------------------------------------------------------------------------------------------ kustomize base

KUSTOMIZE = ROOT / "deploy" / "kustomize"


def test_the_kustomize_base_is_the_chart_rendered():
    """deploy/kustomize/base is `helm template` of the chart with deploy/kustomize/helm-values.yaml, plus the CRD."""
    rendered = helm("template", "python-executor", str(CHART), "-n", "pyexec-system", "--skip-tests",
                    "-f", str(KUSTOMIZE / "helm-values.yaml"))
    assert rendered.returncode == 0, rendered.stderr
    committed = (KUSTOMIZE / "base" / "python-executor.yaml").read_text()
    assert committed == rendered.stdout, (
        "deploy/kustomize/base/python-executor.yaml is stale: regenerate it (deploy/kustomize/README.md)")
    assert (KUSTOMIZE / "base" / "pythonexecution-crd.yaml").read_bytes() == CRD.read_bytes()
    assert (KUSTOMIZE / "base" / "pythonexecutionpool-crd.yaml").read_bytes() == POOL_CRD.read_bytes()
    assert (KUSTOMIZE / "base" / "pythonsession-crd.yaml").read_bytes() == SESSION_CRD.read_bytes()


def test_the_kustomize_base_builds_and_validates(tmp_path):
    kubectl = ROOT / "target" / "k8s-tools" / "bin" / "kubectl"
    built = subprocess.run([str(kubectl), "kustomize", str(KUSTOMIZE / "base")], capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "base.yaml"
    out.write_text(built.stdout)
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert all(d["metadata"].get("namespace") in (None, "pyexec-system") for d in docs)
    assert not [d for d in docs if d["kind"] == "Secret"], "the base generates no Secret"
    check = subprocess.run([sys.executable, str(VALIDATOR), "--crd", str(CRD), "--pss", "restricted", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
