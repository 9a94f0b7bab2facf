# python-executor on Nomad: the API server on the embedded backend, with full isolation, one per client node.
#
#   nomad var put nomad/jobs/python-executor api_keys="$(openssl rand -hex 32)"
#   nomad job run deploy/nomad/python-executor.nomad.hcl
#
# Driver: raw_exec, running the pyexec-apiserver binary on the host as the Nomad client's user (root). The server
# is a sandbox manager: it builds the isolation of every run itself (user/mount/pid/net namespaces, per-run host
# uids, cgroups, seccomp, Landlock), exactly as `sudo scripts/serve.sh` does. The docker driver cannot give it what
# the compose file does without `privileged = true`: Nomad passes security_opt to the engine unchanged, and the
# engine refuses `systempaths=unconfined` (the Docker CLI and Compose translate it themselves), without which no run
# can mount its /proc. The exec driver masks /proc the same way and drops SYS_ADMIN. README.md next to this file
# has the details and the client set-up.
#
# Client nodes: Linux 5.7+ with cgroup v2, the raw_exec plugin enabled, and what scripts/setup.sh installs (a
# CPython 3.10-3.13, passt, nftables, the pinned uv) plus the binary at var.binary; mark them with
# `meta { python_executor = "true" }` in the client configuration.

variable "binary" {
  type        = string
  default     = "/usr/local/bin/pyexec-apiserver"
  description = "Absolute path of pyexec-apiserver on the client nodes (cargo build --release -p pyexec-apiserver)."
}

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "Datacenters to run in."
}

variable "server_count" {
  type        = number
  default     = 1
  description = "Servers to run, at most one per node (each is independent: its own queue and store)."
}

job "python-executor" {
  type        = "service"
  datacenters = var.datacenters

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  # Nodes prepared with scripts/setup.sh and the binary.
  constraint {
    attribute = "${meta.python_executor}"
    value     = "true"
  }

  # One server per node: two servers on one host would hand out the same sandbox host uids
  # (PYEXEC_SANDBOX_UID_BASE) and share port 8080.
  constraint {
    operator = "distinct_hosts"
    value    = "true"
  }

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "apiserver" {
    count = var.server_count

    network {
      port "http" {
        static = 8080
      }
    }

    # Restart in place a few times (the store and the environment cache survive), then reschedule.
    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "fail"
    }

    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = true
    }

    # The data directory: SQLite store, workspaces, uploads, the environment cache (PYEXEC_ENV_CACHE_MB) and
    # sandbox state. Sticky and migrated, so a new version of the job finds the cache on the same node.
    ephemeral_disk {
      size    = 10240
      sticky  = true
      migrate = true
    }

    service {
      name     = "python-executor"
      provider = "nomad"
      port     = "http"
      tags     = ["http", "embedded"]

      check {
        name     = "health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "3s"

        check_restart {
          limit = 3
          grace = "60s"
        }
      }
    }

    task "apiserver" {
      driver = "raw_exec"

      config {
        command = var.binary
      }

      env {
        PYEXEC_HOST              = "${NOMAD_IP_http}"
        PYEXEC_PORT              = "${NOMAD_PORT_http}"
        PYEXEC_DATA_DIR          = "${NOMAD_ALLOC_DIR}/data"
        PYEXEC_API_KEYS_FILE     = "${NOMAD_SECRETS_DIR}/api-keys"
        PYEXEC_LOG_FORMAT        = "json"
        PYEXEC_MAX_CONCURRENT    = "4"
        PYEXEC_DEFAULT_MEMORY_MB = "1024"
        PYEXEC_SHUTDOWN_GRACE    = "10"
      }

      # API keys from a Nomad variable (readable by this job's workload identity), one per line.
      template {
        destination = "secrets/api-keys"
        perms       = "0400"
        change_mode = "restart"
        data        = <<-EOT
        {{- with nomadVar "nomad/jobs/python-executor" }}{{ .api_keys }}{{ end }}
        EOT
      }

      # PYEXEC_MAX_CONCURRENT x PYEXEC_DEFAULT_MEMORY_MB for the runs, plus the server and one environment build.
      resources {
        cpu    = 4000
        memory = 6144
      }

      # SIGTERM gives running executions PYEXEC_SHUTDOWN_GRACE seconds; pending ones stay queued for the next start.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"
    }
  }
}
