//! The Pod protocol: every name that the operator (which builds the Pod), the API server (which follows its log) and
//! the in-Pod runner (`python/pod_runner.py`) must agree on, defined here once.
//!
//! The runner is Python, so it cannot import these constants: it repeats the ones it reads in a single block at the
//! top of its source, and a test below compares that block with this module name by name, in both directions (no
//! name missing on either side, no value different). The run configuration (`run.json`, [`RunConfig`]) and the
//! runner's final frame ([`EndFrame`]) are serde types; the runner's block lists their fields, compared with the
//! fields these types serialize.
//!
//! Frames: the runner writes the program's stdout, stderr, the pre-commands' output, the tar of the files the
//! program wrote ([`FRAME_FILES`]) and a final summary as lines `<FRAME_MARKER> <nonce> <kind> <seq> <base64>` on the main container's log. The nonce comes from the Pod spec
//! ([`NONCE_ENV`]); lines without it are ignored, so a program cannot forge output (see `pod_runner.py`). `seq`
//! numbers the frames from 0 (the start frame) in the order they are written, so that a reader following the log
//! again after a dropped stream skips the frames it has and notices the ones it missed; runners before it wrote
//! `<FRAME_MARKER> <nonce> <kind> <base64>`, which readers still decode ([`encode_unnumbered_frame`]).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------------------------------------ containers

/// The program's container (the runner in role [`ROLE_RUN`]); its log carries the frames.
pub const MAIN_CONTAINER: &str = "python";
/// The init container that receives an uploaded archive on its stdin (role [`ROLE_RECEIVE`]).
pub const RECEIVE_CONTAINER: &str = "receive";
/// The init container that installs the requirements (role [`ROLE_INSTALL`]).
pub const INSTALL_CONTAINER: &str = "install";
/// The Docker sidecar of the opt-in Docker path.
pub const DOCKER_CONTAINER: &str = "docker";

/// The runner's role in the `receive` container: its first argument.
pub const ROLE_RECEIVE: &str = "receive";
/// The runner's role in the `install` container.
pub const ROLE_INSTALL: &str = "install";
/// The runner's role in the main container.
pub const ROLE_RUN: &str = "run";

// ------------------------------------------------------------------------------------------------ paths

/// The workspace, where the program runs.
pub const WORK_DIR: &str = crate::paths::WORKSPACE_DIR;
/// Where the execution's ConfigMap (runner, eval runner, [`RUN_CONFIG_FILE`], inline sources) is mounted.
pub const RUN_DIR: &str = "/opt/pyexec";
/// Where a user's ConfigMap source is mounted.
pub const SOURCE_DIR: &str = "/opt/pyexec-source";
/// Where the requirements are installed (on the program's `PYTHONPATH`).
pub const DEPS_DIR: &str = "/deps";
/// The Pod's scratch directory (`HOME` and `TMPDIR` of every container).
pub const TMP_DIR: &str = "/tmp";

/// Variable that moves [`WORK_DIR`] (only tests run the runner outside a Pod).
pub const WORK_DIR_ENV: &str = "PYEXEC_WORK";
/// Variable that moves [`RUN_DIR`].
pub const RUN_DIR_ENV: &str = "PYEXEC_RUN_DIR";
/// Variable that moves [`DEPS_DIR`].
pub const DEPS_DIR_ENV: &str = "PYEXEC_DEPS";
/// Variable that moves [`SOURCE_DIR`].
pub const SOURCE_DIR_ENV: &str = "PYEXEC_USER_SOURCE";

// ------------------------------------------------------------------------------------------------ files

