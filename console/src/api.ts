// Every call the console makes to the server goes through here: the bearer key is added, and any answer that is
// not 2xx becomes an ApiError carrying the server's `{"error": "..."}` message (docs/api.md: every error has one).

import { forgetApiKey, storedApiKey } from './auth';

export class ApiError extends Error {
  readonly status: number;
  /** Seconds to wait, from the Retry-After header of a 429 (or 503). */
  readonly retryAfter: string | null;

  constructor(status: number, message: string, retryAfter: string | null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The URL of an API path such as `/api/v1/executions`: the API is on the server that serves the console. */
export function apiUrl(path: string): string {
  return path;
}

/** Encodes a file path for a URL, keeping its slashes (`data/out.csv` → `data/out.csv`, `a b` → `a%20b`). */
export function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

type UnauthorizedHandler = (message: string) => void;
let onUnauthorized: UnauthorizedHandler = () => {};

/** Called when the server refuses the stored key (it was revoked, or the server restarted with other keys). */
export function setUnauthorizedHandler(handler: UnauthorizedHandler): void {
  onUnauthorized = handler;
}

export interface RequestOptions {
  /** Sent as JSON, with `Content-Type: application/json`. */
  json?: unknown;
  /** Sent as it is (an uploaded file's bytes). */
  body?: BodyInit;
  signal?: AbortSignal;
  accept?: string;
  /** Use this key instead of the stored one (signing in checks a key before storing it). */
  key?: string | null;
  /** A 401 is the caller's to handle: it does not sign the user out. */
  handle401?: boolean;
}

/** Sends a request and returns the response when it is 2xx; throws ApiError otherwise. */
export async function request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers = new Headers();
  const key = options.key !== undefined ? options.key : storedApiKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  if (options.accept) headers.set('Accept', options.accept);
  let body = options.body;
  if (options.json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(options.json);
  }
  const response = await fetch(apiUrl(path), {
    method,
    headers,
    body: body ?? null,
    signal: options.signal ?? null,
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
  });
  if (response.ok) return response;
  const error = await errorOf(response);
  if (response.status === 401 && !options.handle401) {
    forgetApiKey();
    onUnauthorized(error.message);
  }
  throw error;
}

/** Sends a request and parses its JSON answer. */
export async function requestJson<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await request(method, path, { accept: 'application/json', ...options });
  return (await response.json()) as T;
}

export function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return requestJson<T>('GET', path, signal ? { signal } : {});
}

async function errorOf(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const text = await response.text();
    try {
      const parsed = JSON.parse(text) as { error?: unknown };
      if (typeof parsed.error === 'string' && parsed.error) message = parsed.error;
    } catch {
      // Not JSON (a proxy's error page, the router's plain-text 404): show its first line.
      const line = text.trim().split('\n')[0];
      if (line) message = `${response.status}: ${line.slice(0, 200)}`;
    }
  } catch {
    /* no body */
  }
  return new ApiError(response.status, message, response.headers.get('Retry-After'));
}

/** A sentence for any error the console shows: the server's message, what to do about a 429, a network failure. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429 && error.retryAfter) {
      return `${error.message} (try again in ${error.retryAfter} s: Retry-After)`;
    }
    return error.message;
  }
  if (error instanceof DOMException && error.name === 'AbortError') return 'Cancelled.';
  if (error instanceof TypeError) return `Could not reach the server (${error.message}).`;
  return error instanceof Error ? error.message : String(error);
}
