#!/usr/bin/env python3
"""Validate Kubernetes manifests offline: schemas, Pod Security Standards and sandbox hardening.

Usage:
    validate_manifests.py [--crd CRD.yaml ...] [--k8s-version 1.33.0 --k8s-version 1.37.0]
                          [--pss restricted] [--sandbox-extras] FILE_OR_DIR...

Every YAML document of the given files is checked (a directory stands for all its *.yaml and *.yml
files, recursively, in sorted order). Run it with the interpreter of target/k8s-venv, which
scripts/k8s/install-tools.sh creates.

Schema checks, one per document:
  * A custom resource whose apiVersion and kind are served by a CustomResourceDefinition passed with
    --crd is validated against that version's openAPIV3Schema, turned into a JSON Schema the way the
    API server reads it: `nullable` admits null, `x-kubernetes-int-or-string` admits an integer or a
    string, `x-kubernetes-embedded-resource` admits apiVersion/kind/metadata, and every object
    without `x-kubernetes-preserve-unknown-fields` is closed, so unknown fields are errors as with
    the API server's strict field validation (kubectl's default). Every violation is reported.
    Not checked here: the CEL rules of `x-kubernetes-validations` (they need the API server's CEL
    environment), `format`, and the list/map semantics of `x-kubernetes-list-type` and friends.
  * A built-in kind (apiVersion v1 or a group served by Kubernetes itself, such as apps,
    networking.k8s.io or rbac.authorization.k8s.io) is validated with kubernetes-validate's strict
    schemas for each --k8s-version (default: 1.33.0 and 1.37.0). That library stops at the first
    violation, so one error per document and version is reported. A built-in apiVersion/kind
    without a schema in that version (a typo, or an API removed from Kubernetes) is an error.
  * Any other apiVersion (a CRD's group, such as monitoring.coreos.com, without --crd) is skipped
    and reported as SKIP.

Policy checks, for Pods and for the pod templates of Deployment, StatefulSet, DaemonSet,
ReplicaSet, ReplicationController, PodTemplate, Job and CronJob:
  * --pss baseline|restricted: the Pod Security Standards profile as documented at
    https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted includes
    baseline). Like Pod Security Admission, a pod with `spec.hostUsers: false` (a user namespace)
    is exempt from the runAsNonRoot and runAsUser controls, and a pod with `spec.os.name: windows`
    from the Linux-only restricted controls (allowPrivilegeEscalation, seccomp, capabilities).
  * --sandbox-extras: the hardening that pods running untrusted code need beyond the profile:
    readOnlyRootFilesystem on every container, no service account token, no service links, cpu,
    memory and ephemeral-storage requests and limits on every container, restartPolicy Never.

Output, in input order: `OK <file> <kind>/<name>`, `SKIP <file> <kind>/<name>: <reason>`, or one
`ERROR <file> <kind>/<name>: <path>: <message>` line per violation. Exit status: 0 when there is
no error, 1 when there is one, 2 on a usage error (bad option, unreadable CRD, unsupported version).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Iterator

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as missing:  # run with the system python rather than the venv's
    print(f"validate_manifests: {missing}; run it with target/k8s-venv/bin/python "
          "(scripts/k8s/install-tools.sh creates it)", file=sys.stderr)
    sys.exit(2)

DEFAULT_K8S_VERSIONS = ("1.33.0", "1.37.0")

# API groups served by Kubernetes itself ("" is the core group of apiVersion v1). A document of one
# of these groups must have a schema in kubernetes-validate; any other group is defined by a CRD.
BUILTIN_GROUPS = frozenset({
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
})

# Where the pod's metadata and spec live in each kind that carries a pod, keyed by (group, kind).
POD_LOCATIONS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("", "Pod"): (("metadata",), ("spec",)),
    ("", "PodTemplate"): (("template", "metadata"), ("template", "spec")),
    ("", "ReplicationController"): (("spec", "template", "metadata"), ("spec", "template", "spec")),
    ("apps", "Deployment"): (("spec", "template", "metadata"), ("spec", "template", "spec")),
    ("apps", "StatefulSet"): (("spec", "template", "metadata"), ("spec", "template", "spec")),
    ("apps", "DaemonSet"): (("spec", "template", "metadata"), ("spec", "template", "spec")),
    ("apps", "ReplicaSet"): (("spec", "template", "metadata"), ("spec", "template", "spec")),
    ("batch", "Job"): (("spec", "template", "metadata"), ("spec", "template", "spec")),
    ("batch", "CronJob"): (
        ("spec", "jobTemplate", "spec", "template", "metadata"),
        ("spec", "jobTemplate", "spec", "template", "spec"),
    ),
}

DocPath = tuple[Any, ...]  # a path into a document: keys and list indexes
Finding = tuple[DocPath, str]  # (path, message)


class UsageError(Exception):
    """A problem with the command line or its inputs rather than with the manifests (exit 2)."""


# --------------------------------------------------------------------------------------------------
# Helpers


def as_dict(value: Any) -> dict:
    """The value if it is a mapping, else an empty one: policy checks must not crash on documents
    whose types are wrong (the schema check reports those)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def dig(doc: Any, path: DocPath) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: DocPath) -> str:
    """spec.containers[0].securityContext, with keys that are not plain names in brackets
    (metadata.annotations[container.apparmor.security.beta.kubernetes.io/app])."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part}]"
    return out or "<root>"


def shorten(message: str, limit: int = 300) -> str:
    # jsonschema quotes the offending value, which can be a whole script or object.
    return message if len(message) <= limit else message[: limit - 3] + "..."


def split_api_version(api_version: str) -> tuple[str, str]:
    """('apps', 'v1') for apps/v1, ('', 'v1') for the core group's v1."""
    group, _, version = api_version.rpartition("/")
    return group, version