/// The runner, in [`RUN_DIR`].
pub const RUNNER_FILE: &str = "pod_runner.py";
/// The eval runner (REPL mode), in [`RUN_DIR`].
pub const EVAL_RUNNER_FILE: &str = "eval_runner.py";
/// The run configuration ([`RunConfig`] as JSON), in [`RUN_DIR`].
pub const RUN_CONFIG_FILE: &str = "run.json";
/// The program's standard input, in [`RUN_DIR`] when there is one.
pub const STDIN_FILE: &str = "stdin";
/// The requirements to install, in [`RUN_DIR`] (else the project's own file of that name in [`WORK_DIR`]).
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
/// What the install container installed (`name==version`, a JSON list), in [`DEPS_DIR`].
pub const INSTALLED_FILE: &str = ".pyexec-installed.json";
/// What the install container skipped (`[{"name": ..., "reason": ...}]`, JSON), in [`DEPS_DIR`]: detected
/// distributions the package index does not have ([`DETECTED_MARKER`], [`OPTIONAL_MARKER`]).
pub const SKIPPED_FILE: &str = ".pyexec-skipped.json";
/// Marks a line of [`REQUIREMENTS_FILE`] that detection added: installed when the index has it, else skipped.
pub const DETECTED_MARKER: &str = crate::requirements::DETECTED_MARKER;
/// Marks a line of [`REQUIREMENTS_FILE`] that detection added for an import under an `ImportError` handler: also
/// skipped when the index has no release of it that installs here.
pub const OPTIONAL_MARKER: &str = crate::requirements::OPTIONAL_MARKER;
/// The reason the install container gives for a detected distribution the package index does not have (the
/// embedded backend's words too).
pub const SKIP_NOT_FOUND: &str = crate::requirements::NOT_FOUND;
/// The reason it gives for an optional distribution the index has, but nothing of which installs here.
pub const SKIP_NOT_INSTALLABLE: &str = crate::requirements::NOT_INSTALLABLE;
/// Where the receive container unpacks before moving the files into [`WORK_DIR`].
pub const RECEIVING_DIR: &str = ".pyexec-receiving";

/// The ConfigMap key of the inline source file number `index` (ConfigMap keys cannot hold `/`, so
/// [`RunConfig::files`] maps keys to paths).
pub fn source_key(index: usize) -> String {
    format!("src-{index}")
}

// ------------------------------------------------------------------------------------------------ environment

/// The nonce that marks the runner's frames; the runner removes it from the program's environment.
pub const NONCE_ENV: &str = "PYEXEC_FRAME_NONCE";
/// Set to [`FLAG_ON`] when the runner must wait for the operator's go-ahead on its stdin. The operator sets it on
/// every Pod (and never lets a user's variable replace it): the go-ahead comes once the program's NetworkPolicy
/// exists (after an install, once it replaced the install stage's). A runner started without it (tests) goes on.
pub const GATE_ENV: &str = "PYEXEC_GATE";
/// The expected SHA-256 (hex) of the archive the receive container reads.
pub const ARCHIVE_SHA256_ENV: &str = "PYEXEC_ARCHIVE_SHA256";
/// Set to [`FLAG_ON`] when the install container may build packages from source distributions.
pub const ALLOW_SDIST_ENV: &str = "PYEXEC_ALLOW_SDIST";
/// The descriptor the eval runner writes its result to.
pub const RESULT_FD_ENV: &str = crate::eval::RESULT_FD_ENV;
/// The eval runner's first argument when it hosts a program without evaluating its last expression: the runner
/// runs a program whose entrypoint is a file through the eval runner so that it reports the files the program
/// wrote, as the embedded backend does.
pub const NO_EVAL_FLAG: &str = crate::eval::NO_EVAL_FLAG;
/// The descriptor the eval runner writes the tar of the files the program created or changed to
/// ([`crate::files_out`]); the runner sets it when [`RunConfig::files_max_bytes`] asks for files.
pub const FILES_FD_ENV: &str = crate::files_out::FILES_FD_ENV;
/// Most bytes of file content the eval runner puts in that tar ([`RunConfig::files_max_bytes`]).
pub const FILES_MAX_BYTES_ENV: &str = crate::files_out::FILES_MAX_BYTES_ENV;
/// Most files the eval runner puts in that tar ([`RunConfig::files_max_count`]).
pub const FILES_MAX_COUNT_ENV: &str = crate::files_out::FILES_MAX_COUNT_ENV;
/// The directory whose changed files the eval runner reports: the runner sets it to the workspace it uses (tests
/// move [`WORK_DIR`]).
pub const FILES_ROOT_ENV: &str = crate::files_out::FILES_ROOT_ENV;
/// Tar overhead one file may add ([`crate::files_out::ENTRY_OVERHEAD_BYTES`]): with
/// [`FILES_ARCHIVE_OVERHEAD_BYTES`], the runner bounds the tar it reads as [`crate::files_out::max_archive_bytes`]
/// does, and drops a larger one (not the eval runner's: the program wrote to the descriptor itself).
pub const FILES_ENTRY_OVERHEAD_BYTES: u64 = crate::files_out::ENTRY_OVERHEAD_BYTES;
/// Tar overhead of the archive's end ([`crate::files_out::ARCHIVE_OVERHEAD_BYTES`]).
pub const FILES_ARCHIVE_OVERHEAD_BYTES: u64 = crate::files_out::ARCHIVE_OVERHEAD_BYTES;
/// The memory cgroup's event counters (cgroup v2): the runner reads their `oom_kill` count before and after the
/// program, so that an out-of-memory kill of the program alone (not of the whole container) is reported as one.
pub const CGROUP_MEMORY_EVENTS: &str = "/sys/fs/cgroup/memory.events";
/// The memory cgroup's OOM state (cgroup v1), with the same `oom_kill` line.
pub const CGROUP_V1_OOM_CONTROL: &str = "/sys/fs/cgroup/memory/memory.oom_control";
/// Variable that replaces both OOM counter files with one (only tests set it; the operator never does). The runner
/// reads it and removes it from the program's environment.
pub const OOM_EVENTS_ENV: &str = "PYEXEC_OOM_EVENTS";
/// Variable naming a file whose content (a number) replaces the free bytes of [`WORK_DIR`] that the runner reads
/// with `statvfs` after a failed program (only tests set it; the operator never does). The runner reads it and
/// removes it from the program's environment.
pub const DISK_FREE_ENV: &str = "PYEXEC_DISK_FREE";
/// When a failed program left fewer free bytes than this in [`WORK_DIR`], the runner reports
/// [`EndFrame::disk_full`]: the program most likely failed because the workspace was full (`ENOSPC`).
pub const DISK_FULL_FREE_BYTES: u64 = 1 << 20;
/// The value that turns a flag variable on.
pub const FLAG_ON: &str = "1";
/// What the operator writes to the runner's stdin once the network is closed (one line). A runner that reads
/// anything else (its stdin closed without it) runs nothing.
pub const GO_AHEAD: &str = "go\n";
/// Set to [`FLAG_ON`] on the idle Pods of a warm pool: the runner has no `run.json` and no sources yet, and waits on
/// its stdin for one line, a [`Claim`] as JSON, which the operator writes through the attach API once an execution
/// claimed the Pod (the Pod's NetworkPolicy exists before the Pod does). That line is also the go-ahead: a runner
/// whose stdin closes without a well-formed claim runs nothing.
pub const CLAIM_ENV: &str = "PYEXEC_CLAIM";

