// The shapes of the API's answers that the console reads (docs/api.md, docs/sessions.md, docs/tenants.md).
// Every key a server may leave out is optional: a result omits empty values.

export type ExecutionStatus = 'pending' | 'running' | 'completed' | 'failed' | 'killed';

export const EXECUTION_STATUSES: readonly ExecutionStatus[] = ['pending', 'running', 'completed', 'failed', 'killed'];

/** Whether an execution may still change (and so can be killed, and is worth following). */
export function isActive(status: string): boolean {
  return status === 'pending' || status === 'running';
}

export interface DisplayOutput {
  type: 'image/png' | 'image/svg+xml' | 'text/html' | 'text/plain' | string;
  data: string;
}

export interface FileEntry {
  path: string;
  size: number;
  sha256?: string;
}

export interface SkippedPackage {
  name: string;
  reason: string;
}

export interface ExecutionResult {
  execution_id: string;
  status: ExecutionStatus;
  tenant?: string;
  stdout?: string;
  stderr?: string;
  exit_code: number;
  error?: string;
  error_type?: string;
  error_line?: number;
  error_message?: string;
  started_at?: string;
  finished_at?: string;
  duration_ms?: number;
  result?: string;
  stdout_truncated?: boolean;
  stderr_truncated?: boolean;
  oom_killed?: boolean;
  installed_packages?: string[];
  skipped_packages?: SkippedPackage[];
  pre_commands_output?: string;
  outputs?: DisplayOutput[];
  files?: FileEntry[];
  files_truncated?: boolean;
  session_id?: string;
  session_restarted?: boolean;
  memory_used_bytes?: number;
}

export interface ExecutionList {
  executions: ExecutionResult[];
  next_cursor?: string;
}

export interface Session {
  session_id: string;
  state: 'idle' | 'busy' | 'ended' | string;
  tenant?: string;
  python_version?: string;
  created_at?: string;
  last_used_at?: string;
  expires_at?: string;
  calls?: number;
  restarts?: number;
  memory_mb?: number;
  disk_mb?: number;
  network_disabled?: boolean;
  idle_timeout_seconds?: number;
  memory_used_bytes?: number;
  installed_packages?: string[];
}

export interface SessionList {
  sessions: Session[];
}

export interface FileList {
  files: FileEntry[];
  truncated?: boolean;
}

/** `GET /api/v1/whoami`: `tenant` is null on a server without API keys (everyone is its one admin). */
export interface Identity {
  tenant: string | null;
  admin: boolean;
  quota?: Record<string, number>;
}

export interface Health {
  status: string;
  version?: string;
  backend?: string;
  python_versions?: string[];
  default_python_version?: string | null;
  isolation?: Record<string, unknown>;
  dependencies?: Record<string, unknown>;
  queue?: { pending: number; running: number; max_concurrent: number; max_queue: number };
  warm_pools?: unknown;
  [key: string]: unknown;
}