def schema_error_findings(error: jsonschema.ValidationError) -> list[Finding]:
    """Findings for one JSON Schema error; an unknown-fields error becomes one finding per field,
    worded like the API server's strict field validation."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False \
            and isinstance(error.instance, dict):
        known = as_dict(error.schema.get("properties"))
        extras = [key for key in error.instance if key not in known]
        if extras:
            return [(path + (key,), "unknown field") for key in extras]
    return [(path, shorten(error.message))]


# --------------------------------------------------------------------------------------------------
# Loading YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` as the string "=" (PyYAML otherwise rejects the YAML 1.1
    value tag it resolves to; kubernetes-validate works around it the same way)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def collect_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
            files.extend(sorted(found, key=str))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"no such file or directory: {raw}")
    return files


def load_documents(path: Path) -> list[Any]:
    """The non-empty documents of a YAML file (raises yaml.YAMLError)."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.load_all(stream, Loader=_Loader) if doc is not None]


def describe(doc: dict) -> str:
    name = as_dict(doc.get("metadata")).get("name") or "<unnamed>"
    return f"{doc.get('kind')}/{name}"


# --------------------------------------------------------------------------------------------------
# Custom resources: CRD openAPIV3Schema -> JSON Schema

# The ObjectMeta fields a manifest may set. The API server validates metadata itself, whatever the
# CRD says, and strict field validation rejects unknown metadata fields.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "selfLink": {"type": "string"},
        # Generated manifests often carry `creationTimestamp: null`.
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}

_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def object_meta_schema(crd_metadata: Any) -> dict:
    """ObjectMeta, narrowed by what a CRD says of metadata (it may only constrain name and
    generateName): the CRD's part is a value validation and must not close the object."""
    if crd_metadata is None:
        return OBJECT_META_SCHEMA
    return {"allOf": [OBJECT_META_SCHEMA, openapi_to_jsonschema(crd_metadata, in_junctor=True)]}