// ------------------------------------------------------------------------------------------------ frames

/// The start of every frame line.
pub const FRAME_MARKER: &str = "\x1fpyexec";
/// Frame kind: a piece of the program's standard output.
pub const FRAME_STDOUT: &str = "o";
/// Frame kind: a piece of the program's standard error.
pub const FRAME_STDERR: &str = "e";
/// Frame kind: a piece of the pre-commands' output.
pub const FRAME_PRE_OUTPUT: &str = "p";
/// Frame kind: the final summary, an [`EndFrame`] as JSON.
pub const FRAME_END: &str = "x";
/// Frame kind: the first frame the runner writes, before any output (empty data). A log whose frames lack it lost
/// its beginning (the kubelet rotated the container log away): its output is incomplete ([`EndFrame::frames`]).
pub const FRAME_START: &str = "s";
/// Frame kind: a piece of the tar of the files the program created or changed under [`WORK_DIR`], as the eval
/// runner wrote it. The runner sends the whole tar in pieces of at most 64 KiB right before the end frame, whose
/// [`EndFrame::files_bytes`] says how many bytes they hold in all.
pub const FRAME_FILES: &str = "f";
/// Most bytes of the eval result the runner keeps.
pub const RESULT_LIMIT_BYTES: usize = 10 << 20;
/// The exit code the runner reports when it stopped the program at its timeout.
pub const EXIT_TIMEOUT: i32 = crate::outcome::EXIT_TIMEOUT;

/// What every frame of the runner started with `nonce` begins with.
pub fn frame_prefix(nonce: &str) -> String {
    format!("{FRAME_MARKER} {nonce} ")
}

/// One frame line as the runner writes it, `seq` its sequence number (tests and fakes use it to play the runner).
pub fn encode_frame(nonce: &str, seq: u64, kind: &str, data: &[u8]) -> String {
    format!("{}{kind} {seq} {}\n", frame_prefix(nonce), STANDARD.encode(data))
}

