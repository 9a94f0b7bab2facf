# syntax=docker/dockerfile:1.10
#
# The Kubernetes operator (pyexec-operator): runs PythonExecution resources in locked-down Pods. It only talks to the
# cluster's API server, so the runtime image is distroless: glibc and libgcc, no shell, no package manager. Build
# from the repository root:
#
#   docker build -f deploy/docker/operator.Dockerfile -t ghcr.io/python-executor/pyexec-operator:0.1.0 .
#
# Health: distroless has no shell and no HTTP client, so the image declares no HEALTHCHECK. The operator serves
# /healthz (liveness) and /readyz (readiness) on :8081 next to /metrics and /logs; Kubernetes probes them
# (charts/python-executor/templates/operator/deployment.yaml), which is where the operator runs.
#
# Writable paths: none in the image. The log store (`logs.dir` in the operator's configuration) needs a volume.

# ---- build --------------------------------------------------------------------------------------------------------
# Rust 1.95 on Debian 12, the Debian release of the distroless runtime (glibc).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace (every member must be present); operator.Dockerfile.dockerignore leaves out target/ and the
# other build outputs.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p pyexec-operator \
    && install -D -m 0755 target/release/pyexec-operator /out/pyexec-operator

# ---- runtime ------------------------------------------------------------------------------------------------------
# The `nonroot` tag's user is uid/gid 65532. USER names it by number, so that Kubernetes' runAsNonRoot can verify
# it without a runAsUser of its own (the Helm chart still sets one).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/pyexec-operator /usr/local/bin/pyexec-operator
USER 65532:65532
# Metrics, /healthz, /readyz and /logs (PYEXEC_OPERATOR_LISTEN, default 0.0.0.0:8081).
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/pyexec-operator"]