def openapi_to_jsonschema(node: Any, in_junctor: bool = False) -> Any:
    """Convert one node of a structural openAPIV3Schema (OpenAPI 3.0 dialect) to JSON Schema 2020-12.

    in_junctor is set below allOf/anyOf/oneOf/not: structural schemas only put value validations
    there (fields must also be declared in the main schema), so objects there are not closed.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "exclusiveMaximum", "exclusiveMinimum"):
            continue  # handled below, or not checkable here (CEL rules, list/map types)
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: openapi_to_jsonschema(sub, in_junctor) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value, in_junctor)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [openapi_to_jsonschema(sub, True) for sub in value]
        elif key == "not":
            out[key] = openapi_to_jsonschema(value, True)
        else:
            out[key] = value

    # OpenAPI 3.0's boolean exclusiveMaximum/exclusiveMinimum modify maximum/minimum; in JSON Schema
    # 2020-12 they hold the bound themselves.
    for exclusive, bound in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)

    nullable = node.get("nullable") is True
    is_object = out.get("type") == "object" or "properties" in out

    if node.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        null = [{"type": "null"}] if nullable else []
        if "anyOf" in out:  # the structural form spells the choice out itself: anyOf integer/string
            out["anyOf"] = out["anyOf"] + null
        else:
            out["anyOf"] = _INT_OR_STRING + null
    elif nullable:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]

    if node.get("x-kubernetes-embedded-resource") is True:
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = object_meta_schema(as_dict(node.get("properties")).get("metadata"))
        is_object = True

    # The API server prunes (and strict field validation rejects) any field of an object that its
    # schema does not declare, unless the object preserves unknown fields or is a map.
    if is_object and not in_junctor and node.get("x-kubernetes-preserve-unknown-fields") is not True \
            and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def crd_root_schema(openapi: dict) -> dict:
    """The JSON Schema of a whole custom resource from its version's openAPIV3Schema."""
    openapi = dict(openapi)
    properties = dict(as_dict(openapi.get("properties")))
    # A CRD may only narrow metadata.name/generateName; the rest of ObjectMeta is always allowed.
    crd_metadata = properties.pop("metadata", None)
    openapi["properties"] = properties
    root = openapi_to_jsonschema(openapi)
    root["type"] = "object"
    props = root.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = object_meta_schema(crd_metadata)
    if openapi.get("x-kubernetes-preserve-unknown-fields") is not True:
        root["additionalProperties"] = False
    return root


class CrdRegistry:
    """The custom resource schemas given with --crd, by (group, version, kind)."""

    def __init__(self) -> None:
        self.validators: dict[tuple[str, str, str], jsonschema.Draft202012Validator] = {}
        self.unserved: set[tuple[str, str, str]] = set()
        self.groups: set[str] = set()

    def add(self, crd: dict, source: str) -> None:
        if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
            raise UsageError(f"{source}: {describe(crd)}: only apiextensions.k8s.io/v1 CRDs are supported")
        spec = as_dict(crd.get("spec"))
        group = spec.get("group")
        kind = as_dict(spec.get("names")).get("kind")
        if not isinstance(group, str) or not isinstance(kind, str):
            raise UsageError(f"{source}: {describe(crd)}: spec.group or spec.names.kind is missing")
        self.groups.add(group)
        for version in as_list(spec.get("versions")):
            version = as_dict(version)
            key = (group, str(version.get("name")), kind)
            if version.get("served") is False:
                self.unserved.add(key)
                continue
            openapi = as_dict(version.get("schema")).get("openAPIV3Schema")
            if not isinstance(openapi, dict):
                # Without a schema the API server keeps whatever the object holds.
                openapi = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            schema = crd_root_schema(openapi)
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as err:
                raise UsageError(f"{source}: {describe(crd)} version {key[1]}: invalid schema: {err.message}") from err
            self.validators[key] = jsonschema.Draft202012Validator(schema)

    def add_path(self, raw: str) -> None:
        """Load the CRDs of a file, or of a directory's YAML files; other documents (a chart's
        templates, say) are ignored."""
        found = 0
        for path in collect_files([raw]):
            try:
                docs = load_documents(path)
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                raise UsageError(f"{path}: cannot read CRDs: {err}") from err
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    self.add(doc, str(path))
                    found += 1
        if not found:
            raise UsageError(f"{raw}: no CustomResourceDefinition in it")


