"""Tests of validate_manifests.py. Run with the venv that scripts/k8s/install-tools.sh creates:

    target/k8s-venv/bin/python -m pytest scripts/k8s
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import validate_manifests as vm  # noqa: E402

# A Pod locked down as the sandbox runs untrusted code: passes the restricted profile and the extras.
GOOD_POD = yaml.safe_load(textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata:
      name: sandbox
      annotations:
        container.apparmor.security.beta.kubernetes.io/runner: runtime/default
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        seccompProfile: {type: RuntimeDefault}
        sysctls: [{name: net.ipv4.ping_group_range, value: "0 0"}]
      containers:
      - name: runner
        image: python:3.12-slim
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
          seLinuxOptions: {type: container_t}
          procMount: Default
        resources:
          requests: {cpu: 100m, memory: 128Mi, ephemeral-storage: 64Mi}
          limits: {cpu: "1", memory: 512Mi, ephemeral-storage: 256Mi}
        volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes:
      - name: tmp
        emptyDir: {sizeLimit: 64Mi}
    """))

CONTAINER = GOOD_POD["spec"]["containers"][0]


def findings(doc: dict, *, pss: str | None = "restricted", extras: bool = True) -> list[tuple[str, str]]:
    status, result = vm.check_document(doc, vm.Options(pss=pss, sandbox_extras=extras))
    if status == "OK":
        return []
    assert status == "ERROR", result
    return [(vm.format_path(path), message) for path, message in result]


def mutated(change) -> dict:
    doc = copy.deepcopy(GOOD_POD)
    change(doc)
    return doc


def spec(doc):
    return doc["spec"]


def c0(doc):
    return doc["spec"]["containers"][0]


def sc0(doc):
    return doc["spec"]["containers"][0]["securityContext"]


def pod_sc(doc):
    return doc["spec"]["securityContext"]


def add_container(field: str, name: str, **security):
    """A change adding a copy of the good container to `field`, with securityContext overrides."""
    def change(doc):
        container = copy.deepcopy(CONTAINER)
        container["name"] = name
        container["securityContext"].update(security)
        if field == "ephemeralContainers":  # ephemeral containers may not set resources
            del container["resources"]
        doc["spec"].setdefault(field, []).append(container)
    return change


# --------------------------------------------------------------------------------------------------
# Pod Security Standards: one bad variant of the good pod per rule.

