"""Static checks of the deployment files: container images, Docker Compose, Nomad and GitOps.

No Docker engine, Nomad or Kubernetes cluster is needed. Run with the venv of scripts/k8s/install-tools.sh plus the
packages of scripts/deploy-test-requirements.txt:

    scripts/k8s/install-tools.sh
    target/k8s-venv/bin/python -m pip install -q -r scripts/deploy-test-requirements.txt
    target/k8s-venv/bin/python -m pytest scripts/deploy_test.py

A missing package or tool skips the tests that need it, unless PYEXEC_REQUIRE_K8S_TOOLS=1 (set by scripts/test.sh):
then it fails them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "deploy" / "docker"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
NOMAD_FILE = ROOT / "deploy" / "nomad" / "python-executor.nomad.hcl"
GITOPS = ROOT / "deploy" / "gitops"
EXECUTIONS = GITOPS / "executions"
CRD = ROOT / "crds" / "pythonexecution.yaml"
VALIDATOR = ROOT / "scripts" / "k8s" / "validate_manifests.py"
KUBECTL = ROOT / "target" / "k8s-tools" / "bin" / "kubectl"
REQUIRED = os.environ.get("PYEXEC_REQUIRE_K8S_TOOLS") == "1"
INSTALL_HINT = "target/k8s-venv/bin/python -m pip install -r scripts/deploy-test-requirements.txt"

# The capabilities of the compose file, each documented in deploy/compose/README.md.
COMPOSE_CAPS = {"SYS_ADMIN", "SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE"}
# What the sandbox calls that Docker's default seccomp profile refuses (pivot_root always, the rest without
# CAP_SYS_ADMIN): the profile must allow them whatever the capabilities.
SANDBOX_SYSCALLS = {"clone", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "sethostname"}
# Never allowed to this container, as in Docker's default profile.
REFUSED_SYSCALLS = {
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "keyctl", "add_key",
    "request_key", "userfaultfd", "open_by_handle_at", "reboot", "swapon", "swapoff", "acct", "iopl", "ioperm",
    "settimeofday", "clock_settime", "nfsservctl", "vhangup", "mbind", "kcmp", "pidfd_getfd",
}
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEYS?|PRIVATE_?KEY|CREDENTIAL)", re.I)
SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bghp_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b|xox[bp]-")
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def need(module: str):
    """Imports an optional package of deploy-test-requirements.txt, or skips (fails when tools are required)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: {INSTALL_HINT}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)


def need_kubectl() -> Path:
    if KUBECTL.is_file() and os.access(KUBECTL, os.X_OK):
        return KUBECTL
    message = "target/k8s-tools/bin/kubectl is missing: run scripts/k8s/install-tools.sh"
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def load_yaml(path: Path) -> dict:
    (doc,) = load_yaml_docs(path)
    return doc


def validate_manifests(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VALIDATOR), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def assert_valid_manifests(*args: str | Path) -> str:
    result = validate_manifests(*args)
    assert result.returncode == 0 and "ERROR" not in result.stdout, result.stdout + result.stderr
    return result.stdout


def seconds(duration: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    assert GO_DURATION.match(duration), f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", duration))


def workspace_binaries() -> set[str]:
    names = set()
    for manifest in ROOT.glob("*/Cargo.toml"):
        data = tomllib.loads(manifest.read_text())
        names.update(b["name"] for b in data.get("bin", []))
    return names


# ---------------------------------------------------------------------------------------------------------------
# Dockerfiles
# ---------------------------------------------------------------------------------------------------------------

class Stage:
    def __init__(self, image: str, alias: str | None):
        self.image = image
        self.alias = alias
        self.instructions: list[tuple[str, str]] = []

    def all(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def last(self, instruction: str) -> str | None:
        values = self.all(instruction)
        return values[-1] if values else None


def parse_dockerfile(name: str) -> list[Stage]:
    parser_module = need("dockerfile_parse")
    parser = parser_module.DockerfileParser(path=str(DOCKER / name))
    stages: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], " ".join(item["value"].split())
        if instruction == "COMMENT":
            continue
        if instruction == "FROM":
            words = [w for w in value.split() if not w.startswith("--")]  # --platform=...
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], alias))
            continue
        assert stages, f"{name}: {instruction} before the first FROM"
        stages[-1].instructions.append((instruction, value))
    return stages


