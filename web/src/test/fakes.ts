/** Test doubles: a scripted EventSource and a routing fetch. */

import type { EventSourceLike } from "../streamController";

export class FakeEventSource implements EventSourceLike {
  static instances: FakeEventSource[] = [];
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;

  readonly url: string;
  readyState = FakeEventSource.CONNECTING;
  onopen: ((this: EventSourceLike, ev: Event) => unknown) | null = null;
  onerror: ((this: EventSourceLike, ev: Event) => unknown) | null = null;
  closed = false;
  private readonly listeners = new Map<string, ((ev: MessageEvent) => void)[]>();

  constructor(url: string) {
    this.url = url;
    FakeEventSource.instances.push(this);
  }

  static reset(): void {
    FakeEventSource.instances = [];
  }

  static last(): FakeEventSource {
    const source = FakeEventSource.instances.at(-1);
    if (!source) throw new Error("no EventSource was opened");
    return source;
  }

  get params(): URLSearchParams {
    return new URL(this.url, "http://localhost").searchParams;
  }

  addEventListener(type: string, listener: (ev: MessageEvent) => void): void {
    const list = this.listeners.get(type) ?? [];
    list.push(listener);
    this.listeners.set(type, list);
  }

  close(): void {
    this.closed = true;
    this.readyState = FakeEventSource.CLOSED;
  }

  // --- scripting ---

  open(): void {
    this.readyState = FakeEventSource.OPEN;
    this.onopen?.call(this, new Event("open"));
  }

  /** Delivers one named event, as the browser would (ignored once closed). */
  emit(event: string, data: Record<string, unknown>, raw?: string): void {
    if (this.closed) return;
    const message = new MessageEvent(event, {
      data: raw ?? JSON.stringify(data),
      lastEventId: data.seq !== undefined ? String(data.seq) : "",
    });
    for (const listener of this.listeners.get(event) ?? []) listener(message);
  }

  /** A network drop: the browser would retry by itself (readyState CONNECTING). */
  drop(): void {
    if (this.closed) return;
    this.readyState = FakeEventSource.CONNECTING;
    this.onerror?.call(this, new Event("error"));
  }

  /** A failed open (non-200, 204, wrong type): the browser gives up (readyState CLOSED). */
  refuse(): void {
    if (this.closed) return;
    this.readyState = FakeEventSource.CLOSED;
    this.onerror?.call(this, new Event("error"));
  }
}

export interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
  signal: AbortSignal | null | undefined;
}

type Handler = (call: Call) => Response | Promise<Response>;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

export function apiError(status: number, code: string, message: string): Response {
  return json({ error: { code, message } }, status);
}

/** A fetch whose answers are given per "METHOD path-prefix"; every call is recorded. */
export class FakeFetch {
  calls: Call[] = [];
  private routes: [string, string, Handler][] = [];

  on(method: string, pathPrefix: string, handler: Handler): this {
    this.routes.unshift([method, pathPrefix, handler]);
    return this;
  }

  fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const method = (init.method ?? "GET").toUpperCase();
    const headers = Object.fromEntries(Object.entries((init.headers ?? {}) as Record<string, string>));
    const call: Call = {
      method,
      url: input,
      headers,
      body: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
      signal: init.signal,
    };
    this.calls.push(call);
    const path = new URL(input, "http://localhost").pathname;
    for (const [m, prefix, handler] of this.routes) {
      if (m === method && path.startsWith(prefix)) {
        if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
        return handler(call);
      }
    }
    throw new Error(`unexpected request ${method} ${input}`);
  };

  callsTo(method: string, pathPrefix: string): Call[] {
    return this.calls.filter(
      (c) => c.method === method && new URL(c.url, "http://localhost").pathname.startsWith(pathPrefix),
    );
  }
}

/** A promise plus its resolver, to hold a fetch open until the test lets it go. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A fetch answer that waits for its abort signal (and rejects then), like a real request. */
export function hangUntilAborted(call: Call): Promise<Response> {
  return new Promise((_, reject) => {
    call.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
  });
}

/** Builds event data with the envelope fields. */
export class Script {
  seq = 0;
  constructor(readonly streamId = "str_1") {}

  next(fields: Record<string, unknown>): Record<string, unknown> {
    this.seq += 1;
    return { stream_id: this.streamId, seq: this.seq, timestamp: `2025-01-01T00:00:${String(this.seq % 60).padStart(2, "0")}.000Z`, ...fields };
  }
}