PSS_CASES = [
    # (id, change, path of the expected finding, control named in the message)
    ("hostNetwork", lambda d: spec(d).update(hostNetwork=True), "spec.hostNetwork", "baseline: Host Namespaces"),
    ("hostPID", lambda d: spec(d).update(hostPID=True), "spec.hostPID", "baseline: Host Namespaces"),
    ("hostIPC", lambda d: spec(d).update(hostIPC=True), "spec.hostIPC", "baseline: Host Namespaces"),
    ("privileged", lambda d: sc0(d).update(privileged=True),
     "spec.containers[0].securityContext.privileged", "baseline: Privileged Containers"),
    ("privileged-init", add_container("initContainers", "init", privileged=True),
     "spec.initContainers[0].securityContext.privileged", "baseline: Privileged Containers"),
    ("privileged-ephemeral", add_container("ephemeralContainers", "debug", privileged=True),
     "spec.ephemeralContainers[0].securityContext.privileged", "baseline: Privileged Containers"),
    ("cap-add-beyond-baseline", lambda d: sc0(d)["capabilities"].update(add=["SYS_ADMIN"]),
     "spec.containers[0].securityContext.capabilities.add[0]", "baseline: Capabilities"),
    ("cap-add-baseline-only", lambda d: sc0(d)["capabilities"].update(add=["CHOWN"]),
     "spec.containers[0].securityContext.capabilities.add[0]", "restricted: Capabilities"),
    ("cap-drop-missing-all", lambda d: sc0(d)["capabilities"].update(drop=["NET_RAW"]),
     "spec.containers[0].securityContext.capabilities.drop", "restricted: Capabilities"),
    ("cap-drop-unset", lambda d: sc0(d).pop("capabilities"),
     "spec.containers[0].securityContext.capabilities.drop", "restricted: Capabilities"),
    ("hostPath", lambda d: spec(d)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
     "spec.volumes[1].hostPath", "baseline: HostPath Volumes"),
    ("hostPort", lambda d: c0(d).update(ports=[{"containerPort": 80, "hostPort": 8080}]),
     "spec.containers[0].ports[0].hostPort", "baseline: Host Ports"),
    ("probe-host", lambda d: c0(d).update(livenessProbe={"httpGet": {"host": "10.0.0.1", "port": 80}}),
     "spec.containers[0].livenessProbe.httpGet.host", "baseline: Host Probes / Lifecycle Hooks"),
    ("lifecycle-host", lambda d: c0(d).update(lifecycle={"preStop": {"tcpSocket": {"host": "node", "port": 1}}}),
     "spec.containers[0].lifecycle.preStop.tcpSocket.host", "baseline: Host Probes / Lifecycle Hooks"),
    ("apparmor-annotation",
     lambda d: d["metadata"]["annotations"].update({vm.APPARMOR_ANNOTATION + "runner": "unconfined"}),
     "metadata.annotations[container.apparmor.security.beta.kubernetes.io/runner]", "baseline: AppArmor"),
    ("apparmor-pod", lambda d: pod_sc(d).update(appArmorProfile={"type": "Unconfined"}),
     "spec.securityContext.appArmorProfile.type", "baseline: AppArmor"),
    ("apparmor-container", lambda d: sc0(d).update(appArmorProfile={"type": "Unconfined"}),
     "spec.containers[0].securityContext.appArmorProfile.type", "baseline: AppArmor"),
    ("selinux-type", lambda d: sc0(d).update(seLinuxOptions={"type": "spc_t"}),
     "spec.containers[0].securityContext.seLinuxOptions.type", "baseline: SELinux"),
    ("selinux-user", lambda d: pod_sc(d).update(seLinuxOptions={"user": "system_u"}),
     "spec.securityContext.seLinuxOptions.user", "baseline: SELinux"),
    ("selinux-role", lambda d: sc0(d).update(seLinuxOptions={"role": "system_r"}),
     "spec.containers[0].securityContext.seLinuxOptions.role", "baseline: SELinux"),
    ("procMount", lambda d: sc0(d).update(procMount="Unmasked"),
     "spec.containers[0].securityContext.procMount", "baseline: /proc Mount Type"),
    ("seccomp-pod-unconfined", lambda d: pod_sc(d).update(seccompProfile={"type": "Unconfined"}),
     "spec.securityContext.seccompProfile.type", "baseline: Seccomp"),
    ("seccomp-container-unconfined", lambda d: sc0(d).update(seccompProfile={"type": "Unconfined"}),
     "spec.containers[0].securityContext.seccompProfile.type", "baseline: Seccomp"),
    ("seccomp-unset", lambda d: pod_sc(d).pop("seccompProfile"),
     "spec.containers[0].securityContext.seccompProfile.type", "restricted: Seccomp"),
    ("sysctl-unsafe", lambda d: pod_sc(d)["sysctls"].append({"name": "kernel.msgmax", "value": "1"}),
     "spec.securityContext.sysctls[1].name", "baseline: Sysctls"),
    ("hostProcess-pod", lambda d: pod_sc(d).update(windowsOptions={"hostProcess": True}),
     "spec.securityContext.windowsOptions.hostProcess", "baseline: HostProcess"),
    ("hostProcess-container", lambda d: sc0(d).update(windowsOptions={"hostProcess": True}),
     "spec.containers[0].securityContext.windowsOptions.hostProcess", "baseline: HostProcess"),
    ("volume-type", lambda d: spec(d)["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
     "spec.volumes[1]", "restricted: Volume Types"),
    ("allowPrivilegeEscalation-unset", lambda d: sc0(d).pop("allowPrivilegeEscalation"),
     "spec.containers[0].securityContext.allowPrivilegeEscalation", "restricted: Privilege Escalation"),
    ("allowPrivilegeEscalation-true", lambda d: sc0(d).update(allowPrivilegeEscalation=True),
     "spec.containers[0].securityContext.allowPrivilegeEscalation", "restricted: Privilege Escalation"),
    ("runAsNonRoot-unset", lambda d: pod_sc(d).pop("runAsNonRoot"),
     "spec.containers[0].securityContext.runAsNonRoot", "restricted: Running as Non-root"),
    ("runAsNonRoot-pod-false", lambda d: pod_sc(d).update(runAsNonRoot=False),
     "spec.securityContext.runAsNonRoot", "restricted: Running as Non-root"),
    ("runAsNonRoot-container-false", lambda d: sc0(d).update(runAsNonRoot=False),
     "spec.containers[0].securityContext.runAsNonRoot", "restricted: Running as Non-root"),
    ("runAsUser-pod-root", lambda d: pod_sc(d).update(runAsUser=0),
     "spec.securityContext.runAsUser", "restricted: Running as Non-root user"),
    ("runAsUser-container-root", lambda d: sc0(d).update(runAsUser=0),
     "spec.containers[0].securityContext.runAsUser", "restricted: Running as Non-root user"),
]


@pytest.mark.parametrize("change,path,control", [c[1:] for c in PSS_CASES], ids=[c[0] for c in PSS_CASES])
def test_pss_rule_triggers(change, path, control):
    found = findings(mutated(change), extras=False)
    messages = [m for p, m in found if p == path]
    assert any(f"(PSS {control})" in m for m in messages), found
    # The variant is schema-valid: only the policy check complains.
    assert all("(PSS " in m for _, m in found), found


def test_good_pod_passes_restricted_and_extras():
    assert findings(GOOD_POD) == []


def test_good_pod_passes_baseline():
    assert findings(GOOD_POD, pss="baseline", extras=False) == []


def test_baseline_profile_allows_what_only_restricted_forbids():
    doc = mutated(lambda d: (pod_sc(d).pop("runAsNonRoot"), sc0(d).pop("capabilities"),
                             sc0(d).update(allowPrivilegeEscalation=True)))
    assert findings(doc, pss="baseline", extras=False) == []
    assert findings(doc, pss="restricted", extras=False) != []


@pytest.mark.parametrize("change", [
    # seccomp and runAsNonRoot may be set on every container instead of the pod
    lambda d: (pod_sc(d).pop("seccompProfile"), sc0(d).update(seccompProfile={"type": "Localhost",
                                                                              "localhostProfile": "p.json"})),
    lambda d: (pod_sc(d).pop("runAsNonRoot"), sc0(d).update(runAsNonRoot=True)),
    lambda d: sc0(d)["capabilities"].update(add=["NET_BIND_SERVICE"]),
    lambda d: d["metadata"]["annotations"].update({vm.APPARMOR_ANNOTATION + "runner": "localhost/prof"}),
    lambda d: sc0(d).update(appArmorProfile={"type": "RuntimeDefault"}),
    lambda d: pod_sc(d)["sysctls"].append({"name": "net.ipv4.tcp_keepalive_probes", "value": "3"}),
    lambda d: spec(d)["volumes"].append({"name": "s", "secret": {"secretName": "x"}}),
    lambda d: spec(d)["volumes"].append({"name": "defaulted-to-emptyDir"}),
], ids=["per-container-seccomp", "per-container-runAsNonRoot", "net-bind-service", "apparmor-localhost",
        "apparmor-runtime-default", "safe-sysctl", "secret-volume", "volume-without-source"])
def test_allowed_variants_pass(change):
    assert findings(mutated(change)) == []


def test_host_users_false_exempts_run_as_non_root_and_run_as_user():
    def change(d):
        spec(d)["hostUsers"] = False
        pod_sc(d).pop("runAsNonRoot")
        pod_sc(d)["runAsUser"] = 0
    assert findings(mutated(change)) == []
    # ...but not from the other controls.
    assert findings(mutated(lambda d: (change(d), sc0(d).update(privileged=True))))


def test_windows_pod_is_exempt_from_linux_only_restricted_controls():
    def change(d):
        spec(d)["os"] = {"name": "windows"}
        pod_sc(d).pop("seccompProfile")
        sc0(d).pop("allowPrivilegeEscalation")
        sc0(d).pop("capabilities")
    assert findings(mutated(change)) == []
    assert findings(mutated(lambda d: (change(d), spec(d).pop("os"))))


# --------------------------------------------------------------------------------------------------
# Sandbox extras: one bad variant of the good pod per rule.

EXTRAS_CASES = [
    ("readOnlyRootFilesystem", lambda d: sc0(d).update(readOnlyRootFilesystem=False),
     "spec.containers[0].securityContext.readOnlyRootFilesystem"),
    ("readOnlyRootFilesystem-init", add_container("initContainers", "init", readOnlyRootFilesystem=False),
     "spec.initContainers[0].securityContext.readOnlyRootFilesystem"),
    ("automountServiceAccountToken", lambda d: spec(d).pop("automountServiceAccountToken"),
     "spec.automountServiceAccountToken"),
    ("enableServiceLinks", lambda d: spec(d).update(enableServiceLinks=True), "spec.enableServiceLinks"),
    ("limits-cpu", lambda d: c0(d)["resources"]["limits"].pop("cpu"), "spec.containers[0].resources.limits"),
    ("limits-memory", lambda d: c0(d)["resources"]["limits"].pop("memory"),
     "spec.containers[0].resources.limits"),
    ("limits-ephemeral-storage", lambda d: c0(d)["resources"]["limits"].pop("ephemeral-storage"),
     "spec.containers[0].resources.limits"),
    ("requests-cpu", lambda d: c0(d)["resources"]["requests"].pop("cpu"),
     "spec.containers[0].resources.requests"),
    ("requests-memory", lambda d: c0(d)["resources"]["requests"].pop("memory"),
     "spec.containers[0].resources.requests"),
    ("requests-ephemeral-storage", lambda d: c0(d)["resources"]["requests"].pop("ephemeral-storage"),
     "spec.containers[0].resources.requests"),
    ("restartPolicy", lambda d: spec(d).update(restartPolicy="Always"), "spec.restartPolicy"),
]


@pytest.mark.parametrize("change,path", [c[1:] for c in EXTRAS_CASES], ids=[c[0] for c in EXTRAS_CASES])
def test_sandbox_extra_triggers(change, path):
    doc = mutated(change)
    assert findings(doc, extras=False) == []  # the profile itself has no opinion...
    found = findings(doc)
    assert [p for p, _ in found] == [path], found  # ...the extras do
    assert found[0][1].endswith("(sandbox)")


# --------------------------------------------------------------------------------------------------
# Pod templates


def deployment(pod: dict) -> dict:
    template = {"metadata": dict(pod["metadata"], labels={"app": "x"}), "spec": copy.deepcopy(pod["spec"])}
    template["metadata"].pop("name")
    template["spec"]["restartPolicy"] = "Always"  # the only value a Deployment accepts
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}