DOCKERFILES = {
    "apiserver.Dockerfile": {
        "runtime": "python:3.12-slim-bookworm",
        "user": "10001:10001",
        "expose": "8080",
        "entrypoint": ["pyexec-apiserver"],
        "packages": ["pyexec-apiserver", "python-executor"],
    },
    "operator.Dockerfile": {
        "runtime": "gcr.io/distroless/cc-debian12:nonroot",
        "user": "65532:65532",
        "expose": "8081",
        "entrypoint": ["/usr/local/bin/pyexec-operator"],
        "packages": ["pyexec-operator"],
    },
}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage_with_pinned_base_images(name):
    stages = parse_dockerfile(name)
    assert len(stages) >= 2, "a build stage and a runtime stage"
    aliases = set()
    for stage in stages:
        if stage.image in aliases:
            continue
        assert re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", stage.image.split("/")[-1]), \
            f"{stage.image}: pin a tag or a digest"
        assert not stage.image.endswith(":latest"), stage.image
        if stage.alias:
            aliases.add(stage.alias)
    assert stages[-1].image == DOCKERFILES[name]["runtime"]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_rust_build_stage_matches_the_workspace(name):
    stages = parse_dockerfile(name)
    (build,) = [s for s in stages if s.image.startswith("rust:")]
    match = re.fullmatch(r"rust:1\.(\d+)-bookworm", build.image)
    assert match, f"{build.image}: pin a Rust minor version on Debian 12 (the runtime's Debian)"
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    msrv = int(workspace["workspace"]["package"]["rust-version"].split(".")[1])
    assert int(match.group(1)) >= msrv, f"{build.image} is older than the workspace's rust-version"
    cargo = [r for r in build.all("RUN") if "cargo build" in r]
    assert len(cargo) == 1
    assert "cargo build --release --locked" in cargo[0]
    for package in DOCKERFILES[name]["packages"]:
        assert f"-p {package}" in cargo[0]
        assert package in workspace_binaries(), f"no [[bin]] named {package}"
        # The runtime stage copies what the build stage installed.
        assert any(f"/out/{package}" in c for c in stages[-1].all("COPY")), f"{package} is not copied"
    ignore = DOCKER / f"{name}.dockerignore"
    entries = {line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {"target/", ".git/"} <= entries, f"{ignore.name} must keep build outputs out of the context"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_non_root(name):
    final = parse_dockerfile(name)[-1]
    user = final.last("USER")
    assert user == DOCKERFILES[name]["user"]
    assert user.split(":")[0] not in {"", "0", "root"}
    assert final.last("EXPOSE") == DOCKERFILES[name]["expose"]
    assert json.loads(final.last("ENTRYPOINT")) == DOCKERFILES[name]["entrypoint"], "exec form"


def test_apiserver_image_has_a_healthcheck_without_curl():
    final = parse_dockerfile("apiserver.Dockerfile")[-1]
    (check,) = final.all("HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    argv = json.loads(command)
    assert argv[0] in {"python3", "pyexec-apiserver", "python-executor"}
    assert "/health" in " ".join(argv)
    assert not any(tool in check for tool in ("curl", "wget")), "the runtime image has no curl"


def test_operator_image_leaves_health_to_kubernetes():
    stages = parse_dockerfile("operator.Dockerfile")
    assert not stages[-1].all("HEALTHCHECK"), "distroless has no shell or HTTP client for a HEALTHCHECK"
    text = (DOCKER / "operator.Dockerfile").read_text()
    assert "/healthz" in text and "/readyz" in text


def test_apiserver_runtime_has_the_sandbox_tools_and_the_pinned_uv():
    stages = parse_dockerfile("apiserver.Dockerfile")
    final = stages[-1]
    installs = [r for s in stages for r in s.all("RUN") if "apt-get install" in r]
    assert installs
    for run in installs:
        assert "--no-install-recommends" in run
        assert "apt-get update" in run and "rm -rf /var/lib/apt/lists/*" in run, "one layer, lists removed"
    (runtime_install,) = [r for r in final.all("RUN") if "apt-get install" in r]
    packages = set(shlex.split(runtime_install.split("apt-get install", 1)[1].split("&&")[0]))
    assert {"passt", "nftables", "ca-certificates"} <= packages
    assert "curl" not in packages
    # uv comes from scripts/install-uv.sh (its pinned version and SHA-256), run in a stage of its own.
    (uv_stage,) = [s for s in stages if any("install-uv.sh" in c for c in s.all("COPY"))]
    (copy,) = [c for c in uv_stage.all("COPY") if "install-uv.sh" in c]
    source, target = copy.split()
    assert (ROOT / source).is_file()
    assert any(r.startswith(target) for r in uv_stage.all("RUN"))
    assert f"--from={uv_stage.alias} /usr/local/bin/uv /usr/local/bin/uv" in final.all("COPY")


def test_apiserver_data_dir_belongs_to_the_default_user():
    final = parse_dockerfile("apiserver.Dockerfile")[-1]
    setup = " ".join(final.all("RUN"))
    assert "useradd" in setup and "--uid 10001" in setup
    assert re.search(r"install -d -o 10001 -g 10001 -m 0700 /var/lib/python-executor", setup)
    assert json.loads(final.last("VOLUME")) == ["/var/lib/python-executor"]
    assert "PYEXEC_DATA_DIR=/var/lib/python-executor" in final.all("ENV")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name):
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.is_file():
        message = f"hadolint is not installed: {INSTALL_HINT}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKER / name)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_holds_no_secrets(name):
    text = (DOCKER / name).read_text()
    assert not SECRET_VALUE.search(text)
    for stage in parse_dockerfile(name):
        for instruction, value in stage.instructions:
            if instruction in {"ENV", "ARG"}:
                for word in shlex.split(value):
                    key, has_value, setting = word.partition("=")
                    if SECRET_NAME.search(key):
                        assert not (has_value and setting), f"{name}: {instruction} {key} bakes a secret into the image"
            if instruction == "ADD":
                assert not re.search(r"https?://", value), f"{name}: ADD from a URL"
            if instruction in {"COPY", "ADD"}:
                assert not re.search(r"(\.env|\.pem|\.key|id_rsa|api-keys)\b", value), f"{name}: {value}"


# ---------------------------------------------------------------------------------------------------------------
# Docker Compose
# ---------------------------------------------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def apiserver_service() -> dict:
    services = compose()["services"]
    assert list(services) == ["apiserver"]
    return services["apiserver"]


def compose_schema() -> dict:
    need("check_jsonschema")
    from importlib.resources import files
    return json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())