def validate_custom_resource(doc: dict, validator: jsonschema.Draft202012Validator) -> list[Finding]:
    findings: list[Finding] = []
    for error in validator.iter_errors(doc):
        findings.extend(schema_error_findings(error))
    return sorted(set(findings), key=lambda f: (format_path(f[0]), f[1]))


# --------------------------------------------------------------------------------------------------
# Built-in kinds: kubernetes-validate


def check_k8s_version(version: str) -> None:
    """Fail early on a Kubernetes version that kubernetes-validate has no schemas for."""
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
    try:
        kubernetes_validate.validate(probe, version, strict=True)
    except Exception as err:  # VersionNotSupportedError, or IndexError below its oldest version
        raise UsageError(f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for "
                         f"Kubernetes {version} ({type(err).__name__})") from err


def validate_builtin(doc: dict, versions: list[str]) -> list[Finding]:
    """Strict schema findings over all versions; a finding seen in several versions is merged."""
    seen: dict[Finding, list[str]] = {}
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            continue
        except kubernetes_validate.ValidationError as err:
            findings = schema_error_findings(err)
        except kubernetes_validate.SchemaNotFoundError:
            findings = [((), f"no schema for kind {doc['kind']} in {doc['apiVersion']} "
                             "(misspelt kind, or an API version this Kubernetes does not serve)")]
        except Exception as err:  # a broken bundled schema, say: report it rather than crash
            findings = [((), f"kubernetes-validate failed: {type(err).__name__}: {err}")]
        for finding in findings:
            seen.setdefault(finding, []).append(version)
    return [(path, f"{message} (Kubernetes {', '.join(vs)})") for (path, message), vs in seen.items()]