/// One frame line as runners wrote it before frames carried sequence numbers. Readers still decode it (a Pod
/// started by an older operator runs its own copy of the runner); tests use it to play such a runner.
pub fn encode_unnumbered_frame(nonce: &str, kind: &str, data: &[u8]) -> String {
    format!("{}{kind} {}\n", frame_prefix(nonce), STANDARD.encode(data))
}

// ------------------------------------------------------------------------------------------------ documents

/// What the runner does, written by the operator into [`RUN_CONFIG_FILE`]. Every field is always written; the
/// runner refuses a file whose fields are not exactly these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The file to run, relative to [`WORK_DIR`]; `None`: the directory itself (`python /work`).
    pub entrypoint: Option<String>,
    /// `sys.argv[1:]`.
    pub args: Vec<String>,
    /// Run through the eval runner and report the trailing expression.
    pub eval_last_expr: bool,
    /// Shell commands run before the program.
    pub pre_commands: Vec<String>,
    /// The program's (and pre-commands') wall-clock limit, seconds.
    pub timeout_seconds: u64,
    /// Bytes of stdout, of stderr and of the pre-commands' output the runner frames; the rest is dropped and flagged.
    pub output_limit_bytes: u64,
    /// Inline sources: ConfigMap key ([`source_key`]) → path relative to [`WORK_DIR`].
    pub files: BTreeMap<String, String>,
    /// What the runner checks it cannot reach before it runs anything ([`Fence`]).
    pub fence: Fence,
    /// The size limit of [`WORK_DIR`] (the request's `diskMB`), MiB; 0: none known (the runner does not look for
    /// a full workspace, [`EndFrame::disk_full`]).
    pub disk_mb: u64,
    /// Most bytes of content of the files the program created or changed that the runner reports
    /// ([`FRAME_FILES`]); 0: none are (the operator keeps them only where it has a log store). A program whose
    /// entrypoint is a file then runs under the eval runner ([`NO_EVAL_FLAG`] unless it evaluates).
    pub files_max_bytes: u64,
    /// Most files reported; 0: none are.
    pub files_max_count: u64,
}

/// What a warm Pod's runner ([`CLAIM_ENV`]) receives on its stdin, as one JSON line, when an execution claimed the
/// Pod: what a cold Pod's ConfigMap would have held. Every field is always written; the runner refuses a claim
/// whose fields are not exactly these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The run configuration, as `run.json` would hold it ([`RunConfig::files`] maps the keys of `sources`).
    pub run: RunConfig,
    /// Inline sources by key ([`source_key`]): the text the ConfigMap would have held under that key.
    pub sources: BTreeMap<String, String>,
    /// The program's standard input, when there is one.
    pub stdin: Option<String>,
    /// The program's environment variables (plain values only; the runner's own variables are never among them).
    pub env: BTreeMap<String, String>,
}

/// The network fence the runner checks before it runs anything untrusted: every target must be unreachable
/// (connection refused or no answer within [`FENCE_BUDGET_MS`]); one that answers fails the execution with
/// [`EndFrame::fence_open`] and nothing runs. NetworkPolicies are enforced asynchronously, so the runner looks
/// again for up to [`FENCE_GRACE_SECONDS`] before it gives up. The operator always fills it with the real targets
/// (the cloud metadata endpoint, the Kubernetes API); tests point it at listeners of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    /// TCP endpoints that must not accept a connection. A host that is a name is resolved first (within the
    /// budget); a name that does not resolve is unreachable.
    pub tcp: Vec<FenceTarget>,
    /// When set, the name servers of this `resolv.conf` must not answer either (UDP and TCP port 53): the
    /// program has no network at all.
    pub resolv_conf: Option<String>,
}

/// One endpoint the program must not reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceTarget {
    /// What it is, for the error message ("the cloud metadata endpoint").
    pub what: String,
    /// An IP address or a DNS name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

/// The cloud metadata endpoint every cloud serves on its link-local address.
pub const METADATA_HOST: &str = "169.254.169.254";
/// The Kubernetes API's in-cluster name.
pub const KUBERNETES_API_NAME: &str = "kubernetes.default.svc";
/// Total time one round of the fence check may take, milliseconds.
pub const FENCE_BUDGET_MS: u64 = 300;
/// How long the runner keeps looking while a target is still reachable (the policy may not be enforced yet).
pub const FENCE_GRACE_SECONDS: u64 = 3;

