// A Server-Sent Events reader over fetch. EventSource cannot send an Authorization header, so the console reads
// `/api/v1/executions/{id}/events` with fetch and parses the stream itself, following the format of the HTML
// standard: events end at a blank line; `event:` names one, `data:` lines (several are joined with "\n") carry
// it; lines starting with `:` are comments (keep-alives); one space after the colon is not part of the value.

export interface ServerSentEvent {
  event: string;
  data: string;
}

/** Incremental parser: feed it text as it arrives, it returns the events completed so far. */
export class SseParser {
  private buffer = '';
  private eventType = '';
  private data: string[] = [];
  private sawData = false;

  push(chunk: string): ServerSentEvent[] {
    this.buffer += chunk;
    const events: ServerSentEvent[] = [];
    // A line ends at \r\n, \n or \r. A \r at the very end may be the first half of \r\n: wait for more.
    const lineEnd = /\r\n|\n|\r(?!$)/g;
    let start = 0;
    let match: RegExpExecArray | null;
    while ((match = lineEnd.exec(this.buffer)) !== null) {
      const line = this.buffer.slice(start, match.index);
      start = match.index + match[0].length;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** The stream ended: an event not followed by a blank line is dropped, as the standard says. */
  end(): void {
    this.buffer = '';
    this.reset();
  }

  private line(line: string): ServerSentEvent | null {
    if (line === '') {
      const event = this.sawData ? { event: this.eventType || 'message', data: this.data.join('\n') } : null;
      this.reset();
      return event;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') {
      this.eventType = value;
    } else if (name === 'data') {
      this.data.push(value);
      this.sawData = true;
    }
    // `id` and `retry` matter for reconnecting EventSources; the console reconnects by reading the execution.
    return null;
  }

  private reset(): void {
    this.eventType = '';
    this.data = [];
    this.sawData = false;
  }
}

/** Yields the events of a streamed response body as they arrive. */
export async function* readServerSentEvents(body: ReadableStream<Uint8Array<ArrayBuffer>>): AsyncGenerator<ServerSentEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.push(value);
    }
    parser.end();
  } finally {
    reader.releaseLock();
  }
}