# --------------------------------------------------------------------------------------------------
# Pod Security Standards

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({"container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")


def iter_containers(spec: dict, spec_path: DocPath, fields=CONTAINER_FIELDS) -> Iterator[tuple[dict, DocPath]]:
    for field in fields:
        for index, container in enumerate(as_list(spec.get(field))):
            if isinstance(container, dict):
                yield container, spec_path + (field, index)


def check_pod_security(meta: dict, spec: dict, meta_path: DocPath, spec_path: DocPath,
                       level: str) -> list[Finding]:
    """Pod Security Standards findings for one pod (level: "baseline" or "restricted")."""
    restricted = level == "restricted"
    findings: list[Finding] = []

    def add(path: DocPath, message: str, profile: str, control: str) -> None:
        findings.append((path, f"{message} (PSS {profile}: {control})"))

    pod_sc = as_dict(spec.get("securityContext"))
    pod_sc_path = spec_path + ("securityContext",)
    containers = list(iter_containers(spec, spec_path))
    windows = as_dict(spec.get("os")).get("name") == "windows"
    # Pod Security Admission relaxes the non-root controls for pods in a user namespace.
    user_namespace = spec.get("hostUsers") is False

    # ---- baseline ----
    # Security contexts: the pod's and every container's, for the controls that apply to both.
    contexts = [(pod_sc, pod_sc_path)] + [
        (as_dict(c.get("securityContext")), path + ("securityContext",)) for c, path in containers
    ]

    for sc, path in contexts:
        if as_dict(sc.get("windowsOptions")).get("hostProcess") not in (None, False):
            add(path + ("windowsOptions", "hostProcess"), "must be false or unset", "baseline", "HostProcess")

    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) not in (None, False):
            add(spec_path + (field,), "must be false or unset", "baseline", "Host Namespaces")

    for container, path in containers:
        sc = as_dict(container.get("securityContext"))
        sc_path = path + ("securityContext",)
        if sc.get("privileged") not in (None, False):
            add(sc_path + ("privileged",), "must be false or unset", "baseline", "Privileged Containers")
        for index, cap in enumerate(as_list(as_dict(sc.get("capabilities")).get("add"))):
            cap_path = sc_path + ("capabilities", "add", index)
            if cap not in BASELINE_CAPABILITIES:
                add(cap_path, f"capability {cap} may not be added", "baseline", "Capabilities")
            elif restricted and not windows and cap not in RESTRICTED_CAPABILITIES:
                add(cap_path, f"capability {cap} may not be added (only NET_BIND_SERVICE)",
                    "restricted", "Capabilities")

    for index, volume in enumerate(as_list(spec.get("volumes"))):
        if "hostPath" in as_dict(volume):
            add(spec_path + ("volumes", index, "hostPath"), "hostPath volumes are forbidden", "baseline",
                "HostPath Volumes")

    for container, path in containers:
        for index, port in enumerate(as_list(container.get("ports"))):
            if as_dict(port).get("hostPort") not in (None, 0):
                add(path + ("ports", index, "hostPort"), "must be 0 or unset", "baseline", "Host Ports")

    for container, path in containers:
        handlers = [(name, container.get(name)) for name in ("livenessProbe", "readinessProbe", "startupProbe")]
        lifecycle = as_dict(container.get("lifecycle"))
        handlers += [(("lifecycle", name), lifecycle.get(name)) for name in ("postStart", "preStop")]
        for name, handler in handlers:
            prefix = path + (name if isinstance(name, tuple) else (name,))
            for action in ("httpGet", "tcpSocket"):
                if as_dict(as_dict(handler).get(action)).get("host") not in (None, ""):
                    add(prefix + (action, "host"), "must be empty or unset", "baseline",
                        "Host Probes / Lifecycle Hooks")

    annotations = as_dict(meta.get("annotations"))
    for key in sorted(annotations):
        value = annotations[key]
        if key.startswith(APPARMOR_ANNOTATION) and value not in (None, "", "runtime/default") \
                and not (isinstance(value, str) and value.startswith("localhost/")):
            add(meta_path + ("annotations", key), f"AppArmor profile {value!r} is forbidden "
                "(allowed: runtime/default, localhost/*)", "baseline", "AppArmor")
    for sc, path in contexts:
        profile = sc.get("appArmorProfile")
        if profile is not None and as_dict(profile).get("type") not in APPARMOR_TYPES:
            add(path + ("appArmorProfile", "type"), "must be RuntimeDefault or Localhost", "baseline",
                "AppArmor")

    for sc, path in contexts:
        options = as_dict(sc.get("seLinuxOptions"))
        if options.get("type") not in (None, "") and options.get("type") not in SELINUX_TYPES:
            add(path + ("seLinuxOptions", "type"), f"must be one of {', '.join(sorted(SELINUX_TYPES))}",
                "baseline", "SELinux")
        for field in ("user", "role"):
            if options.get(field) not in (None, ""):
                add(path + ("seLinuxOptions", field), "must be empty or unset", "baseline", "SELinux")

    for container, path in containers:
        if as_dict(container.get("securityContext")).get("procMount") not in (None, "Default"):
            add(path + ("securityContext", "procMount"), "must be Default or unset", "baseline",
                "/proc Mount Type")

    # Seccomp, baseline: an explicit profile must be RuntimeDefault or Localhost (never Unconfined).
    for sc, path in contexts:
        profile = sc.get("seccompProfile")
        if profile is not None and as_dict(profile).get("type") not in SECCOMP_TYPES:
            add(path + ("seccompProfile", "type"), "must be RuntimeDefault or Localhost", "baseline", "Seccomp")

    for index, sysctl in enumerate(as_list(pod_sc.get("sysctls"))):
        name = as_dict(sysctl).get("name")
        if name not in SAFE_SYSCTLS:
            add(pod_sc_path + ("sysctls", index, "name"), f"sysctl {name} is not in the safe set",
                "baseline", "Sysctls")

    if not restricted:
        return findings

    # ---- restricted ----
    for index, volume in enumerate(as_list(spec.get("volumes"))):
        volume = as_dict(volume)
        types = sorted(key for key in volume if key != "name")
        # hostPath is reported above; a volume without a source is defaulted to emptyDir.
        if not types or "hostPath" in volume or any(t in RESTRICTED_VOLUME_TYPES for t in types):
            continue
        add(spec_path + ("volumes", index), f"volume type {'/'.join(types) or '<none>'} is forbidden "
            f"(allowed: {', '.join(sorted(RESTRICTED_VOLUME_TYPES))})", "restricted", "Volume Types")

    if not windows:
        for container, path in containers:
            sc = as_dict(container.get("securityContext"))
            if sc.get("allowPrivilegeEscalation") is not False:
                add(path + ("securityContext", "allowPrivilegeEscalation"), "must be false", "restricted",
                    "Privilege Escalation")

    if not user_namespace:
        pod_non_root = pod_sc.get("runAsNonRoot")
        if pod_non_root not in (None, True):
            add(pod_sc_path + ("runAsNonRoot",), "must be true or unset", "restricted", "Running as Non-root")
        for container, path in containers:
            value = as_dict(container.get("securityContext")).get("runAsNonRoot")
            sc_path = path + ("securityContext", "runAsNonRoot")
            if value is None:
                if pod_non_root is not True:
                    add(sc_path, "must be true here or in spec.securityContext", "restricted",
                        "Running as Non-root")
            elif value is not True:
                add(sc_path, "must be true", "restricted", "Running as Non-root")

        for sc, path in contexts:
            user = sc.get("runAsUser")
            if isinstance(user, int) and not isinstance(user, bool) and user == 0:
                add(path + ("runAsUser",), "must not be 0", "restricted", "Running as Non-root user")

    if not windows:
        # Seccomp, restricted: a valid pod-level profile, or one on every container.
        pod_seccomp_ok = as_dict(pod_sc.get("seccompProfile")).get("type") in SECCOMP_TYPES
        for container, path in containers:
            if as_dict(container.get("securityContext")).get("seccompProfile") is None and not pod_seccomp_ok:
                add(path + ("securityContext", "seccompProfile", "type"),
                    "must be RuntimeDefault or Localhost here or in spec.securityContext", "restricted", "Seccomp")

        for container, path in containers:
            capabilities = as_dict(as_dict(container.get("securityContext")).get("capabilities"))
            if "ALL" not in as_list(capabilities.get("drop")):
                add(path + ("securityContext", "capabilities", "drop"), "must include ALL", "restricted",
                    "Capabilities")

    return findings


