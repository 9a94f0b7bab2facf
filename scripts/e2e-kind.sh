#!/usr/bin/env bash
# The end-to-end Kubernetes suite (operator/tests/e2e.rs) on a throwaway kind cluster:
#   1. builds the operator and API server images from deploy/docker/ with docker;
#   2. creates a kind cluster (its own kubeconfig under target/e2e-kind/, ~/.kube/config is left alone) and loads
#      the images into it (`kind load docker-image`), plus the Python image of the execution Pods;
#   3. runs `cargo test -p pyexec-operator --test e2e -- --nocapture` with KUBECONFIG and the image variables: the
#      test installs the Helm chart with those images and checks executions on the cluster's kubelet;
#   4. follows the cluster part of docs/first-hour.md (its own cluster, images and chart install, then deleted);
#   5. deletes the cluster on exit (after exporting its logs to target/e2e-kind/logs when something failed).
#
# Needs docker (a running engine), kind v0.24+ (its default CNI enforces NetworkPolicies, which the executions rely
# on), kubectl, helm and cargo. helm and kubectl may also come from scripts/k8s/install-tools.sh
# (target/k8s-tools/bin, used when they are not on PATH).
#
# Environment (all optional):
#   PYEXEC_E2E_KIND_CLUSTER   cluster name (default pyexec-e2e); an existing cluster of that name is an error
#   KIND_NODE_IMAGE           node image (kindest/node:vX.Y.Z; default: the kind release's own)
#   PYEXEC_E2E_TAG            tag of the two images built (default e2e)
#   PYEXEC_E2E_PYTHON_IMAGE   image of Python 3.12 execution Pods (default python:3.12-slim, the chart's)
#   PYEXEC_E2E_PACKAGES=1     also enable the chart's package proxy and run the requirements example (internet)
#   PYEXEC_E2E_VALUES         one more values file for the chart
#   PYEXEC_E2E_KEEP=1         keep the release and the cluster (prints how to reach it and delete it)
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${PYEXEC_E2E_KIND_CLUSTER:-pyexec-e2e}
tag=${PYEXEC_E2E_TAG:-e2e}
operator_image="pyexec-operator:$tag"
apiserver_image="pyexec-apiserver:$tag"
python_image=${PYEXEC_E2E_PYTHON_IMAGE:-python:3.12-slim}
work=target/e2e-kind
kubeconfig="$PWD/$work/kubeconfig"

log() { echo "e2e-kind: $*"; }
die() { echo "e2e-kind: ERROR: $*" >&2; exit 1; }

# helm and kubectl of scripts/k8s/install-tools.sh, after whatever PATH already has.
if [ -d target/k8s-tools/bin ]; then
  PATH="$PATH:$PWD/target/k8s-tools/bin"
fi
need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH: $2"
}
need docker "install Docker Engine (https://docs.docker.com/engine/install/) and start it"
need kind "go install sigs.k8s.io/kind@v0.29.0 (then add \$(go env GOPATH)/bin to PATH), or a release binary from https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/, or scripts/k8s/install-tools.sh (target/k8s-tools/bin)"
need helm "https://helm.sh/docs/intro/install/, or scripts/k8s/install-tools.sh (target/k8s-tools/bin)"
need cargo "install Rust with rustup: https://rustup.rs"
docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine (is it running, may this user use it?)"

kind_version=$(kind version | awk '{print $2}')
kind_minor=$(echo "$kind_version" | sed -n 's/^v0\.\([0-9]*\)\..*$/\1/p')
if [ -n "$kind_minor" ] && [ "$kind_minor" -lt 24 ]; then
  die "kind $kind_version is too old: v0.24+ is needed (its default CNI enforces NetworkPolicies)"
fi
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  die "a kind cluster named $cluster exists: delete it (kind delete cluster --name $cluster) or set PYEXEC_E2E_KIND_CLUSTER"
fi

log "building $operator_image and $apiserver_image from deploy/docker/"
export DOCKER_BUILDKIT=1
docker build -f deploy/docker/operator.Dockerfile -t "$operator_image" .
docker build -f deploy/docker/apiserver.Dockerfile -t "$apiserver_image" .

mkdir -p "$work"
rm -f "$kubeconfig"
cleanup() {
  local status=$?
  if [ "${PYEXEC_E2E_KEEP:-}" = 1 ]; then
    log "PYEXEC_E2E_KEEP=1: kept the cluster $cluster; export KUBECONFIG=$kubeconfig to use it," \
      "kind delete cluster --name $cluster to delete it"
    return
  fi
  if [ "$status" -ne 0 ]; then
    log "failed (exit $status): exporting the cluster's logs to $work/logs"
    kind export logs "$work/logs" --name "$cluster" >/dev/null 2>&1 || true
  fi
  log "deleting the cluster $cluster"
  kind delete cluster --name "$cluster" --kubeconfig "$kubeconfig" || true
  rm -f "$kubeconfig"
}
trap cleanup EXIT

log "creating the kind cluster $cluster ($kind_version)"
create=(kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 180s)
if [ -n "${KIND_NODE_IMAGE:-}" ]; then
  create+=(--image "$KIND_NODE_IMAGE")
fi
"${create[@]}"
export KUBECONFIG="$kubeconfig"
kubectl version
kubectl get nodes -o wide

log "loading the images into the cluster"
kind load docker-image "$operator_image" "$apiserver_image" --name "$cluster"
# The execution Pods' image: loaded ahead so that the first executions do not wait for a pull. Not fatal: the node
# pulls it otherwise (kind load can fail on some Docker image stores).
if docker pull -q "$python_image" >/dev/null && kind load docker-image "$python_image" --name "$cluster"; then
  log "loaded $python_image"
else
  log "could not preload $python_image: the node will pull it"
fi

log "running the end-to-end suite"
export PYEXEC_E2E_OPERATOR_IMAGE="$operator_image" PYEXEC_E2E_APISERVER_IMAGE="$apiserver_image"
# Loaded above: never pulled (a missing image shows as ErrImageNeverPull instead of a pull from a registry).
export PYEXEC_E2E_IMAGE_PULL_POLICY=Never
export PYEXEC_E2E_HELM
PYEXEC_E2E_HELM=$(command -v helm)
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0} CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
cargo test --locked -p pyexec-operator --test e2e -- --nocapture

# The cluster part of docs/first-hour.md as a reader runs it: builds the images, creates its own kind cluster
# (pyexec, in a kubeconfig of its own), installs the chart and runs an eval, then deletes the cluster.
log "following the cluster part of docs/first-hour.md"
KUBECONFIG="$PWD/$work/first-hour-kubeconfig" python3 scripts/check-doc-examples.py --walkthrough --only-cluster \
  docs/first-hour.md
log "passed"