def test_compose_file_matches_the_compose_specification():
    import jsonschema

    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    # The schema is strict enough to matter: a misspelt key and a wrong type are refused.
    broken = compose()
    broken["services"]["apiserver"]["cap_ad"] = ["SYS_ADMIN"]
    broken["services"]["apiserver"]["cap_drop"] = "ALL"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_runs_as_root_with_exactly_the_documented_capabilities():
    service = apiserver_service()
    for name, other in compose()["services"].items():
        assert not other.get("privileged"), f"{name}: never privileged"
    assert service["user"] == "0"
    assert service["cap_drop"] == ["ALL"]
    assert len(service["cap_add"]) == len(set(service["cap_add"]))
    assert set(service["cap_add"]) == COMPOSE_CAPS
    readme = (COMPOSE_DIR / "README.md").read_text()
    for cap in COMPOSE_CAPS | {"NET_ADMIN", "SYS_PTRACE", "KILL", "FOWNER"}:
        assert re.search(rf"^\| `{cap}` \|", readme, re.M), f"README.md does not explain {cap}"


def test_compose_security_options_relax_only_what_the_sandbox_needs():
    service = apiserver_service()
    options = service["security_opt"]
    assert {"apparmor=unconfined", "systempaths=unconfined", "writable-cgroups=true"} <= set(options)
    assert not any(re.match(r"seccomp[=:]unconfined$", o) for o in options), "use the profile, not unconfined"
    assert not any(o.startswith("label") for o in options)
    (seccomp,) = [o for o in options if o.startswith("seccomp=")]
    assert (COMPOSE_DIR / seccomp.split("=", 1)[1]).is_file()
    assert service["cgroup"] == "private"
    assert service["init"] is True, "pasta's background processes need a reaper"
    assert "/dev/net/tun:/dev/net/tun" in service["devices"]
    environment = service["environment"]
    assert environment["PYEXEC_CGROUP_FAVOR_DYNMODS"] == "false"
    grace = int(environment["PYEXEC_SHUTDOWN_GRACE"])
    assert seconds(service["stop_grace_period"]) > grace


def test_compose_data_dir_is_a_named_root_owned_volume():
    document = compose()
    service = apiserver_service()
    data_dir = service["environment"]["PYEXEC_DATA_DIR"]
    mounts = [v for v in service["volumes"] if isinstance(v, dict) and v.get("target") == data_dir]
    assert len(mounts) == 1, f"one volume at {data_dir}"
    (mount,) = mounts
    assert mount["type"] == "volume" and mount["source"] in document["volumes"]
    assert mount["volume"]["nocopy"] is True, "keep the image's uid-10001 directory from being copied up"


def test_compose_healthcheck_build_ports_and_example_key():
    service = apiserver_service()
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and "/health" in " ".join(check["test"])
    assert not any(tool in " ".join(check["test"]) for tool in ("curl", "wget"))
    for key in ("interval", "timeout"):
        assert seconds(check[key]) > 0
    assert (COMPOSE_DIR / service["build"]["context"]).resolve() == ROOT
    assert (ROOT / service["build"]["dockerfile"]).resolve() == DOCKER / "apiserver.Dockerfile"
    assert not service["image"].endswith(":latest") and ":" in service["image"]
    assert any(str(p).endswith(":8080") for p in service["ports"])
    env = {}
    for env_file in service["env_file"]:
        for line in (COMPOSE_DIR / env_file).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
    keys = env["PYEXEC_API_KEYS"].split(",")
    assert keys and all("example" in k and "change-me" in k for k in keys), "only an obvious placeholder in Git"


