// One generation on a replica as the gateway sees it: the POST /generate request, its NDJSON
// event stream, and one way to stop it early that always lets the reader finish.
//
// Why not abort the fetch: with Node's fetch (undici 6, Node 20), aborting the request's
// AbortSignal after the replica's response has fully arrived but before its body has been read
// to the end leaves the body reader waiting forever: undici drops its 'terminated' listener
// when the response completes, and its pull loop then sees the abort and returns without
// closing or erroring the stream. A stop string hit while the replica's last events are still
// queued did exactly that (about 1 request in 15 with n=2 hung, the replica already idle).
// Cancelling the body stream instead closes it for the reader at once and still tears the
// connection down, so the replica sees the client go and stops generating. The AbortSignal is
// only used before the response headers arrive (a request still queued on the replica).
import type { GenerateEvent } from '../replica/runtime.js';

export interface UpstreamReplica {
  id: string;
  url: string;
  /** The replica's bearer token (its launcher's), if it requires one. */
  token?: string | undefined;
}

/** Headers of a call to `replica`. */
export function replicaHeaders(replica: UpstreamReplica): Record<string, string> {
  return replica.token ? { authorization: `Bearer ${replica.token}` } : {};
}

export class Upstream {
  private response: Response | null = null;
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  private stopped = false;
  /** Stops the request while the replica has not answered yet (the fetch then rejects). */
  private readonly opening = new AbortController();

  constructor(readonly replica: UpstreamReplica) {}

  /** Sends the generate request; resolves when the replica answers (status and headers). */
  async open(body: unknown): Promise<this> {
    if (this.stopped) throw new Error('stopped before it was sent');
    this.response = await fetch(`${this.replica.url}/generate`, {
      method: 'POST',
      headers: replicaHeaders(this.replica),
      signal: this.opening.signal,
      body: JSON.stringify(body),
    });
    // a stop that came while the headers were on their way
    if (this.stopped) this.cancelBody();
    return this;
  }

  private get res(): Response {
    if (!this.response) throw new Error('generate request not sent');
    return this.response;
  }

  get ok(): boolean {
    return this.res.ok;
  }

  get status(): number {
    return this.res.status;
  }

  /** The replica's error body of a response that is not ok. */
  async error(): Promise<{ code?: string; message?: string }> {
    const body = (await this.res.json().catch(() => ({}))) as {
      error?: { code?: string; message?: string };
    };
    return body.error ?? {};
  }

  /**
   * Reads events until the replica ends the stream or `stop()` is called (then it resolves,
   * whatever was still in flight). Rejects when the connection fails before either.
   */
  async read(on: (e: GenerateEvent) => void): Promise<void> {
    const body = this.res.body;
    if (!body || this.stopped) return;
    const reader = body.getReader();
    this.reader = reader;
    const dec = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.stopped) return;
        buf += dec.decode(value, { stream: true });
        let nl = buf.indexOf('\n');
        while (nl >= 0 && !this.stopped) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line) on(JSON.parse(line) as GenerateEvent);
          nl = buf.indexOf('\n');
        }
      }
    } catch (err) {
      if (!this.stopped) throw err;
    }
  }

  /**
   * Stops the generation in whatever phase it is: before the replica answered (the fetch is
   * aborted), or while or before its events are read (the body is cancelled, which closes the
   * connection; the replica stops when it sees that). Idempotent.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.response) this.cancelBody();
    else this.opening.abort();
  }

  private cancelBody(): void {
    const body = this.response?.body;
    const p = this.reader ? this.reader.cancel() : body && !body.locked ? body.cancel() : null;
    void p?.catch(() => {});
  }
}
