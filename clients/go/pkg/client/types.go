package client

import (
	"encoding/json"
	"time"
)

// ExecutionStatus is the lifecycle state of an execution.
type ExecutionStatus string

// The statuses: pending -> running -> completed | failed; pending | running -> killed.
const (
	// StatusPending: accepted, waiting for a slot.
	StatusPending ExecutionStatus = "pending"
	// StatusRunning: running.
	StatusRunning ExecutionStatus = "running"
	// StatusCompleted: the program ran to an exit code (check ExitCode).
	StatusCompleted ExecutionStatus = "completed"
	// StatusFailed: the execution could not complete (timeout, internal error); Error says why.
	StatusFailed ExecutionStatus = "failed"
	// StatusKilled: stopped by a kill request.
	StatusKilled ExecutionStatus = "killed"
)

// IsTerminal reports whether the status can no longer change.
func (s ExecutionStatus) IsTerminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusKilled
}

// Metadata is the metadata part of /exec/sync and /exec/async.
type Metadata struct {
	// Entrypoint is the Python file to run, relative to the project root.
	Entrypoint string `json:"entrypoint"`
	// DockerImage picks the interpreter by image (python:3.X[-variant]).
	DockerImage string `json:"docker_image,omitempty"`
	// PythonVersion picks the interpreter by version ("3.12"). Additive.
	PythonVersion string `json:"python_version,omitempty"`
	// RequirementsTxt is a requirements.txt to install first.
	RequirementsTxt string `json:"requirements_txt,omitempty"`
	// PreCommands are shell commands run before the program.
	PreCommands []string `json:"pre_commands,omitempty"`
	// Stdin is fed to the program's standard input.
	Stdin string `json:"stdin,omitempty"`
	// Config holds the limits.
	Config *ExecutionConfig `json:"config,omitempty"`
	// EnvVars are KEY=value entries added to the environment.
	EnvVars []string `json:"env_vars,omitempty"`
	// ScriptArgs become sys.argv[1:].
	ScriptArgs []string `json:"script_args,omitempty"`
	// EvalLastExpr is not sent with exec requests (use SimpleExecRequest).
	EvalLastExpr bool `json:"-"`
}

// ExecutionConfig holds limits; zero values take the server's defaults.
type ExecutionConfig struct {
	// TimeoutSeconds is the wall-clock limit.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// NetworkDisabled asks for no network (the server's default anyway).
	NetworkDisabled bool `json:"network_disabled,omitempty"`
	// AllowNetwork asks for egress to the public internet (sends network_disabled: false). Additive: the original
	// type could not express it because of omitempty.
	AllowNetwork bool `json:"-"`
	// MemoryMB is the memory limit.
	MemoryMB int `json:"memory_mb,omitempty"`
	// DiskMB is the size of the writable workspace.
	DiskMB int `json:"disk_mb,omitempty"`
	// CPUShares is the CPU weight (1024 = one CPU).
	CPUShares int `json:"cpu_shares,omitempty"`
}

// MarshalJSON sends network_disabled only when it was asked for, either way.
func (c ExecutionConfig) MarshalJSON() ([]byte, error) {
	type plain struct {
		TimeoutSeconds  int   `json:"timeout_seconds,omitempty"`
		NetworkDisabled *bool `json:"network_disabled,omitempty"`
		MemoryMB        int   `json:"memory_mb,omitempty"`
		DiskMB          int   `json:"disk_mb,omitempty"`
		CPUShares       int   `json:"cpu_shares,omitempty"`
	}
	out := plain{TimeoutSeconds: c.TimeoutSeconds, MemoryMB: c.MemoryMB, DiskMB: c.DiskMB, CPUShares: c.CPUShares}
	if c.NetworkDisabled || c.AllowNetwork {
		disabled := !c.AllowNetwork
		out.NetworkDisabled = &disabled
	}
	return json.Marshal(out)
}

// ExecutionResult is the state and outcome of an execution.
type ExecutionResult struct {
	ExecutionID string          `json:"execution_id"`
	Status      ExecutionStatus `json:"status"`
	Stdout      string          `json:"stdout,omitempty"`
	Stderr      string          `json:"stderr,omitempty"`
	// ExitCode: the program's code; 124 on timeout, 137 when killed or out of memory.
	ExitCode int `json:"exit_code"`
	// Error: why the execution failed.
	Error string `json:"error,omitempty"`
	// ErrorType: class name of the uncaught exception.
	ErrorType string `json:"error_type,omitempty"`
	// ErrorLine: line of the exception in the user's file.
	ErrorLine  int        `json:"error_line,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	DurationMs int64      `json:"duration_ms,omitempty"`
	// Result: repr() of the trailing expression in eval mode.
	Result *string `json:"result,omitempty"`
	// ErrorMessage: the exception's message. Additive.
	ErrorMessage string `json:"error_message,omitempty"`
	// StdoutTruncated: stdout went over the server's cap. Additive.
	StdoutTruncated bool `json:"stdout_truncated,omitempty"`
	// StderrTruncated: stderr went over the server's cap. Additive.
	StderrTruncated bool `json:"stderr_truncated,omitempty"`
	// OOMKilled: the memory limit was hit. Additive.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// InstalledPackages: name==version of the environment the program ran in. Additive.
	InstalledPackages []string `json:"installed_packages,omitempty"`
	// PreCommandsOutput: what the pre_commands printed, kept apart from Stdout. Additive.
	PreCommandsOutput string `json:"pre_commands_output,omitempty"`
}

// AsyncResponse is the answer of /exec/async.
type AsyncResponse struct {
	ExecutionID string `json:"execution_id"`
}

// KillResponse is the answer of DELETE /executions/{id}.
type KillResponse struct {
	Status string `json:"status"`
}

// SimpleExecRequest is the JSON body of /eval.
type SimpleExecRequest struct {
	// Code becomes main.py; ignored when Files is set.
	Code string `json:"code,omitempty"`
	// Files are several files; the first is the default entrypoint.
	Files []CodeFile `json:"files,omitempty"`
	// Entrypoint is the file to run.
	Entrypoint string `json:"entrypoint,omitempty"`
	// Stdin is fed to standard input.
	Stdin string `json:"stdin,omitempty"`
	// Config holds the limits.
	Config *ExecutionConfig `json:"config,omitempty"`
	// PythonVersion is "3.10" to "3.13".
	PythonVersion string `json:"python_version,omitempty"`
	// EvalLastExpr reports the value of a trailing expression in Result.
	EvalLastExpr bool `json:"eval_last_expr,omitempty"`
	// RequirementsTxt adds requirements ("-" turns import detection off). Additive.
	RequirementsTxt string `json:"requirements_txt,omitempty"`
}

// CodeFile is one file of a SimpleExecRequest.
type CodeFile struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// ExecutionPage is one page of ListExecutions, newest first. Additive.
type ExecutionPage struct {
	Executions []ExecutionResult `json:"executions"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// Event is one event of an execution's live stream: Kind is "output" (Stream, Data), "status" (Status) or
// "result" (Result, always last). Additive.
type Event struct {
	Kind   string
	Stream string
	Data   string
	Status ExecutionStatus
	Result *ExecutionResult
}