def test_deployment_template_is_checked():
    assert findings(deployment(GOOD_POD), extras=False) == []
    bad = deployment(mutated(lambda d: sc0(d).update(privileged=True)))
    found = findings(bad, extras=False)
    assert [p for p, _ in found] == ["spec.template.spec.containers[0].securityContext.privileged"], found
    # The extras apply to templates too (a Deployment cannot use restartPolicy Never).
    assert ("spec.template.spec.restartPolicy", "must be Never (sandbox)") in findings(deployment(GOOD_POD))


def test_deployment_template_annotations_are_checked():
    bad = deployment(mutated(lambda d: d["metadata"]["annotations"].update(
        {vm.APPARMOR_ANNOTATION + "runner": "unconfined"})))
    assert [p for p, _ in findings(bad, extras=False)] == [
        "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/runner]"]


def test_cronjob_template_is_checked():
    pod = mutated(lambda d: spec(d).update(hostPID=True))
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
               "spec": {"schedule": "* * * * *",
                        "jobTemplate": {"spec": {"template": {"spec": pod["spec"]}}}}}
    assert [p for p, _ in findings(cronjob)] == ["spec.jobTemplate.spec.template.spec.hostPID"]


# --------------------------------------------------------------------------------------------------
# Built-in kinds: strict schemas of both default Kubernetes versions