# ---------------------------------------------------------------------------------------------------------------
# The seccomp profile
# ---------------------------------------------------------------------------------------------------------------

def seccomp_profile() -> dict:
    (option,) = [o for o in apiserver_service()["security_opt"] if o.startswith("seccomp=")]
    return json.loads((COMPOSE_DIR / option.split("=", 1)[1]).read_text())


def docker_allows(profile: dict, caps: set[str], arch: str = "amd64", kernel: tuple = (6, 1)) -> dict[str, str]:
    """What Docker makes of a profile for a container with `caps`: the action of every syscall that a rule without
    argument conditions covers (moby's seccomp setup: `includes` must all hold, any `excludes` drops the rule)."""
    actions: dict[str, str] = {}
    full_caps = {f"CAP_{c}" for c in caps}
    for rule in profile["syscalls"]:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if any(c not in full_caps for c in includes.get("caps", [])):
            continue
        if includes.get("arches") and arch not in includes["arches"]:
            continue
        if "minKernel" in includes and kernel < tuple(map(int, includes["minKernel"].split("."))):
            continue
        if any(c in full_caps for c in excludes.get("caps", [])) or arch in excludes.get("arches", []):
            continue
        if rule.get("args"):
            continue
        for name in rule["names"]:
            action = rule["action"] if rule["action"] != "SCMP_ACT_ERRNO" else f"errno {rule.get('errnoRet', 1)}"
            assert actions.get(name, action) == action, f"{name}: conflicting rules"
            actions[name] = action
    return actions


def test_seccomp_profile_is_dockers_default_plus_the_sandbox_syscalls():
    profile = seccomp_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"} <= {a["architecture"] for a in profile["archMap"]}
    for rule in profile["syscalls"]:
        assert all(re.fullmatch(r"_?[a-z][a-z0-9_]*", n) for n in rule["names"]), rule["names"]
    (sandbox_rule,) = [r for r in profile["syscalls"] if "pivot_root" in r["names"]]
    assert set(sandbox_rule["names"]) == SANDBOX_SYSCALLS
    assert sandbox_rule["action"] == "SCMP_ACT_ALLOW" and sandbox_rule.get("comment")
    assert not (sandbox_rule.get("includes") or sandbox_rule.get("excludes") or sandbox_rule.get("args"))
    # Docker's own rules stay: the everyday allow list, and the capability-gated ones.
    everyday = profile["syscalls"][0]
    assert everyday["action"] == "SCMP_ACT_ALLOW" and len(everyday["names"]) >= 340
    assert {"read", "write", "openat", "execve", "landlock_create_ruleset", "pidfd_open"} <= set(everyday["names"])
    gated = {n for r in profile["syscalls"] if (r.get("includes") or {}).get("caps") == ["CAP_SYS_ADMIN"]
             for n in r["names"]}
    assert {"bpf", "perf_event_open", "fsopen", "open_tree", "quotactl"} <= gated
    assert not gated & SANDBOX_SYSCALLS
    # No rule makes clone3 fail with ENOSYS any more (the launcher needs clone3 itself).
    assert not any("clone3" in r["names"] and r["action"] == "SCMP_ACT_ERRNO" for r in profile["syscalls"])


@pytest.mark.parametrize("caps", [COMPOSE_CAPS, set()], ids=["compose-capabilities", "rootless"])
def test_seccomp_profile_as_docker_applies_it(caps):
    allowed = {n for n, a in docker_allows(seccomp_profile(), caps).items() if a == "SCMP_ACT_ALLOW"}
    assert SANDBOX_SYSCALLS <= allowed
    assert not allowed & REFUSED_SYSCALLS
    if "SYS_ADMIN" not in caps:
        assert not {"bpf", "perf_event_open", "fsopen", "open_tree", "syslog"} & allowed


# ---------------------------------------------------------------------------------------------------------------
# Nomad
# ---------------------------------------------------------------------------------------------------------------

def nomad_job() -> dict:
    hcl2 = need("hcl2")
    options = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, preserve_heredocs=False,
                                        strip_string_quotes=True)
    with NOMAD_FILE.open() as f:
        return hcl2.load(f, serialization_options=options)


def block(parent: dict, name: str) -> dict:
    """A labelled or unlabelled block that occurs once."""
    (item,) = parent[name]
    return item


def labelled(parent: dict, name: str) -> dict[str, dict]:
    return {label: body for item in parent.get(name, []) for label, body in item.items()}


def nomad_task() -> tuple[dict, dict, dict, dict]:
    document = nomad_job()
    (job,) = labelled(document, "job").values()
    (group,) = labelled(job, "group").values()
    (task,) = labelled(group, "task").values()
    return document, job, group, task