# --------------------------------------------------------------------------------------------------
# Sandbox hardening beyond the restricted profile

SANDBOX_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def check_sandbox_extras(spec: dict, spec_path: DocPath) -> list[Finding]:
    findings: list[Finding] = []

    def add(path: DocPath, message: str) -> None:
        findings.append((path, f"{message} (sandbox)"))

    for container, path in iter_containers(spec, spec_path):
        if as_dict(container.get("securityContext")).get("readOnlyRootFilesystem") is not True:
            add(path + ("securityContext", "readOnlyRootFilesystem"), "must be true")
    if spec.get("automountServiceAccountToken") is not False:
        add(spec_path + ("automountServiceAccountToken",), "must be false")
    if spec.get("enableServiceLinks") is not False:
        add(spec_path + ("enableServiceLinks",), "must be false")
    # Ephemeral containers cannot have resources, so only these two lists are checked.
    for container, path in iter_containers(spec, spec_path, ("containers", "initContainers")):
        resources = as_dict(container.get("resources"))
        for kind in ("requests", "limits"):
            amounts = as_dict(resources.get(kind))
            missing = [name for name in SANDBOX_RESOURCES if name not in amounts]
            if missing:
                add(path + ("resources", kind), f"must set {', '.join(missing)}")
    if spec.get("restartPolicy") != "Never":
        add(spec_path + ("restartPolicy",), "must be Never")
    return findings


# --------------------------------------------------------------------------------------------------
# Driver


