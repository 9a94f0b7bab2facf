# syntax=docker/dockerfile:1.10
#
# The python-executor API server (pyexec-apiserver) and command line (python-executor), with what the embedded
# backend needs at run time: CPython 3.12, pasta (Debian package passt) and nft for egress, CA certificates, and the
# pinned uv of scripts/install-uv.sh for requirements. Build from the repository root:
#
#   docker build -f deploy/docker/apiserver.Dockerfile -t ghcr.io/python-executor/pyexec-apiserver:0.1.0 .
#
# Who it runs as decides what it can do:
#
#   * As built: uid 10001, no capabilities. Enough for the Kubernetes backend (PYEXEC_BACKEND=kubernetes), which
#     only talks to the cluster's API server, and for the embedded backend's rootless, REDUCED mode (every run
#     shares uid 10001; memory is capped with RLIMIT_DATA instead of a cgroup; /health says
#     `isolation.level: "reduced"`). Even that mode creates user namespaces and mounts a fresh /proc, which Docker's
#     defaults forbid: it needs the security options of deploy/compose (seccomp profile, AppArmor, system paths),
#     but no capability.
#   * FULL embedded isolation (a fresh unprivileged host uid per run, per-run memory/pids/CPU cgroups) needs root
#     inside the container (`--user 0`) plus exactly the capabilities, device, security options and writable cgroup
#     of deploy/compose/docker-compose.yml, and a data directory owned by root (a fresh volume mounted with
#     `volume-nocopy`): never `--privileged`. Run it with `--init` (or compose's `init: true`): pasta forks into the
#     background, and an init process reaps it after each run.
#
# More Python versions: the embedded backend uses every `python3.X` (3.10-3.13) on PATH, or exactly the interpreters
# of PYEXEC_PYTHONS (docs/configuration.md). Derive an image, for example with uv's relocatable CPython builds
# (downloaded at build time), linked as /usr/local/bin/python3.11 and /usr/local/bin/python3.13:
#
#   FROM ghcr.io/python-executor/pyexec-apiserver:0.1.0
#   USER 0
#   RUN UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_BIN_DIR=/usr/local/bin uv python install 3.11 3.13
#   USER 10001:10001
#
# or Debian's own `apt-get install python3.11` (/usr/bin/python3.11), or explicit paths:
# PYEXEC_PYTHONS=3.11=/opt/python/<folder>/bin/python3.11,3.12=/usr/local/bin/python3.12 (`uv python find 3.11`
# prints the path). Interpreters outside /usr are made visible to the sandbox read-only at the same path.

# ---- build: the two release binaries ----------------------------------------------------------------------------
# Rust 1.95 on Debian 12, the same Debian release as the runtime stage (glibc), and at least the workspace's
# rust-version.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace (every member must be present); apiserver.Dockerfile.dockerignore leaves out target/ and the
# other build outputs.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p pyexec-apiserver -p python-executor \
    && install -D -m 0755 target/release/pyexec-apiserver /out/pyexec-apiserver \
    && install -D -m 0755 target/release/python-executor /out/python-executor

# ---- uv: the pinned uv, from its PyPI wheel, checked against the pinned SHA-256 ------------------------------------
# A stage of its own so that curl (which install-uv.sh uses) stays out of the runtime image. PIP_INDEX_URL may name
# an internal mirror of PyPI's simple index.
FROM python:3.12-slim-bookworm AS uv
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/install-uv.sh /usr/local/share/python-executor/install-uv.sh
ARG PIP_INDEX_URL
RUN /usr/local/share/python-executor/install-uv.sh && /usr/local/bin/uv --version

# ---- runtime ------------------------------------------------------------------------------------------------------
# CPython 3.12 (/usr/local/bin/python3.12) is the default interpreter of the embedded backend
# (PYEXEC_DEFAULT_IMAGE=python:3.12-slim).
FROM python:3.12-slim-bookworm AS runtime
# Package versions are not pinned: the base image's tag fixes the Debian release, whose archive keeps only the
# current (security-patched) version of each package. (hadolint DL3008)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends passt nftables ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /usr/local/bin/uv /usr/local/bin/uv
COPY --from=build /out/pyexec-apiserver /out/python-executor /usr/local/bin/
# The non-root default user. Sandboxes never run as it when the server is root: they get host uids from
# PYEXEC_SANDBOX_UID_BASE (2000000000) on, which belong to no user.
RUN groupadd --system --gid 10001 pyexec \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/python-executor --no-create-home \
        --shell /usr/sbin/nologin pyexec \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/python-executor
# The execution store, workspaces, the environment cache and sandbox state (docs/configuration.md). Set explicitly:
# without it a non-root server would use ~/.local/share/python-executor.
ENV PYEXEC_DATA_DIR=/var/lib/python-executor
VOLUME ["/var/lib/python-executor"]
EXPOSE 8080
USER 10001:10001
# /health answers without an API key. Python is already here for the sandboxes, so no curl is needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PYEXEC_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["pyexec-apiserver"]