def test_nomad_job_runs_the_binary_as_root_with_raw_exec():
    document, job, _, task = nomad_task()
    assert job["type"] == "service"
    assert task["driver"] == "raw_exec"
    assert "user" not in task, "full isolation needs the Nomad client's root"
    config = block(task, "config")
    assert config["command"] == "${var.binary}"
    variables = labelled(document, "variable")
    assert variables["binary"]["default"].startswith("/")
    assert "privileged" not in json.dumps(job)
    readme = (NOMAD_FILE.parent / "README.md").read_text()
    assert "## Why `raw_exec`" in readme and "systempaths=unconfined" in readme


def test_nomad_job_registers_a_health_checked_service():
    _, job, group, task = nomad_task()
    service = block(group, "service")
    assert service["port"] == "http"
    check = block(service, "check")
    assert check["type"] == "http" and check["path"] == "/health"
    assert seconds(check["interval"]) > 0 and seconds(check["timeout"]) > 0
    port = labelled(block(group, "network"), "port")["http"]
    assert port["static"] == 8080
    env = block(task, "env")
    assert env["PYEXEC_PORT"] == "${NOMAD_PORT_http}"
    constraints = job["constraint"]
    assert any(c.get("operator") == "distinct_hosts" and c.get("value") == "true" for c in constraints), \
        "one server per node: the sandbox uid range is per host"


def test_nomad_job_resources_data_dir_and_lifecycle():
    document, job, group, task = nomad_task()
    env = block(task, "env")
    resources = block(task, "resources")
    assert resources["cpu"] > 0
    assert resources["memory"] >= int(env["PYEXEC_MAX_CONCURRENT"]) * int(env["PYEXEC_DEFAULT_MEMORY_MB"])
    disk = block(group, "ephemeral_disk")
    assert disk["size"] > 0 and disk["sticky"] is True and disk["migrate"] is True
    assert env["PYEXEC_DATA_DIR"].startswith("${NOMAD_ALLOC_DIR}/")
    template = block(task, "template")
    assert env["PYEXEC_API_KEYS_FILE"] == "${NOMAD_SECRETS_DIR}/" + template["destination"].removeprefix("secrets/")
    assert "nomadVar" in template["data"]
    restart = block(group, "restart")
    assert restart["attempts"] > 0 and seconds(restart["interval"]) > seconds(restart["delay"])
    update = block(job, "update")
    assert update["max_parallel"] == 1 and update["health_check"] == "checks" and update["auto_revert"] is True
    assert seconds(task["kill_timeout"]) > int(env["PYEXEC_SHUTDOWN_GRACE"])
    assert block(group, "service")["provider"] in {"nomad", "consul"}
    assert group["count"] == "${var.server_count}"
    assert labelled(document, "variable")["server_count"]["default"] >= 1


# ---------------------------------------------------------------------------------------------------------------
# GitOps
# ---------------------------------------------------------------------------------------------------------------

def executions_kustomization() -> dict:
    return load_yaml(EXECUTIONS / "kustomization.yaml")


def execution_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(EXECUTIONS.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in load_yaml_docs(path)]


def target_namespace() -> str:
    return executions_kustomization()["namespace"]


def test_executions_folder_is_valid_against_the_crd():
    output = assert_valid_manifests("--crd", CRD, EXECUTIONS)
    executions = [d for _, d in execution_documents() if d["kind"] == "PythonExecution"]
    assert len(executions) >= 3
    for doc in executions:
        assert f"PythonExecution/{doc['metadata']['name']}" in output


