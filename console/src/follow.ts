// Follows an execution to its end: live output from the events stream, then the whole result. When the stream
// breaks before the result (a proxy closing idle connections, the server restarting), the execution is read
// again until it is finished, so the caller always gets the final result.

import { getJson, request } from './api';
import { readServerSentEvents } from './sse';
import { isActive, type ExecutionResult } from './types';

export interface FollowHandlers {
  onStatus?(status: string): void;
  onOutput?(stream: 'stdout' | 'stderr', data: string): void;
}

export async function followExecution(
  id: string,
  handlers: FollowHandlers,
  signal: AbortSignal,
): Promise<ExecutionResult> {
  const path = `/api/v1/executions/${encodeURIComponent(id)}`;
  try {
    const response = await request('GET', `${path}/events`, { accept: 'text/event-stream', signal });
    if (response.body) {
      for await (const event of readServerSentEvents(response.body)) {
        let payload: unknown;
        try {
          payload = JSON.parse(event.data);
        } catch {
          continue;
        }
        if (event.event === 'status') {
          handlers.onStatus?.((payload as { status: string }).status);
        } else if (event.event === 'output') {
          const output = payload as { stream: string; data: string };
          handlers.onOutput?.(output.stream === 'stderr' ? 'stderr' : 'stdout', output.data);
        } else if (event.event === 'result') {
          return payload as ExecutionResult;
        }
      }
    }
  } catch (error) {
    // A refused request (404, 401) is the caller's to report; a broken stream falls back to reading.
    if (signal.aborted || !(error instanceof TypeError)) throw error;
  }
  return waitUntilFinished(path, signal);
}

async function waitUntilFinished(path: string, signal: AbortSignal): Promise<ExecutionResult> {
  for (;;) {
    const result = await getJson<ExecutionResult>(path, signal);
    if (!isActive(result.status)) return result;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, 1000);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }
}
