package client

import (
	"encoding/base64"
	"encoding/json"
	"strings"
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

// IsTerminal reports whether the status can no longer change: every status but pending and running (a status
// unknown to this client, such as the "timeout" of a session call, counts as terminal).
func (s ExecutionStatus) IsTerminal() bool {
	return s != "" && s != StatusPending && s != StatusRunning
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
	// Outputs: display items (figures, rich reprs) in the order shown, from eval runs and session calls. Additive.
	Outputs []Output `json:"outputs,omitempty"`
	// Files: the files the run created or changed under /work (fetch them with DownloadFile). Additive.
	Files []FileInfo `json:"files,omitempty"`
	// FilesTruncated: some files were left out of Files (over the server's limits). Additive.
	FilesTruncated bool `json:"files_truncated,omitempty"`
	// SessionID: the session whose call this was. Additive.
	SessionID string `json:"session_id,omitempty"`
	// SessionRestarted: the session had to start over during this call (earlier state is lost). Additive.
	SessionRestarted bool `json:"session_restarted,omitempty"`
	// InstallMs: milliseconds spent installing the dependencies before the program started (DurationMs does not
	// count them); 0 when nothing was installed for this execution. Additive.
	InstallMs int64 `json:"install_ms,omitempty"`
}

// Images returns the decoded image/png items of Outputs, in the order shown. Additive.
func (r *ExecutionResult) Images() ([][]byte, error) {
	var images [][]byte
	for _, o := range r.Outputs {
		if o.Type != "image/png" {
			continue
		}
		data, err := o.Bytes()
		if err != nil {
			return nil, err
		}
		images = append(images, data)
	}
	return images, nil
}

// Output is one display item of a run: Data is base64 for binary types (image/png) and text for text types
// (text/html, text/plain, image/svg+xml). Additive.
type Output struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

// IsText reports whether Data is text rather than base64.
func (o Output) IsText() bool {
	return strings.HasPrefix(o.Type, "text/") || strings.HasSuffix(o.Type, "+xml") ||
		o.Type == "application/json" || o.Type == "application/javascript"
}

// IsImage reports whether the item is an image (image/png, image/svg+xml, ...).
func (o Output) IsImage() bool {
	return strings.HasPrefix(o.Type, "image/")
}

// Bytes returns the item's content: Data base64-decoded for binary types, as is for text types.
func (o Output) Bytes() ([]byte, error) {
	if o.IsText() {
		return []byte(o.Data), nil
	}
	return base64.StdEncoding.DecodeString(o.Data)
}

// FileInfo is a file under /work of an execution or a session: Path relative to /work, Size in bytes and the
// hex SHA-256 of its content. Additive.
type FileInfo struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// FileList is the answer of a files listing; Truncated tells that some files were left out. Additive.
type FileList struct {
	Files     []FileInfo `json:"files"`
	Truncated bool       `json:"truncated,omitempty"`
}

// SessionState is the state of a session.
type SessionState string

// The session states.
const (
	// SessionIdle: ready for a call.
	SessionIdle SessionState = "idle"
	// SessionBusy: a call is running.
	SessionBusy SessionState = "busy"
	// SessionEnded: only in the answer to DeleteSession.
	SessionEnded SessionState = "ended"
)

// Session is a session as the server describes it: one interpreter that keeps its state between calls. ExpiresAt
// is when it ends unless a call comes first. Additive.
type Session struct {
	SessionID          string       `json:"session_id"`
	State              SessionState `json:"state"`
	PythonVersion      string       `json:"python_version,omitempty"`
	CreatedAt          *time.Time   `json:"created_at,omitempty"`
	LastUsedAt         *time.Time   `json:"last_used_at,omitempty"`
	ExpiresAt          *time.Time   `json:"expires_at,omitempty"`
	Calls              int          `json:"calls"`
	Restarts           int          `json:"restarts"`
	MemoryMB           int          `json:"memory_mb,omitempty"`
	DiskMB             int          `json:"disk_mb,omitempty"`
	NetworkDisabled    bool         `json:"network_disabled"`
	IdleTimeoutSeconds int          `json:"idle_timeout_seconds,omitempty"`
}

// CreateSessionRequest is the body of CreateSession; every field is optional. Additive.
type CreateSessionRequest struct {
	// PythonVersion is "3.10" to "3.13".
	PythonVersion string `json:"python_version,omitempty"`
	// RequirementsTxt is installed once, when the session starts (imports of later calls are not detected).
	RequirementsTxt string `json:"requirements_txt,omitempty"`
	// EnvVars are KEY=value entries added to the environment.
	EnvVars []string `json:"env_vars,omitempty"`
	// Config holds the session's limits.
	Config *SessionConfig `json:"config,omitempty"`
}

// SessionConfig holds a session's limits; zero values take the server's defaults. Additive.
type SessionConfig struct {
	MemoryMB  int
	DiskMB    int
	CPUShares int
	// NetworkDisabled asks for no network (the server's default anyway).
	NetworkDisabled bool
	// AllowNetwork asks for egress to the public internet (sends network_disabled: false).
	AllowNetwork bool
	// IdleTimeoutSeconds ends the session after that long without a call.
	IdleTimeoutSeconds int
}

// MarshalJSON sends the set fields, and network_disabled only when it was asked for, either way.
func (c SessionConfig) MarshalJSON() ([]byte, error) {
	type plain struct {
		MemoryMB           int   `json:"memory_mb,omitempty"`
		DiskMB             int   `json:"disk_mb,omitempty"`
		CPUShares          int   `json:"cpu_shares,omitempty"`
		NetworkDisabled    *bool `json:"network_disabled,omitempty"`
		IdleTimeoutSeconds int   `json:"idle_timeout_seconds,omitempty"`
	}
	out := plain{MemoryMB: c.MemoryMB, DiskMB: c.DiskMB, CPUShares: c.CPUShares, IdleTimeoutSeconds: c.IdleTimeoutSeconds}
	if c.NetworkDisabled || c.AllowNetwork {
		disabled := !c.AllowNetwork
		out.NetworkDisabled = &disabled
	}
	return json.Marshal(out)
}

// SessionEvalRequest is the body of SessionEval. Additive.
type SessionEvalRequest struct {
	// Code runs as the session's next cell.
	Code string
	// Files are written into /work before the code runs.
	Files []CodeFile
	// Stdin is fed to standard input.
	Stdin string
	// EvalLastExpr: nil or true reports the last expression's repr in Result (the server's default); use
	// Bool(false) to turn it off.
	EvalLastExpr *bool
	// TimeoutSeconds limits this call (the server's default is 30).
	TimeoutSeconds int
}

// MarshalJSON sends the call's body, with the timeout under config.
func (r SessionEvalRequest) MarshalJSON() ([]byte, error) {
	type config struct {
		TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	}
	type plain struct {
		Code         string     `json:"code"`
		Files        []CodeFile `json:"files,omitempty"`
		Stdin        string     `json:"stdin,omitempty"`
		EvalLastExpr *bool      `json:"eval_last_expr,omitempty"`
		Config       *config    `json:"config,omitempty"`
	}
	out := plain{Code: r.Code, Files: r.Files, Stdin: r.Stdin, EvalLastExpr: r.EvalLastExpr}
	if r.TimeoutSeconds > 0 {
		out.Config = &config{TimeoutSeconds: r.TimeoutSeconds}
	}
	return json.Marshal(out)
}

// Bool returns a pointer to b (for SessionEvalRequest.EvalLastExpr). Additive.
func Bool(b bool) *bool { return &b }

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