def test_executions_follow_the_rules_of_git_managed_executions():
    kustomization = executions_kustomization()
    listed = set(kustomization["resources"])
    files = {p.name for p in EXECUTIONS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files, "every file of the folder is listed in kustomization.yaml, and only those"
    example_names = {d["metadata"]["name"] for p in (ROOT / "deploy" / "examples").glob("*.yaml")
                     for d in load_yaml_docs(p)}
    config_maps = {d["metadata"]["name"]: d for _, d in execution_documents() if d["kind"] == "ConfigMap"}
    names = []
    for path, doc in execution_documents():
        assert doc["kind"] in {"PythonExecution", "ConfigMap"}, f"{path.name}: no {doc['kind']} in Git"
        name = doc["metadata"]["name"]
        names.append(name)
        assert "namespace" not in doc["metadata"], "the kustomization sets the namespace"
        assert name not in example_names, f"{name}: deploy/examples has that name"
        if doc["kind"] == "ConfigMap":
            assert doc.get("immutable") is True, f"{name}: code is part of an immutable execution"
            continue
        spec = doc["spec"]
        assert DNS_LABEL.match(name) and len(name) <= 63, f"{name}: the operator names the Pod after it"
        assert re.search(r"-(v\d+|\d{4}-\d{2}-\d{2})$", name), f"{name}: a -vN or date suffix names each change"
        assert "ttlSecondsAfterFinished" not in spec, f"{name}: a TTL would make the controller re-run it"
        # The CRD's CEL rules, which the offline validator does not evaluate.
        assert len(spec["source"]) == 1, f"{name}: exactly one of files, configMap, archive"
        for entry in spec["source"].get("files", []):
            assert not entry["name"].startswith("/") and ".." not in entry["name"].split("/")
        entrypoint = spec.get("entrypoint", "")
        assert not entrypoint.startswith("/") and ".." not in entrypoint.split("/")
        if "configMap" in spec["source"]:
            referenced = spec["source"]["configMap"]["name"]
            assert referenced in config_maps, f"{name}: ConfigMap {referenced} is not in the folder"
            if entrypoint:
                assert entrypoint in config_maps[referenced]["data"]
        for env in spec.get("env", []):
            assert ("value" in env) != ("valueFrom" in env)
    assert len(names) == len(set(names))


def render(kustomize_dir: Path) -> str:
    kubectl = need_kubectl()
    result = subprocess.run([str(kubectl), "kustomize", str(kustomize_dir)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kustomize_output_of_the_executions_folder_is_valid(tmp_path):
    rendered = render(EXECUTIONS)
    out = tmp_path / "rendered.yaml"
    out.write_text(rendered)
    output = assert_valid_manifests("--crd", CRD, out)
    assert "SKIP" not in output
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert len(docs) == len(execution_documents())
    for doc in docs:
        assert doc["metadata"]["namespace"] == target_namespace()
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pyexec-gitops"


def test_flux_patches_make_executions_create_only(tmp_path):
    flux = flux_kustomization()
    shutil.copytree(EXECUTIONS, tmp_path / "base")
    # What kustomize-controller does with spec.patches: an overlay on the folder.
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": flux["spec"]["targetNamespace"],
        "resources": ["base"],
        "patches": flux["spec"]["patches"],
    }))
    rendered = render(tmp_path)
    out = tmp_path / "rendered.yaml"
    out.write_text(rendered)
    assert_valid_manifests("--crd", CRD, out)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert {d["kind"] for d in docs} == {"PythonExecution", "ConfigMap"}
    for doc in docs:
        annotations = doc["metadata"].get("annotations", {})
        assert annotations.get("kustomize.toolkit.fluxcd.io/ssa") == "IfNotPresent", doc["metadata"]["name"]


def test_namespace_enforces_restricted_pod_security():
    namespace = load_yaml(GITOPS / "namespace.yaml")
    assert_valid_manifests(GITOPS / "namespace.yaml")
    assert namespace["metadata"]["name"] == target_namespace()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def argocd(kind: str) -> dict:
    (doc,) = [d for p in (GITOPS / "argocd").glob("*.yaml") for d in load_yaml_docs(p) if d["kind"] == kind]
    return doc


def test_argocd_application_syncs_the_folder_for_immutable_resources():
    app = argocd("Application")
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    assert app["metadata"]["name"] and app["metadata"]["namespace"]
    spec = app["spec"]
    source, destination = spec["source"], spec["destination"]
    assert source["repoURL"].startswith("https://") and source["targetRevision"]
    assert (ROOT / source["path"]).resolve() == EXECUTIONS
    assert destination.get("server") or destination.get("name")
    assert destination["namespace"] == target_namespace()
    policy = spec["syncPolicy"]
    assert isinstance(policy["automated"]["prune"], bool)
    assert policy["automated"]["selfHeal"] is False, "re-creating a deleted execution would re-run it"
    options = dict(o.split("=", 1) for o in policy["syncOptions"])
    assert len(options) == len(policy["syncOptions"])
    assert options["Replace"] == "false" and options["ServerSideApply"] == "true"
    assert options["CreateNamespace"] == "false"
    assert options.get("Force", "false") == "false"
    ignored = [d for d in spec["ignoreDifferences"] if d["group"] == "pyexec.io" and d["kind"] == "PythonExecution"]
    assert ignored and "/status" in ignored[0]["jsonPointers"]
    project = argocd("AppProject")
    assert spec["project"] == project["metadata"]["name"]
    assert source["repoURL"] in project["spec"]["sourceRepos"]
    assert {"server": destination["server"], "namespace": destination["namespace"]} in project["spec"]["destinations"]
    assert project["spec"]["clusterResourceWhitelist"] == []
    allowed = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    assert allowed == {("pyexec.io", "PythonExecution"), ("", "ConfigMap")}


def flux_objects() -> list[dict]:
    return [d for p in sorted((GITOPS / "flux").glob("*.yaml")) for d in load_yaml_docs(p)]


def flux_kustomization() -> dict:
    (doc,) = [d for d in flux_objects() if d["apiVersion"].startswith("kustomize.toolkit.fluxcd.io/")]
    return doc