def test_builtin_unknown_field_fails_for_both_versions():
    doc = mutated(lambda d: c0(d).update(imagePullPolicyy="Always"))
    found = findings(doc, pss=None, extras=False)
    assert found == [("spec.containers[0].imagePullPolicyy", "unknown field (Kubernetes 1.33.0, 1.37.0)")]
    for version in vm.DEFAULT_K8S_VERSIONS:
        status, result = vm.check_document(doc, vm.Options(k8s_versions=[version]))
        assert status == "ERROR" and result == [((("spec", "containers", 0, "imagePullPolicyy"),
                                                  f"unknown field (Kubernetes {version})"))], result


def test_builtin_wrong_type_fails():
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": 1}}
    found = findings(doc, pss=None, extras=False)
    assert [p for p, _ in found] == ["data.n"] and "not of type 'string'" in found[0][1], found


def test_builtin_kind_without_schema_is_an_error():
    doc = {"apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "x"}}
    found = findings(doc, pss=None, extras=False)
    assert len(found) == 1 and "no schema for kind Deploymnt" in found[0][1], found


def test_unknown_group_without_crd_is_skipped():
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"}}
    status, reason = vm.check_document(doc, vm.Options())
    assert status == "SKIP" and "monitoring.coreos.com/v1" in reason


# --------------------------------------------------------------------------------------------------
# Custom resources against a CRD

CRD = yaml.safe_load(textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: pythonsandboxes.example.com}
    spec:
      group: example.com
      scope: Namespaced
      names: {kind: PythonSandbox, plural: pythonsandboxes, singular: pythonsandbox}
      versions:
      - name: v1alpha1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            x-kubernetes-validations:
            - rule: "self.metadata.name.size() < 40"  # CEL: not evaluated offline
            properties:
              spec:
                type: object
                required: [image]
                properties:
                  image: {type: string, maxLength: 20}
                  replicas: {type: integer, minimum: 0, maximum: 10, exclusiveMaximum: true}
                  timeout: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
                  note: {type: string, nullable: true}
                  mode: {type: string, enum: [fast, safe]}
                  env: {type: object, additionalProperties: {type: string}}
                  extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
                  template:
                    type: object
                    x-kubernetes-embedded-resource: true
                    properties:
                      metadata: {type: object}
                      spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
                  ports:
                    type: array
                    x-kubernetes-list-type: map
                    x-kubernetes-list-map-keys: [name]
                    items:
                      type: object
                      required: [name]
                      properties:
                        name: {type: string}
              status:
                type: object
                x-kubernetes-preserve-unknown-fields: true
      - name: v1alpha0
        served: false
        storage: false
        schema:
          openAPIV3Schema: {type: object}
    """))


@pytest.fixture()
def crd_options() -> vm.Options:
    options = vm.Options()
    options.crds.add(copy.deepcopy(CRD), "inline")
    return options


def custom_resource(**spec_fields) -> dict:
    spec_ = {"image": "python:3.12"}
    spec_.update(spec_fields)
    return {"apiVersion": "example.com/v1alpha1", "kind": "PythonSandbox",
            "metadata": {"name": "s", "namespace": "ns", "labels": {"a": "b"}}, "spec": spec_}


def test_good_custom_resource_passes(crd_options):
    template = {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}}, "spec": {"x": 1}}
    doc = custom_resource(replicas=9, timeout="30s", note=None, mode="safe", env={"A": "1"},
                          extra={"anything": {"goes": [1, 2]}}, ports=[{"name": "http"}], template=template)
    assert vm.check_document(doc, crd_options) == ("OK", [])
    assert vm.check_document(custom_resource(timeout=30), crd_options) == ("OK", [])


def test_bad_custom_resource_reports_every_error(crd_options):
    doc = custom_resource(image="x" * 21, replicas="three", colour="red")
    status, result = vm.check_document(doc, crd_options)
    assert status == "ERROR"
    found = {vm.format_path(path): message for path, message in result}
    assert found.keys() == {"spec.image", "spec.replicas", "spec.colour"}, found
    assert "is too long" in found["spec.image"]
    assert "is not of type 'integer'" in found["spec.replicas"]
    assert found["spec.colour"] == "unknown field"


@pytest.mark.parametrize("doc,path", [
    (custom_resource(replicas=10), "spec.replicas"),  # exclusiveMaximum: true
    (custom_resource(timeout=1.5), "spec.timeout"),  # neither integer nor string
    (custom_resource(mode="turbo"), "spec.mode"),
    (custom_resource(env={"A": 1}), "spec.env.A"),
    (custom_resource(ports=[{"name": "a", "port": 1}]), "spec.ports[0].port"),
    ({"apiVersion": "example.com/v1alpha1", "kind": "PythonSandbox", "metadata": {"name": "s"}, "spec": {}},
     "spec"),  # required
    (dict(custom_resource(), metadata={"name": "s", "nmae": "typo"}), "metadata.nmae"),
    (dict(custom_resource(), top="level"), "top"),
    (custom_resource(template={"metadata": {"lables": {}}}), "spec.template.metadata.lables"),
], ids=["exclusiveMaximum", "int-or-string", "enum", "map-values", "nested-unknown", "required",
        "metadata-unknown", "root-unknown", "embedded-metadata-unknown"])
def test_custom_resource_violations(crd_options, doc, path):
    status, result = vm.check_document(doc, crd_options)
    assert status == "ERROR" and [vm.format_path(p) for p, _ in result] == [path], result


def test_custom_resource_of_unserved_or_unknown_version_is_an_error(crd_options):
    for version, why in (("v1alpha0", "is not served"), ("v9", "is not defined")):
        doc = dict(custom_resource(), apiVersion=f"example.com/{version}")
        status, result = vm.check_document(doc, crd_options)
        assert status == "ERROR" and why in result[0][1], result


# --------------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "validate_manifests.py"), *args],
                          capture_output=True, text=True, check=False)


def write_yaml(path: Path, *docs: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_cli_output_and_exit_status(tmp_path):
    crd = write_yaml(tmp_path / "crds" / "crd.yaml", CRD)
    write_yaml(tmp_path / "m" / "b.yaml", custom_resource(colour="red"),
               {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"}})
    write_yaml(tmp_path / "m" / "a" / "pod.yml", GOOD_POD, mutated(lambda d: spec(d).update(hostIPC=True)))
    (tmp_path / "m" / "notes.txt").write_text("not a manifest")

    args = ["--crd", str(crd), "--k8s-version", "1.33.0", "--k8s-version", "1.37.0",
            "--pss", "restricted", "--sandbox-extras", str(tmp_path / "m")]
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr
    pod_file, cr_file = tmp_path / "m" / "a" / "pod.yml", tmp_path / "m" / "b.yaml"
    assert result.stdout.splitlines() == [
        f"OK {pod_file} Pod/sandbox",
        f"ERROR {pod_file} Pod/sandbox: spec.hostIPC: must be false or unset (PSS baseline: Host Namespaces)",
        f"ERROR {cr_file} PythonSandbox/s: spec.colour: unknown field",
        f"SKIP {cr_file} ServiceMonitor/m: monitoring.coreos.com/v1 is not a built-in API and no --crd defines it",
    ]
    assert run_cli(*args).stdout == result.stdout  # deterministic

    ok = run_cli("--pss", "restricted", "--sandbox-extras", str(write_yaml(tmp_path / "ok.yaml", GOOD_POD)))
    assert (ok.returncode, ok.stdout) == (0, f"OK {tmp_path / 'ok.yaml'} Pod/sandbox\n")


def test_cli_usage_errors(tmp_path):
    pod = str(write_yaml(tmp_path / "pod.yaml", GOOD_POD))
    assert run_cli("--k8s-version", "1.99.0", pod).returncode == 2
    assert run_cli("--crd", pod, pod).returncode == 2  # no CRD in it
    assert run_cli(str(tmp_path / "missing.yaml")).returncode == 2


def test_cli_reports_unparsable_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    result = run_cli(str(bad))
    assert result.returncode == 1 and result.stdout.startswith(f"ERROR {bad} ?/?: <root>: cannot read YAML")
