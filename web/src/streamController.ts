/**
 * One live view of one Facilitair stream, outside React: creates the task, gets tickets, reads
 * the events with EventSource, resumes after drops, cancels, and cleans up.
 *
 * Why reconnects are ours, not the browser's: EventSource reconnects by itself with the URL it
 * was opened with, and that URL's ticket is only valid for a short time. So on any error we
 * close the EventSource, fetch a fresh ticket and open a new one with `?last_event_id=` set to
 * the last event applied. Events at or below that id are ignored (see streamState), so a resume
 * never repeats text even when a server or proxy sends some events again.
 */

import { Api, ApiError, type FetchLike, isAbort } from "./api";
import {
  EVENT_NAMES,
  type EventDataMap,
  type EventName,
  type TaskCreated,
  type TaskRequest,
  TERMINAL_EVENTS,
} from "./protocol";
import { applyEvent, initialState, isFinished, type StreamState } from "./streamState";

/** What an EventSource class must offer (the browser's, or a scripted one in tests). */
export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((this: EventSourceLike, ev: Event) => unknown) | null;
  onerror: ((this: EventSourceLike, ev: Event) => unknown) | null;
  addEventListener(type: string, listener: (ev: MessageEvent) => void): void;
  close(): void;
}

export type EventSourceFactory = new (url: string) => EventSourceLike;

export type Connection = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StreamError {
  /** A whole sentence for people. */
  message: string;
  /** "unauthorized", "network", "connection_lost", "stream_expired", or the server's or task's code. */
  code: string;
  /** HTTP status for API errors; 0 when the server could not be reached. */
  status: number | null;
  source: "api" | "task" | "connection";
  retryable: boolean;
}

export interface ReconnectPolicy {
  /** First delay; doubles per consecutive failure. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Consecutive failures without a new event before giving up (resume() tries again). */
  maxAttempts: number;
}

export interface ControllerOptions {
  apiKey: string;
  baseUrl?: string;
  fetch?: FetchLike;
  EventSource?: EventSourceFactory;
  reconnect?: Partial<ReconnectPolicy>;
  /** Token events are rendered at most this often (ms); other events at once. 0: every event. */
  renderIntervalMs?: number;
  /** After a cancel is accepted, how long to wait for `task_cancelled` before assuming it. */
  cancelGraceMs?: number;
}

export interface Snapshot {
  state: StreamState;
  error: StreamError | null;
  connection: Connection;
  /** Reconnects made so far for this stream. */
  reconnects: number;
  cancelling: boolean;
}

const DEFAULT_POLICY: ReconnectPolicy = { baseDelayMs: 250, maxDelayMs: 5000, maxAttempts: 8 };