def test_flux_source_and_kustomization_apply_the_folder():
    (repo,) = [d for d in flux_objects() if d["kind"] == "GitRepository"]
    assert repo["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert repo["spec"]["url"] == argocd("Application")["spec"]["source"]["repoURL"]
    assert seconds(repo["spec"]["interval"]) > 0 and repo["spec"]["ref"]["branch"]
    kustomization = flux_kustomization()
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1" and kustomization["kind"] == "Kustomization"
    spec = kustomization["spec"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert kustomization["metadata"]["namespace"] == repo["metadata"]["namespace"]
    assert (ROOT / spec["path"]).resolve() == EXECUTIONS
    assert f"!/{spec['path'].removeprefix('./')}/" in repo["spec"]["ignore"]
    assert isinstance(spec["prune"], bool)
    assert seconds(spec["interval"]) > 0 and seconds(spec["timeout"]) > 0
    assert spec["targetNamespace"] == target_namespace()
    accounts = {d["metadata"]["name"] for d in flux_objects() if d["kind"] == "ServiceAccount"}
    assert spec["serviceAccountName"] in accounts


@pytest.mark.parametrize("folder", ["argocd", "flux"])
def test_gitops_controller_rbac(folder):
    path = GITOPS / folder / "rbac.yaml"
    assert_valid_manifests(path)
    docs = load_yaml_docs(path)
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    role = roles[binding["roleRef"]["name"]]
    for doc in (role, binding):
        assert doc["metadata"]["namespace"] == target_namespace()
    needed = {"create", "get", "list", "watch", "patch", "delete"}
    for group, resource in (("pyexec.io", "pythonexecutions"), ("", "configmaps")):
        verbs = {v for r in role["rules"] if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}
        assert needed <= verbs, f"{folder}: {resource} needs {sorted(needed - verbs)}"
    granted = {res for r in role["rules"] for res in r["resources"]}
    assert granted == {"pythonexecutions", "configmaps"}, "nothing beyond what the folder holds"
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount"
    if folder == "flux":
        assert subject["name"] == flux_kustomization()["spec"]["serviceAccountName"]
        assert subject["namespace"] == flux_kustomization()["metadata"]["namespace"]


# ---------------------------------------------------------------------------------------------------------------
# systemd unit
# ---------------------------------------------------------------------------------------------------------------

SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "python-executor.service"
# Settings that would quietly take the sandbox's isolation away: a read-only cgroup tree (runs without cgroup
# limits), a non-root user (no per-run uids), no mounts or namespaces.
SANDBOX_BREAKING = {"ProtectControlGroups", "DynamicUser", "PrivateDevices", "RestrictNamespaces",
                    "PrivateUsers", "ProtectKernelTunables", "CapabilityBoundingSet", "SystemCallFilter"}


def systemd_unit() -> dict[str, dict[str, list[str]]]:
    """Sections of the unit, each key with all its values (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in SYSTEMD_UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None and key and _, f"not a unit line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_runs_the_server_as_root_with_a_delegated_cgroup():
    service = systemd_unit()["Service"]
    (exec_start,) = service["ExecStart"]
    binary = shlex.split(exec_start)[0]
    assert binary.startswith("/") and Path(binary).name in workspace_binaries()
    assert Path(binary).name == "pyexec-apiserver"
    assert service.get("User", ["root"]) == ["root"], "full isolation needs root"
    assert service["Delegate"] == ["yes"], "run cgroups need the controllers delegated to the service"
    assert not SANDBOX_BREAKING & service.keys(), f"these break the sandbox: {SANDBOX_BREAKING & service.keys()}"


def test_systemd_unit_keeps_state_secrets_and_shutdown_right():
    unit = systemd_unit()
    service = unit["Service"]
    env = dict(e.split("=", 1) for value in service["Environment"] for e in shlex.split(value))
    (state,) = service["StateDirectory"]
    assert env["PYEXEC_DATA_DIR"] == f"/var/lib/{state}"
    assert env["PYEXEC_API_KEYS_FILE"].startswith("/etc/"), "API keys come from a root-only file"
    assert service["KillMode"] == ["mixed"], "SIGTERM to the server alone, so that it records its runs"
    default_grace = 10
    assert float(service["TimeoutStopSec"][0]) > default_grace
    assert service["Restart"] == ["on-failure"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_systemd_analyze_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze is missing (Debian package systemd)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    # verify also checks that ExecStart exists: point it at a binary that does.
    unit = tmp_path / SYSTEMD_UNIT.name
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={shutil.which('true')}", SYSTEMD_UNIT.read_text())
    unit.write_text(text)
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------------------------------------------

DASHBOARD = ROOT / "deploy" / "grafana" / "python-executor.json"
METRICS_SOURCES = [ROOT / "apiserver" / "src" / "metrics.rs", ROOT / "operator" / "src" / "metrics.rs"]


def registered_metrics() -> dict[str, str]:
    """The metric families the Rust sources register (prefix_name) and their kind (counter, gauge, histogram)."""
    found = {}
    for source in METRICS_SOURCES:
        text = source.read_text()
        prefix = re.search(r'Registry::with_prefix\("([a-z_]+)"\)', text).group(1)
        # Each metric is declared (`let name = Kind...`, `let name = Family::<Labels, Kind>...`, or with its type,
        # `let name: Family<Labels, Kind, ...> = ...`) before `registry.register("name", "help", name.clone())`.
        kinds = {var: kind for var, kind in re.findall(
            r"let (\w+)(?:: Family<\w+, | = (?:Family::<\w+, )?)(Counter|Gauge|Histogram)\b", text)}
        for name, var in re.findall(r'registry\.register\(\s*"([a-z_]+)",\s*"[^"]*",\s*(\w+)\.clone\(\)', text):
            assert var in kinds, f"{source}: the declaration of {var} (metric {name}) was not recognised"
            found[f"{prefix}_{name}"] = kinds[var].lower()
    return found


def dashboard_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_dashboard_uses_only_metrics_the_servers_export():
    dashboard = json.loads(DASHBOARD.read_text())
    metrics = registered_metrics()
    # Anchors: the parsing of the sources found the families the dashboard is built on.
    for name in ("pyexec_executions", "pyexec_queue_depth", "pyexec_operator_reconciles",
                 "pyexec_operator_execution_finish_seconds", "pyexec_operator_watch_healthy"):
        assert name in metrics, f"{name} not found in the metrics sources: {sorted(metrics)}"
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    used = set()
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            for series in re.findall(r"\bpyexec_[a-z0-9_]+", target["expr"]):
                family = next((series.removesuffix(s) for s in ("_total", "_bucket", "_sum", "_count")
                               if series.endswith(s) and series.removesuffix(s) in metrics), series)
                assert family in metrics, f"panel {panel['title']!r} uses {series}, which no metrics.rs registers"
                assert any(series == family + s for s in suffixes[metrics[family]]), \
                    f"panel {panel['title']!r}: {series} is not a series of the {metrics[family]} {family}"
                used.add(family)
    assert used, "the dashboard queries no metric"


def test_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


# ---------------------------------------------------------------------------------------------------------------
# End-to-end workflow on kind
# ---------------------------------------------------------------------------------------------------------------

E2E_KIND_SCRIPT = ROOT / "scripts" / "e2e-kind.sh"
E2E_KIND_WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yml"


def test_e2e_kind_script_and_workflow():
    """scripts/e2e-kind.sh parses, checks its tools, and the GitHub Actions workflow that runs it is valid YAML."""
    assert os.access(E2E_KIND_SCRIPT, os.X_OK), "scripts/e2e-kind.sh must be executable"
    bash = subprocess.run(["bash", "-n", str(E2E_KIND_SCRIPT)], capture_output=True, text=True)
    assert bash.returncode == 0, bash.stderr
    script = E2E_KIND_SCRIPT.read_text()
    assert "set -euo pipefail" in script
    for tool in ("docker", "kind", "kubectl", "helm"):
        assert re.search(rf"^need {tool} \"", script, re.M), f"the script does not check for {tool}"
    for variable in ("PYEXEC_E2E_OPERATOR_IMAGE", "PYEXEC_E2E_APISERVER_IMAGE", "KUBECONFIG"):
        assert f"export {variable}" in script or re.search(rf"export [^\n]*\b{variable}=", script), variable
    assert "cargo test --locked -p pyexec-operator --test e2e -- --nocapture" in script
    assert "trap cleanup EXIT" in script and "kind delete cluster" in script

    workflow = load_yaml(E2E_KIND_WORKFLOW)
    # YAML 1.1 (PyYAML) reads the key `on` as true.
    triggers = workflow.get("on", workflow.get(True))
    assert triggers and "workflow_dispatch" in triggers, triggers
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    steps = job["steps"]
    assert any(str(step.get("uses", "")).startswith("actions/checkout@") for step in steps)
    assert any(str(step.get("uses", "")).startswith("helm/kind-action@") for step in steps), "kind is installed"
    runs = [line.strip() for step in steps for line in str(step.get("run", "")).splitlines()]
    assert "scripts/e2e-kind.sh" in runs, runs


# ---------------------------------------------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------------------------------------------

DOCS = [ROOT / "docs" / "gitops.md", GITOPS / "README.md", DOCKER / "README.md", COMPOSE_DIR / "README.md",
        NOMAD_FILE.parent / "README.md", ROOT / "docs" / "operations.md", ROOT / "docs" / "security.md",
        ROOT / "docs" / "benchmarks.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