@dataclasses.dataclass
class Options:
    crds: CrdRegistry = dataclasses.field(default_factory=CrdRegistry)
    k8s_versions: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_K8S_VERSIONS))
    pss: str | None = None  # "baseline" or "restricted"
    sandbox_extras: bool = False


def check_document(doc: Any, options: Options) -> tuple[str, list[Finding] | str]:
    """("OK", []), ("ERROR", findings) or ("SKIP", reason) for one parsed document."""
    if not isinstance(doc, dict):
        return "ERROR", [((), "a manifest must be a mapping")]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return "ERROR", [((), "apiVersion and kind must be set (strings)")]

    group, version = split_api_version(api_version)
    key = (group, version, kind)
    if key in options.crds.validators:
        findings = validate_custom_resource(doc, options.crds.validators[key])
    elif group in options.crds.groups:
        why = "is not served" if key in options.crds.unserved else "is not defined"
        findings = [((), f"{kind} in {api_version} {why} by the CRDs given with --crd")]
    elif group in BUILTIN_GROUPS:
        findings = validate_builtin(doc, options.k8s_versions)
    else:
        return "SKIP", f"{api_version} is not a built-in API and no --crd defines it"

    location = POD_LOCATIONS.get((group, kind)) if group in BUILTIN_GROUPS else None
    if location is not None and (options.pss or options.sandbox_extras):
        meta_path, spec_path = location
        meta, spec = as_dict(dig(doc, meta_path)), as_dict(dig(doc, spec_path))
        if options.pss:
            findings += check_pod_security(meta, spec, meta_path, spec_path, options.pss)
        if options.sandbox_extras:
            findings += check_sandbox_extras(spec, spec_path)

    return ("ERROR", findings) if findings else ("OK", [])


def run(paths: list[str], options: Options, out=None) -> int:
    """Check every document of the given files and directories; returns the exit status."""
    out = out or sys.stdout
    counts = {"OK": 0, "ERROR": 0, "SKIP": 0}
    for path in collect_files(paths):
        try:
            docs = load_documents(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            print(f"ERROR {path} ?/?: <root>: cannot read YAML: {' '.join(str(err).split())}", file=out)
            counts["ERROR"] += 1
            continue
        for doc in docs:
            status, result = check_document(doc, options)
            label = describe(doc) if isinstance(doc, dict) else "?/?"
            counts[status] += 1
            if status == "OK":
                print(f"OK {path} {label}", file=out)
            elif status == "SKIP":
                print(f"SKIP {path} {label}: {result}", file=out)
            else:
                for finding_path, message in result:
                    print(f"ERROR {path} {label}: {format_path(finding_path)}: {message}", file=out)
    print(f"validate_manifests: {counts['OK']} OK, {counts['ERROR']} with errors, {counts['SKIP']} skipped",
          file=sys.stderr)
    return 1 if counts["ERROR"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Validate Kubernetes manifests offline (see the module docstring for the checks).")
    parser.add_argument("--crd", action="append", default=[], metavar="CRD.yaml",
                        help="a file (or directory) of CustomResourceDefinitions whose custom resources to "
                             "validate (repeatable)")
    parser.add_argument("--k8s-version", action="append", metavar="VERSION",
                        help=f"Kubernetes version to validate built-in kinds against (repeatable; "
                             f"default: {' and '.join(DEFAULT_K8S_VERSIONS)})")
    parser.add_argument("--pss", choices=("baseline", "restricted"),
                        help="check pods and pod templates against this Pod Security Standards profile")
    parser.add_argument("--sandbox-extras", action="store_true",
                        help="also require the sandbox hardening (read-only root, no token, resources, ...)")
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    args = parser.parse_args(argv)

    try:
        crds = CrdRegistry()
        for crd_path in args.crd:
            crds.add_path(crd_path)
        versions = list(dict.fromkeys(args.k8s_version or DEFAULT_K8S_VERSIONS))
        for version in versions:
            check_k8s_version(version)
        return run(args.paths, Options(crds, versions, args.pss, args.sandbox_extras))
    except UsageError as err:
        print(f"validate_manifests: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