function toStreamError(error: unknown): StreamError {
  if (error instanceof ApiError) {
    return {
      message: error.message,
      code: error.code,
      status: error.status,
      source: "api",
      retryable: error.status === 0 || error.status === 429 || error.status >= 500,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { message: message || "Something went wrong.", code: "error", status: null, source: "api", retryable: false };
}

/** Errors that another try cannot fix: a bad key, an unknown or foreign stream, bad input. */
function isFatal(error: unknown): boolean {
  return error instanceof ApiError && [400, 401, 403, 404, 413, 422].includes(error.status);
}

export class StreamController {
  private api: Api;
  private readonly options: ControllerOptions;
  private readonly EventSourceImpl: EventSourceFactory | undefined;
  private readonly policy: ReconnectPolicy;
  private readonly renderIntervalMs: number;
  private readonly cancelGraceMs: number;

  private state: StreamState = initialState();
  private error: StreamError | null = null;
  private connection: Connection = "idle";
  private reconnects = 0;
  private cancelling = false;
  private snapshot: Snapshot;

  /** Bumped by every start/attach/reset/dispose: callbacks of an older generation do nothing. */
  private generation = 0;
  private source: EventSourceLike | null = null;
  private failures = 0;
  private cancelRequested = false;
  private readonly aborts = new Set<AbortController>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private renderTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(options: ControllerOptions) {
    this.options = options;
    this.api = new Api({ apiKey: options.apiKey, baseUrl: options.baseUrl, fetch: options.fetch });
    this.EventSourceImpl = options.EventSource;
    this.policy = { ...DEFAULT_POLICY, ...options.reconnect };
    this.renderIntervalMs = options.renderIntervalMs ?? 50;
    this.cancelGraceMs = options.cancelGraceMs ?? 5000;
    this.snapshot = this.makeSnapshot();
  }

  // --- subscription (useSyncExternalStore) ------------------------------------------------

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): Snapshot => this.snapshot;

  /** A new key (or base URL) applies to every later request of this controller. */
  setApiKey(apiKey: string, baseUrl?: string): void {
    this.api = new Api({ apiKey, baseUrl: baseUrl ?? this.options.baseUrl, fetch: this.options.fetch });
  }

  // --- commands ---------------------------------------------------------------------------

  /** Creates a task and follows its stream. Resolves with the created ids, or null on error. */
  async start(request: TaskRequest): Promise<TaskCreated | null> {
    const generation = this.begin(initialState(null, "starting"));
    const abort = this.newAbort();
    let created: TaskCreated;
    try {
      created = await this.api.createTask(request, abort.signal);
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return null;
      this.error = toStreamError(error);
      this.state = { ...this.state, phase: "idle" };
      this.connection = "closed";
      this.flush();
      return null;
    } finally {
      this.aborts.delete(abort);
    }
    if (generation !== this.generation) return created;
    this.state = { ...this.state, streamId: created.stream_id, taskId: created.task_id, phase: "queued" };
    this.flush();
    if (this.cancelRequested) void this.stop();
    void this.connect(generation);
    return created;
  }

  /** Follows an existing stream from its start: live if it runs, a full replay if it ended. */
  attach(streamId: string, taskId: string | null = null): void {
    const generation = this.begin({ ...initialState(streamId, "starting"), taskId });
    void this.connect(generation);
  }

  /** Tries again after the connection was given up (the `connection_lost` error). */
  resume(): void {
    const { streamId } = this.state;
    if (!streamId || isFinished(this.state.phase) || this.source) return;
    this.clearTimers();
    this.failures = 0;
    this.error = null;
    void this.connect(this.generation);
  }

  /** Asks the server to cancel the run; the stream then ends with `task_cancelled`. */
  async stop(): Promise<void> {
    const { streamId } = this.state;
    if (isFinished(this.state.phase)) return;
    if (!streamId) {
      // The task is still being created: cancel it as soon as it exists.
      if (this.state.phase === "starting") {
        this.cancelRequested = true;
        this.cancelling = true;
        this.flush();
      }
      return;
    }
    this.cancelRequested = false;
    this.cancelling = true;
    this.flush();
    const generation = this.generation;
    const abort = this.newAbort();
    try {
      await this.api.cancel(streamId, abort.signal);
      // The task_cancelled event normally follows at once; if the stream is not being read
      // (the connection is down), do not leave the page waiting for it forever.
      this.later(generation, this.cancelGraceMs, () => {
        if (!isFinished(this.state.phase)) {
          this.state = { ...this.state, phase: "cancelled", cancelReason: this.state.cancelReason ?? "cancelled" };
          this.closeSource("closed");
          this.flush();
        }
      });
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return;
      if (error instanceof ApiError && error.status === 409) return; // it had already ended
      this.cancelling = false;
      this.error = toStreamError(error);
      this.flush();
    } finally {
      this.aborts.delete(abort);
    }
  }

  /** Back to idle: closes everything and forgets the stream. */
  reset(): void {
    this.begin(initialState());
    this.connection = "idle";
    this.flush();
  }

  /** Closes the EventSource, aborts requests, stops timers. The controller may be reused. */
  dispose(): void {
    this.generation += 1;
    this.closeSource(this.connection === "idle" ? "idle" : "closed");
    for (const abort of this.aborts) abort.abort();
    this.aborts.clear();
    this.clearTimers();
    if (this.renderTimer !== null) clearTimeout(this.renderTimer);
    this.renderTimer = null;
  }

  /** Simulates a dropped connection (manual testing): the usual resume path follows. */
  dropConnection(): void {
    const source = this.source;
    if (!source) return;
    this.onError(this.generation, source, true);
  }

  // --- the connection ---------------------------------------------------------------------

  private begin(state: StreamState): number {
    this.dispose();
    this.state = state;
    this.error = null;
    this.reconnects = 0;
    this.failures = 0;
    this.cancelling = false;
    this.cancelRequested = false;
    this.connection = state.phase === "idle" ? "idle" : "connecting";
    this.flush();
    return this.generation;
  }

  private async connect(generation: number): Promise<void> {
    const streamId = this.state.streamId;
    if (!streamId || generation !== this.generation) return;
    this.connection = this.failures > 0 || this.state.lastSeq > 0 ? "reconnecting" : "connecting";
    this.flush();
    const abort = this.newAbort();
    let ticket: string;
    try {
      ticket = (await this.api.ticket(streamId, abort.signal)).ticket;
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return;
      if (isFatal(error)) return this.fail(toStreamError(error));
      return this.retry(generation, toStreamError(error));
    } finally {
      this.aborts.delete(abort);
    }
    if (generation !== this.generation) return;
    const Impl = this.EventSourceImpl ?? (globalThis.EventSource as unknown as EventSourceFactory | undefined);
    if (!Impl) {
      return this.fail({
        message: "This browser cannot read event streams (no EventSource).",
        code: "unsupported",
        status: null,
        source: "connection",
        retryable: false,
      });
    }
    const source = new Impl(this.api.eventsUrl(streamId, ticket, this.state.lastSeq));
    this.source = source;
    let opened = false;
    source.onopen = () => {
      if (generation !== this.generation || source !== this.source) return;
      opened = true;
      this.connection = "open";
      this.flush();
    };
    source.onerror = () => this.onError(generation, source, opened);
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (message: MessageEvent) =>
        this.onMessage(generation, source, name, message),
      );
    }
  }

  private onMessage(generation: number, source: EventSourceLike, name: EventName, message: MessageEvent): void {
    if (generation !== this.generation || source !== this.source) return;
    let data: EventDataMap[EventName];
    try {
      data = JSON.parse(String(message.data)) as EventDataMap[EventName];
    } catch {
      return; // a malformed event cannot be applied; the next ones still can
    }
    if (typeof data.seq !== "number" && message.lastEventId) data.seq = Number(message.lastEventId);
    const before = this.state;
    if (data.seq > before.lastSeq && name !== "heartbeat") this.failures = 0; // progress
    this.state = applyEvent(before, name, data);
    if (this.connection !== "open") this.connection = "open";
    if (name === "task_error") {
      const d = data as EventDataMap["task_error"];
      if (this.state !== before && this.state.phase === "failed") {
        this.error = {
          message: d.error,
          code: d.code,
          status: null,
          source: "task",
          retryable: Boolean(d.retryable),
        };
      }
    }
    if (TERMINAL_EVENTS.has(name) && isFinished(this.state.phase)) {
      this.cancelling = false;
      this.closeSource("closed");
      this.flush();
      return;
    }
    if (name === "token_stream") this.scheduleRender();
    else this.flush();
  }

  private onError(generation: number, source: EventSourceLike, opened: boolean): void {
    if (generation !== this.generation || source !== this.source) return;
    this.closeSource("reconnecting");
    if (isFinished(this.state.phase)) {
      this.connection = "closed";
      this.flush();
      return;
    }
    if (opened) {
      // A drop in the middle of a stream: resume at once, after the last event applied.
      this.retry(generation, null);
      return;
    }
    // The stream would not open: it may have ended (204), expired, or the server is away.
    void this.checkStatus(generation);
  }

  private async checkStatus(generation: number): Promise<void> {
    const streamId = this.state.streamId;
    if (!streamId) return;
    const abort = this.newAbort();
    try {
      const status = await this.api.status(streamId, abort.signal);
      if (generation !== this.generation) return;
      if (isFinished(status.status) && status.last_event_id <= this.state.lastSeq) {
        await this.finishFromHistory(generation, status.status, status.task_id);
        return;
      }
      this.retry(generation, null);
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return;
      if (isFatal(error)) return this.fail(toStreamError(error));
      this.retry(generation, toStreamError(error));
    } finally {
      this.aborts.delete(abort);
    }
  }

  /** The stream ended but its events cannot be read (expired): take the result from history. */
  private async finishFromHistory(generation: number, phase: "completed" | "failed" | "cancelled" | string, taskId: string): Promise<void> {
    const abort = this.newAbort();
    try {
      const detail = await this.api.task(taskId, abort.signal);
      if (generation !== this.generation) return;
      this.state = {
        ...this.state,
        taskId: detail.task_id,
        task: this.state.task ?? detail.task,
        phase: detail.status,
        finalResult: this.state.finalResult ?? detail.result,
        finishedAt: this.state.finishedAt ?? detail.finished_at,
        startedAt: this.state.startedAt ?? detail.created_at,
      };
      if (detail.error && !this.error) {
        this.error = { message: detail.error.error, code: detail.error.code, status: null, source: "task", retryable: false };
      }
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return;
      this.state = { ...this.state, phase: phase as StreamState["phase"] };
    } finally {
      this.aborts.delete(abort);
    }
    this.cancelling = false;
    this.connection = "closed";
    this.flush();
  }

  private retry(generation: number, cause: StreamError | null): void {
    this.failures += 1;
    if (this.failures > this.policy.maxAttempts) {
      this.fail({
        message: `Lost the connection to the stream${cause ? ` (${cause.message.replace(/\.$/, "")})` : ""}. Reconnect to continue where it stopped.`,
        code: "connection_lost",
        status: cause?.status ?? null,
        source: "connection",
        retryable: true,
      });
      return;
    }
    this.reconnects += 1;
    this.connection = "reconnecting";
    this.flush();
    const delay =
      this.failures <= 1 ? 0 : Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (this.failures - 2));
    this.later(generation, delay, () => void this.connect(generation));
  }

  private fail(error: StreamError): void {
    this.closeSource("closed");
    this.error = error;
    this.cancelling = false;
    this.flush();
  }

  // --- plumbing -----------------------------------------------------------------------------

  private closeSource(next: Connection): void {
    if (this.source) {
      this.source.onopen = null;
      this.source.onerror = null;
      this.source.close();
      this.source = null;
    }
    this.connection = next;
  }

  private newAbort(): AbortController {
    const abort = new AbortController();
    this.aborts.add(abort);
    return abort;
  }

  private later(generation: number, ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (generation === this.generation) run();
    }, ms);
    this.timers.add(timer);
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private scheduleRender(): void {
    if (this.renderIntervalMs <= 0) return this.flush();
    if (this.renderTimer !== null) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      this.flush();
    }, this.renderIntervalMs);
  }

  private makeSnapshot(): Snapshot {
    return {
      state: this.state,
      error: this.error,
      connection: this.connection,
      reconnects: this.reconnects,
      cancelling: this.cancelling,
    };
  }

  /** Publishes the current state to subscribers now. */
  private flush(): void {
    if (this.renderTimer !== null) {
      clearTimeout(this.renderTimer);
      this.renderTimer = null;
    }
    const s = this.snapshot;
    if (
      s.state === this.state &&
      s.error === this.error &&
      s.connection === this.connection &&
      s.reconnects === this.reconnects &&
      s.cancelling === this.cancelling
    ) {
      return;
    }
    this.snapshot = this.makeSnapshot();
    for (const listener of this.listeners) listener();
  }
}