/// The runner's final frame. The runner always writes every field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndFrame {
    /// Exit code (128 + signal when the program died of a signal; [`EXIT_TIMEOUT`] when the runner stopped it).
    pub exit: i32,
    /// The signal that ended the program.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The runner stopped the program (or a pre-command) at its timeout. An exit code of 124 alone means nothing:
    /// a program may exit with it.
    #[serde(default)]
    pub timed_out: bool,
    /// A pre-command failed: (0-based index, exit code).
    #[serde(default)]
    pub pre_failed: Option<(usize, i32)>,
    /// What the eval runner wrote to its result pipe, base64 (empty: no result); `None` when it had no pipe.
    #[serde(default)]
    pub result: Option<String>,
    /// `name==version` of the packages installed by the install container.
    #[serde(default)]
    pub installed: Vec<String>,
    /// What the install container skipped ([`SKIPPED_FILE`]).
    #[serde(default)]
    pub skipped: Vec<crate::model::SkippedPackage>,
    /// Output beyond the runner's cap was dropped.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// Output beyond the runner's cap was dropped.
    #[serde(default)]
    pub stderr_truncated: bool,
    /// The network fence was not in place: what was reachable ([`Fence`]). Nothing was run.
    #[serde(default)]
    pub fence_open: Option<String>,
    /// The program died of SIGKILL while the memory cgroup's `oom_kill` count rose: the kernel's OOM killer killed
    /// it (the container itself may live on and exit with the runner's code, without `reason: OOMKilled`).
    #[serde(default)]
    pub oom_killed: bool,
    /// How many frames the runner wrote before this one, its start frame ([`FRAME_START`]) included. A reader that
    /// read fewer lost some: the kubelet rotated the container log away before it was read.
    #[serde(default)]
    pub frames: Option<u64>,
    /// The program failed and left (almost) no free space in [`WORK_DIR`] ([`DISK_FULL_FREE_BYTES`]): it filled its
    /// size-limited workspace (`ENOSPC`) without the Pod being evicted. Only looked for when
    /// [`RunConfig::disk_mb`] is set.
    #[serde(default)]
    pub disk_full: bool,
    /// How many bytes of the tar of changed files the runner sent in [`FRAME_FILES`] frames before this one (0: the
    /// program changed nothing, or its runner wrote nothing because it was killed). `None` when the runner had no
    /// files to report: the run configuration asked for none, the program did not run under the eval runner, or
    /// it did not run to its end (timeout, failed pre-command, open fence).
    #[serde(default)]
    pub files_bytes: Option<u64>,
    /// The runner dropped the tar of changed files: it was larger than the eval runner writes for the caps (the
    /// program wrote to the descriptor itself). Nothing was sent.
    #[serde(default)]
    pub files_truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value in the runner's protocol block.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Py {
        Str(String),
        Int(i64),
        Names(Vec<String>),
    }

    fn s(value: &str) -> Py {
        Py::Str(value.to_owned())
    }

    /// The field names a serde type writes, sorted.
    fn fields<T: Serialize>(value: &T) -> Py {
        let json = serde_json::to_value(value).unwrap();
        let mut names: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
        names.sort();
        Py::Names(names)
    }

    /// Every constant the runner reads, by the name it has in the runner's block.
    fn rust_side() -> BTreeMap<&'static str, Py> {
        BTreeMap::from([
            ("ROLE_RECEIVE", s(ROLE_RECEIVE)),
            ("ROLE_INSTALL", s(ROLE_INSTALL)),
            ("ROLE_RUN", s(ROLE_RUN)),
            ("WORK_DIR", s(WORK_DIR)),
            ("RUN_DIR", s(RUN_DIR)),
            ("DEPS_DIR", s(DEPS_DIR)),
            ("SOURCE_DIR", s(SOURCE_DIR)),
            ("WORK_DIR_ENV", s(WORK_DIR_ENV)),
            ("RUN_DIR_ENV", s(RUN_DIR_ENV)),
            ("DEPS_DIR_ENV", s(DEPS_DIR_ENV)),
            ("SOURCE_DIR_ENV", s(SOURCE_DIR_ENV)),
            ("RUN_CONFIG_FILE", s(RUN_CONFIG_FILE)),
            ("EVAL_RUNNER_FILE", s(EVAL_RUNNER_FILE)),
            ("STDIN_FILE", s(STDIN_FILE)),
            ("REQUIREMENTS_FILE", s(REQUIREMENTS_FILE)),
            ("INSTALLED_FILE", s(INSTALLED_FILE)),
            ("SKIPPED_FILE", s(SKIPPED_FILE)),
            ("DETECTED_MARKER", s(DETECTED_MARKER)),
            ("OPTIONAL_MARKER", s(OPTIONAL_MARKER)),
            ("SKIP_NOT_FOUND", s(SKIP_NOT_FOUND)),
            ("SKIP_NOT_INSTALLABLE", s(SKIP_NOT_INSTALLABLE)),
            ("RECEIVING_DIR", s(RECEIVING_DIR)),
            ("NONCE_ENV", s(NONCE_ENV)),
            ("GATE_ENV", s(GATE_ENV)),
            ("ARCHIVE_SHA256_ENV", s(ARCHIVE_SHA256_ENV)),
            ("ALLOW_SDIST_ENV", s(ALLOW_SDIST_ENV)),
            ("RESULT_FD_ENV", s(RESULT_FD_ENV)),
            ("NO_EVAL_FLAG", s(NO_EVAL_FLAG)),
            ("FILES_FD_ENV", s(FILES_FD_ENV)),
            ("FILES_MAX_BYTES_ENV", s(FILES_MAX_BYTES_ENV)),
            ("FILES_MAX_COUNT_ENV", s(FILES_MAX_COUNT_ENV)),
            ("FILES_ROOT_ENV", s(FILES_ROOT_ENV)),
            ("FILES_ENTRY_OVERHEAD_BYTES", Py::Int(FILES_ENTRY_OVERHEAD_BYTES as i64)),
            ("FILES_ARCHIVE_OVERHEAD_BYTES", Py::Int(FILES_ARCHIVE_OVERHEAD_BYTES as i64)),
            ("FLAG_ON", s(FLAG_ON)),
            ("GO_AHEAD", s(GO_AHEAD)),
            ("CLAIM_ENV", s(CLAIM_ENV)),
            ("CLAIM_FIELDS", fields(&Claim::default())),
            ("FENCE_BUDGET_MS", Py::Int(FENCE_BUDGET_MS as i64)),
            ("FENCE_GRACE_SECONDS", Py::Int(FENCE_GRACE_SECONDS as i64)),
            ("FENCE_FIELDS", fields(&Fence::default())),
            ("FENCE_TARGET_FIELDS", fields(&FenceTarget::default())),
            ("FRAME_MARKER", s(FRAME_MARKER)),
            ("FRAME_STDOUT", s(FRAME_STDOUT)),
            ("FRAME_STDERR", s(FRAME_STDERR)),
            ("FRAME_PRE_OUTPUT", s(FRAME_PRE_OUTPUT)),
            ("FRAME_END", s(FRAME_END)),
            ("FRAME_START", s(FRAME_START)),
            ("FRAME_FILES", s(FRAME_FILES)),
            ("CGROUP_MEMORY_EVENTS", s(CGROUP_MEMORY_EVENTS)),
            ("CGROUP_V1_OOM_CONTROL", s(CGROUP_V1_OOM_CONTROL)),
            ("OOM_EVENTS_ENV", s(OOM_EVENTS_ENV)),
            ("DISK_FREE_ENV", s(DISK_FREE_ENV)),
            ("DISK_FULL_FREE_BYTES", Py::Int(DISK_FULL_FREE_BYTES as i64)),
            ("RESULT_LIMIT_BYTES", Py::Int(RESULT_LIMIT_BYTES as i64)),
            ("EXIT_TIMEOUT", Py::Int(i64::from(EXIT_TIMEOUT))),
            ("RUN_CONFIG_FIELDS", fields(&RunConfig::default())),
            ("END_FRAME_FIELDS", fields(&EndFrame::default())),
        ])
    }

    const BEGIN: &str = "# BEGIN PROTOCOL";
    const END: &str = "# END PROTOCOL";

    /// The runner's protocol block: `NAME = literal` lines between the markers.
    fn runner_side(source: &str) -> BTreeMap<String, Py> {
        let start = source.find(BEGIN).expect("the runner has a protocol block") + BEGIN.len();
        let end = source[start..].find(END).expect("the protocol block ends") + start;
        let mut out = BTreeMap::new();
        for line in source[start..end].lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (name, literal) = line.split_once(" = ").unwrap_or_else(|| panic!("not `NAME = literal`: {line}"));
            let value = parse_literal(literal).unwrap_or_else(|| panic!("not a plain literal: {line}"));
            assert!(out.insert(name.to_owned(), value).is_none(), "{name} is defined twice");
        }
        out
    }

    /// A Python string, integer, or tuple of strings.
    fn parse_literal(text: &str) -> Option<Py> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            let mut names = Vec::new();
            let mut rest = inner.trim();
            while !rest.is_empty() {
                let (value, after) = parse_string(rest)?;
                names.push(value);
                rest = after.trim_start();
                rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
            }
            names.sort();
            return Some(Py::Names(names));
        }
        if let Ok(n) = text.replace('_', "").parse() {
            return Some(Py::Int(n));
        }
        match parse_string(text)? {
            (value, "") => Some(Py::Str(value)),
            _ => None,
        }
    }

    /// A quoted string at the start of `text` (escapes `\xNN`, `\n`, `\\`, `\"`, `\'`), and what follows it.
    fn parse_string(text: &str) -> Option<(String, &str)> {
        let quote = text.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let mut out = String::new();
        let mut chars = text[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'x' => {
                        let hex: String = [chars.next()?.1, chars.next()?.1].iter().collect();
                        out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                    }
                    'n' => out.push('\n'),
                    other @ ('\\' | '"' | '\'') => out.push(other),
                    _ => return None,
                },
                c if c == quote => return Some((out, &text[1 + i + 1..])),
                c => out.push(c),
            }
        }
        None
    }

    #[test]
    fn the_runner_and_the_rust_side_agree_on_every_name() {
        let runner = runner_side(super::super::RUNNER_SOURCE);
        let rust = rust_side();
        let only_in_runner: Vec<&String> = runner.keys().filter(|k| !rust.contains_key(k.as_str())).collect();
        let only_in_rust: Vec<&&str> = rust.keys().filter(|k| !runner.contains_key(**k)).collect();
        assert!(
            only_in_runner.is_empty(),
            "the runner's protocol block has names Rust does not define: {only_in_runner:?}"
        );
        assert!(only_in_rust.is_empty(), "the runner's protocol block lacks: {only_in_rust:?}");
        for (name, value) in &rust {
            assert_eq!(&runner[*name], value, "{name} differs between pod_runner.py and pyexec_core::pod::protocol");
        }
    }

    #[test]
    fn the_runner_uses_every_name_of_its_block() {
        let source = super::super::RUNNER_SOURCE;
        let body = &source[source.find(END).unwrap()..];
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        for name in runner_side(source).keys() {
            let used = body.match_indices(name.as_str()).any(|(at, _)| {
                !is_word(body[..at].chars().next_back()) && !is_word(body[at + name.len()..].chars().next())
            });
            assert!(used, "pod_runner.py defines {name} but never uses it");
        }
    }

    #[test]
    fn the_literal_parser_reads_what_the_block_holds() {
        assert_eq!(parse_literal(r#""\x1fpyexec""#), Some(s("\u{1f}pyexec")));
        assert_eq!(parse_literal("'it''"), None);
        assert_eq!(parse_literal(r#""go\n""#), Some(s("go\n")));
        assert_eq!(parse_literal("1_048_576"), Some(Py::Int(1 << 20)));
        assert_eq!(parse_literal(r#"("b", 'a',)"#), Some(Py::Names(vec!["a".into(), "b".into()])));
        assert_eq!(parse_literal("os.environ"), None);
    }

    #[test]
    fn frames_are_marker_nonce_kind_base64() {
        assert_eq!(encode_frame("n1", 3, FRAME_STDOUT, b"hi"), "\u{1f}pyexec n1 o 3 aGk=\n");
        assert_eq!(encode_unnumbered_frame("n1", FRAME_STDOUT, b"hi"), "\u{1f}pyexec n1 o aGk=\n");
        let run = serde_json::to_value(RunConfig { timeout_seconds: 5, ..RunConfig::default() }).unwrap();
        assert_eq!(run["entrypoint"], serde_json::Value::Null, "every field is written, even when empty");
        let mut unknown = run.clone();
        unknown["timeout"] = 5.into();
        assert!(serde_json::from_value::<RunConfig>(run).is_ok());
        assert!(serde_json::from_value::<RunConfig>(unknown).is_err(), "unknown fields are refused");
    }
}
