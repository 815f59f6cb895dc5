import { act } from "react";
import { createRoot } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { apiError, type Call, FakeEventSource, FakeFetch, hangUntilAborted, json, Script } from "./test/fakes";
import {
  type CollaborativeStream,
  useCollaborativeStream,
  type UseCollaborativeStreamOptions,
} from "./useCollaborativeStream";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const KEY = "fac_test_key_123";

function renderHook(options: UseCollaborativeStreamOptions) {
  const result = { current: undefined as unknown as CollaborativeStream, renders: 0 };
  function Probe() {
    result.current = useCollaborativeStream(options);
    result.renders += 1;
    return null;
  }
  const root = createRoot(document.createElement("div"));
  act(() => root.render(<Probe />));
  return { result, unmount: () => act(() => root.unmount()) };
}

/** Lets pending promises and zero-delay timers run, inside act(). */
async function settle(rounds = 8): Promise<void> {
  await act(async () => {
    for (let i = 0; i < rounds; i += 1) await new Promise((r) => setTimeout(r, 0));
  });
}

function emit(source: FakeEventSource, event: string, data: Record<string, unknown>): void {
  act(() => source.emit(event, data));
}

let api: FakeFetch;
let tickets: number;

function happyServer(): FakeFetch {
  tickets = 0;
  return new FakeFetch()
    .on("POST", "/api/stream/task", () =>
      json({ stream_id: "str_1", task_id: "task_1", events_url: "/api/stream/events/str_1", status_url: "/api/stream/status/str_1" }),
    )
    .on("POST", "/api/stream/str_1/ticket", () => {
      tickets += 1;
      return json({ ticket: `t${tickets}`, expires_in: 60, stream_id: "str_1" });
    })
    .on("POST", "/api/stream/str_1/cancel", () => json({ status: "running" }));
}

function options(extra: Partial<UseCollaborativeStreamOptions> = {}): UseCollaborativeStreamOptions {
  return {
    apiKey: KEY,
    fetch: api.fetch,
    EventSource: FakeEventSource,
    renderIntervalMs: 0,
    ...extra,
  };
}

/** start() a task and return its open EventSource. */
async function started(result: { current: CollaborativeStream }, body = { task: "Build a KV store" }) {
  let created: unknown;
  await act(async () => {
    created = await result.current.start(body);
  });
  await settle();
  const source = FakeEventSource.last();
  act(() => source.open());
  return { source, created };
}

beforeEach(() => {
  FakeEventSource.reset();
  api = happyServer();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("start and the event protocol", () => {
  it("creates the task with the key header and reads the stream with a ticket only", async () => {
    const { result } = renderHook(options());
    expect(result.current.status).toBe("idle");
    const { source, created } = await started(result, {
      task: "Build a KV store",
      // @ts-expect-error: the test passes context through as is
      context: { preferred_language: "python", frameworks: ["fastapi"], team_size: 3 },
    });
    expect(created).toMatchObject({ stream_id: "str_1", task_id: "task_1" });
    const [create] = api.callsTo("POST", "/api/stream/task");
    expect(create.headers["X-API-Key"]).toBe(KEY);
    expect(create.body).toMatchObject({ task: "Build a KV store", context: { team_size: 3 } });
    const [ticket] = api.callsTo("POST", "/api/stream/str_1/ticket");
    expect(ticket.headers["X-API-Key"]).toBe(KEY);

    expect(source.url.startsWith("/api/stream/events/str_1?")).toBe(true);
    expect(source.params.get("ticket")).toBe("t1");
    expect(source.params.has("last_event_id")).toBe(false);
    expect(source.url).not.toContain(KEY);
    expect(result.current.isStreaming).toBe(true);
    expect(result.current.streamId).toBe("str_1");
    expect(result.current.connection).toBe("open");
  });

  it("follows every event: plan, concurrent lanes, tokens, notices, the final result", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "task_started", s.next({ task: "Build a KV store", context: {}, workflow: "sequential", task_id: "task_1" }));
    expect(result.current.status).toBe("running");
    expect(result.current.task).toBe("Build a KV store");
    emit(source, "task_progress", s.next({
      total_chunks: 4, completed_chunks: 0, estimated_time: 12.5, estimated_cost: 0.0026,
      plan: [
        { chunk_id: "architect", role: "architect", description: "Design", model: "m-a" },
        { chunk_id: "c1", role: "coder", description: "one", model: "m-c" },
        { chunk_id: "c2", role: "coder", description: "two", model: "m-c" },
        { chunk_id: "docs", role: "documenter", description: "README", model: "m-d" },
      ],
    }));
    expect(result.current.plan).toHaveLength(4);
    expect(result.current.progress).toEqual({ completed: 0, total: 4 });
    expect(result.current.estimate).toEqual({ timeS: 12.5, costUsd: 0.0026 });

    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "Coder c1", model: "m-c", description: "one", iteration: 1 }));
    emit(source, "chunk_started", s.next({ chunk_id: "c2", chunk_number: 2, role: "coder", agent: "Coder c2", model: "m-c", description: "two", iteration: 1 }));
    emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: "a = 1\n", role: "coder", agent: "Coder c1" }));
    emit(source, "token_stream", s.next({ chunk_id: "c2", tokens: "b = 2\n", role: "coder", agent: "Coder c2" }));
    emit(source, "heartbeat", { stream_id: "str_1", seq: s.seq, timestamp: "x" });
    emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: "c = 3\n", role: "coder", agent: "Coder c1" }));
    const lanes = result.current.lanes;
    expect(lanes.map((l) => [l.chunkId, l.text, l.done])).toEqual([
      ["c1", "a = 1\nc = 3\n", false],
      ["c2", "b = 2\n", false],
    ]);
    expect(lanes[0]).toMatchObject({ agent: "Coder c1", role: "coder", model: "m-c" });

    emit(source, "chunk_completed", s.next({
      chunk_id: "c1", chunk_number: 1, role: "coder", agent: "Coder c1", model: "m-c",
      content: "a = 1\nc = 3\n", usage: { prompt_tokens: 10, completion_tokens: 6 }, cost_usd: 0.001, duration_s: 0.5,
    }));
    emit(source, "system_message", s.next({ message: "Retrying the reviewer", level: "warning", kind: "retry" }));
    expect(result.current.lanes[0]).toMatchObject({ done: true, repaired: false, costUsd: 0.001 });
    expect(result.current.progress.completed).toBe(1);
    expect(result.current.totals).toEqual({ promptTokens: 10, completionTokens: 6, costUsd: 0.001 });
    expect(result.current.messages.map((m) => m.type)).toEqual(["agent", "agent", "system"]);

    emit(source, "task_completed", s.next({
      content: "# Done\n", artifacts: [{ path: "pkg/c1.py", language: "python", content: "a = 1\n" }],
      metrics: { duration_s: 3.2, cost_usd: 0.002, prompt_tokens: 20, completion_tokens: 12, llm_calls: 4, iterations: 1, cached: false },
    }));
    expect(result.current.status).toBe("completed");
    expect(result.current.isStreaming).toBe(false);
    expect(result.current.finalResult?.artifacts[0].path).toBe("pkg/c1.py");
    expect(result.current.totals).toEqual({ promptTokens: 20, completionTokens: 12, costUsd: 0.002 });
    expect(result.current.error).toBeNull();
    expect(result.current.cacheHit).toBeNull();
    expect(source.closed).toBe(true);
    expect(result.current.connection).toBe("closed");
  });

  it("replaces a chunk's text when it starts again (a revision)", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "Coder c1", model: "m", description: "one", iteration: 1 }));
    emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: "old\n", role: "coder", agent: "Coder c1" }));
    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 4, role: "coder", agent: "Coder c1", model: "m", description: "Revise c1", iteration: 2 }));
    emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: "new\n", role: "coder", agent: "Coder c1" }));
    expect(result.current.lanes).toHaveLength(1);
    expect(result.current.lanes[0]).toMatchObject({ text: "new\n", iteration: 2, description: "Revise c1" });
  });

  it("shows a cache hit from the system message and the metrics", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "system_message", s.next({ message: "Cache hit (94% match) • saved $0.08, ~4.1 s", level: "info", kind: "cache_hit" }));
    expect(result.current.cacheHit).toMatchObject({ message: "Cache hit (94% match) • saved $0.08, ~4.1 s" });
    emit(source, "task_completed", s.next({
      content: "x", artifacts: [],
      metrics: { duration_s: 0.01, cost_usd: 0, prompt_tokens: 0, completion_tokens: 0, llm_calls: 0, iterations: 0, cached: true, similarity: 0.94, saved_usd: 0.08, saved_s: 4.1 },
    }));
    expect(result.current.cacheHit).toEqual({
      message: "Cache hit (94% match) • saved $0.08, ~4.1 s", similarity: 0.94, savedUsd: 0.08, savedS: 4.1,
    });
  });

  it("reports a failed task as an error of the task", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "task_error", s.next({ error: "The provider failed after 3 retries.", code: "provider_error", retryable: true }));
    expect(result.current.status).toBe("failed");
    expect(result.current.isStreaming).toBe(false);
    expect(result.current.error).toMatchObject({ source: "task", code: "provider_error", message: "The provider failed after 3 retries." });
    expect(source.closed).toBe(true);
  });

  it("ignores malformed events and heartbeats", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    act(() => source.emit("token_stream", {}, "{not json"));
    emit(source, "heartbeat", { stream_id: "str_1", seq: 0, timestamp: "x" });
    expect(result.current.messages).toEqual([]);
    expect(result.current.lastEventId).toBe(0);
    expect(result.current.isStreaming).toBe(true);
  });

  it("batches token renders when a render interval is set", async () => {
    const { result } = renderHook(options({ renderIntervalMs: 30 }));
    const { source } = await started(result);
    const s = new Script();
    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "Coder c1", model: "m", description: "" }));
    const before = result.renders;
    for (let i = 0; i < 20; i += 1) emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: `${i}\n`, role: "coder", agent: "Coder c1" }));
    expect(result.renders).toBe(before); // nothing yet: one render for the whole burst
    await act(async () => {
      await new Promise((r) => setTimeout(r, 60));
    });
    expect(result.renders).toBe(before + 1);
    expect(result.current.lanes[0].text.split("\n")).toHaveLength(21);
  });
});

describe("resume after a dropped connection", () => {
  it("reconnects with a fresh ticket and the last id, and never duplicates text", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    const events: [string, Record<string, unknown>][] = [
      ["chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "Coder c1", model: "m", description: "" })],
      ["token_stream", s.next({ chunk_id: "c1", tokens: "one\n", role: "coder", agent: "Coder c1" })],
      ["token_stream", s.next({ chunk_id: "c1", tokens: "two\n", role: "coder", agent: "Coder c1" })],
      ["token_stream", s.next({ chunk_id: "c1", tokens: "three\n", role: "coder", agent: "Coder c1" })],
      ["token_stream", s.next({ chunk_id: "c1", tokens: "four\n", role: "coder", agent: "Coder c1" })],
      ["chunk_completed", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "Coder c1", model: "m", content: "one\ntwo\nthree\nfour\n", usage: { prompt_tokens: 1, completion_tokens: 4 }, cost_usd: 0, duration_s: 1 })],
      ["task_completed", s.next({ content: "done", artifacts: [], metrics: { duration_s: 1, cost_usd: 0, prompt_tokens: 1, completion_tokens: 4, llm_calls: 1, iterations: 1 } })],
    ];
    for (const [name, data] of events.slice(0, 3)) emit(source, name, data);
    expect(result.current.lanes[0].text).toBe("one\ntwo\n");
    expect(result.current.lastEventId).toBe(3);

    act(() => source.drop());
    expect(source.closed).toBe(true); // ours to reconnect: the browser's retry would reuse an old ticket
    expect(result.current.connection).toBe("reconnecting");
    expect(result.current.isStreaming).toBe(true);
    await settle();
    const second = FakeEventSource.last();
    expect(second).not.toBe(source);
    expect(second.params.get("ticket")).toBe("t2");
    expect(second.params.get("last_event_id")).toBe("3");
    act(() => second.open());
    // A server (or proxy) that re-sends from earlier than asked: every repeat is ignored.
    for (const [name, data] of events.slice(1)) emit(second, name, data);
    expect(result.current.duplicatesIgnored).toBe(2);
    expect(result.current.lanes[0]).toMatchObject({ text: "one\ntwo\nthree\nfour\n", repaired: false, done: true });
    expect(result.current.status).toBe("completed");
    expect(result.current.reconnects).toBe(1);
    expect(api.callsTo("POST", "/api/stream/str_1/ticket")).toHaveLength(2);
  });

  it("dropConnection() (the page's test hook) resumes like a real drop", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "A", model: "m", description: "" }));
    act(() => result.current.dropConnection());
    expect(source.closed).toBe(true);
    await settle();
    expect(FakeEventSource.last().params.get("last_event_id")).toBe("1");
    expect(FakeEventSource.last().params.get("ticket")).toBe("t2");
  });

  it("after a refused open, asks the status and finishes a stream that has ended (204)", async () => {
    api.on("GET", "/api/stream/status/str_1", () =>
      json({ stream_id: "str_1", task_id: "task_1", status: "completed", last_event_id: 2, completed_chunks: 1, total_chunks: 1, cost_usd: 0, tokens: {}, created_at: "", finished_at: "" }),
    );
    api.on("GET", "/api/v1/tasks/task_1", () =>
      json({ task_id: "task_1", stream_id: "str_1", status: "completed", task: "t", workflow: "sequential", created_at: "", finished_at: "", cost_usd: 0, context: {}, total_chunks: 1, completed_chunks: 1, tokens: {}, result: { content: "final", artifacts: [], metrics: { duration_s: 1, cost_usd: 0, prompt_tokens: 0, completion_tokens: 0, llm_calls: 1, iterations: 1 } }, error: null, partial: null }),
    );
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "A", model: "m", description: "" }));
    emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: "x\n", role: "coder", agent: "A" }));
    act(() => source.drop());
    await settle();
    act(() => FakeEventSource.last().refuse()); // the reconnect is answered 204
    await settle();
    expect(api.callsTo("GET", "/api/stream/status/str_1")).toHaveLength(1);
    expect(result.current.status).toBe("completed");
    expect(result.current.finalResult?.content).toBe("final");
    expect(result.current.isStreaming).toBe(false);
    expect(FakeEventSource.instances).toHaveLength(2);
  });

  it("keeps retrying while the server is away, then gives up with a clear error; resume() goes on", async () => {
    let down = true;
    api.on("POST", "/api/stream/str_1/ticket", () => {
      if (down) throw new TypeError("Failed to fetch");
      tickets += 1;
      return json({ ticket: `t${tickets}`, expires_in: 60, stream_id: "str_1" });
    });
    const { result } = renderHook(options({ reconnect: { baseDelayMs: 1, maxDelayMs: 2, maxAttempts: 3 } }));
    await act(async () => {
      await result.current.start({ task: "x" });
    });
    await settle(30);
    expect(api.callsTo("POST", "/api/stream/str_1/ticket")).toHaveLength(4);
    expect(result.current.error).toMatchObject({ code: "connection_lost", source: "connection" });
    expect(result.current.error?.message).toMatch(/Cannot reach the Facilitair server/);
    expect(result.current.isStreaming).toBe(false);
    expect(FakeEventSource.instances).toHaveLength(0);

    down = false;
    act(() => result.current.resume());
    await settle();
    expect(result.current.error).toBeNull();
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(result.current.isStreaming).toBe(true);
  });

  it("replays a finished stream from its first event (history)", async () => {
    const { result } = renderHook(options());
    act(() => result.current.attach("str_1", "task_1"));
    await settle();
    const source = FakeEventSource.last();
    expect(source.params.has("last_event_id")).toBe(false);
    expect(api.callsTo("POST", "/api/stream/task")).toHaveLength(0);
    act(() => source.open());
    const s = new Script();
    emit(source, "task_started", s.next({ task: "old task", context: {}, workflow: "sequential", task_id: "task_1" }));
    emit(source, "task_cancelled", s.next({ reason: "cancelled by the user" }));
    expect(result.current.task).toBe("old task");
    expect(result.current.status).toBe("cancelled");
    expect(result.current.cancelReason).toBe("cancelled by the user");
  });
});

describe("stop()", () => {
  it("calls the cancel endpoint with the key; the stream then ends cancelled", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    const s = new Script();
    emit(source, "chunk_started", s.next({ chunk_id: "c1", chunk_number: 1, role: "coder", agent: "A", model: "m", description: "" }));
    emit(source, "token_stream", s.next({ chunk_id: "c1", tokens: "partial\n", role: "coder", agent: "A" }));
    await act(async () => {
      await result.current.stop();
    });
    const [cancel] = api.callsTo("POST", "/api/stream/str_1/cancel");
    expect(cancel.headers["X-API-Key"]).toBe(KEY);
    expect(result.current.cancelling).toBe(true);
    emit(source, "task_cancelled", s.next({ reason: "cancelled by the client" }));
    expect(result.current.status).toBe("cancelled");
    expect(result.current.cancelling).toBe(false);
    expect(result.current.isStreaming).toBe(false);
    expect(result.current.lanes[0].text).toBe("partial\n"); // partial output is kept
    expect(source.closed).toBe(true);
  });

  it("cancels a task whose creation is still in flight as soon as it exists", async () => {
    let release!: (r: Response) => void;
    api.on("POST", "/api/stream/task", () => new Promise<Response>((r) => (release = r)));
    const { result } = renderHook(options());
    let pending!: Promise<unknown>;
    act(() => {
      pending = result.current.start({ task: "x" });
    });
    await act(async () => {
      await result.current.stop();
    });
    expect(api.callsTo("POST", "/api/stream/str_1/cancel")).toHaveLength(0);
    await act(async () => {
      release(json({ stream_id: "str_1", task_id: "task_1", events_url: "", status_url: "" }));
      await pending;
    });
    await settle();
    expect(api.callsTo("POST", "/api/stream/str_1/cancel")).toHaveLength(1);
  });

  it("treats 409 (already ended) as nothing to do", async () => {
    api.on("POST", "/api/stream/str_1/cancel", () => apiError(409, "conflict", "stream str_1 has already ended (completed)"));
    const { result } = renderHook(options());
    await started(result);
    await act(async () => {
      await result.current.stop();
    });
    expect(result.current.error).toBeNull();
  });

  it("marks the run cancelled if the stream cannot deliver task_cancelled in time", async () => {
    const { result } = renderHook(options({ cancelGraceMs: 20 }));
    await started(result);
    await act(async () => {
      await result.current.stop();
      await new Promise((r) => setTimeout(r, 40));
    });
    expect(result.current.status).toBe("cancelled");
    expect(FakeEventSource.last().closed).toBe(true);
  });
});

describe("errors", () => {
  it("a wrong key: a clear 401 error, nothing opened", async () => {
    api.on("POST", "/api/stream/task", () => apiError(401, "unauthorized", "invalid or revoked API key"));
    const { result } = renderHook(options({ apiKey: "fac_wrong" }));
    let created: unknown = "unset";
    await act(async () => {
      created = await result.current.start({ task: "x" });
    });
    expect(created).toBeNull();
    expect(result.current.error).toMatchObject({ status: 401, code: "unauthorized", source: "api" });
    expect(result.current.error?.message).toMatch(/^Invalid or revoked API key\./);
    expect(result.current.isStreaming).toBe(false);
    expect(result.current.status).toBe("idle");
    expect(FakeEventSource.instances).toHaveLength(0);
  });

  it("a key revoked mid-run: the ticket is refused and the error is final", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    api.on("POST", "/api/stream/str_1/ticket", () => apiError(401, "unauthorized", "invalid or revoked API key"));
    act(() => source.drop());
    await settle();
    expect(result.current.error).toMatchObject({ status: 401 });
    expect(result.current.isStreaming).toBe(false);
    expect(FakeEventSource.instances).toHaveLength(1);
  });

  it("bad input (422) and rate limits (429) are shown with the server's words", async () => {
    api.on("POST", "/api/stream/task", () => json({ error: { code: "rate_limited", message: "rate limit exceeded" } }, 429, { "Retry-After": "7" }));
    const { result } = renderHook(options());
    await act(async () => {
      await result.current.start({ task: "x" });
    });
    expect(result.current.error?.message).toBe("Rate limit exceeded. Try again in 7 s.");
    expect(result.current.error?.retryable).toBe(true);
  });

  it("a server that cannot be reached", async () => {
    api.on("POST", "/api/stream/task", () => {
      throw new TypeError("Failed to fetch");
    });
    const { result } = renderHook(options());
    await act(async () => {
      await result.current.start({ task: "x" });
    });
    expect(result.current.error).toMatchObject({ code: "network", status: 0 });
  });
});

describe("cleanup", () => {
  it("unmount closes the EventSource and ignores anything after", async () => {
    const { result, unmount } = renderHook(options());
    const { source } = await started(result);
    unmount();
    expect(source.closed).toBe(true);
    const s = new Script();
    source.closed = false; // even if the browser still delivered something
    source.emit("task_started", s.next({ task: "late", context: {}, workflow: "sequential", task_id: "x" }));
    source.drop();
    await new Promise((r) => setTimeout(r, 10));
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(api.callsTo("POST", "/api/stream/str_1/ticket")).toHaveLength(1);
  });

  it("unmount aborts requests in flight", async () => {
    const seen: Call[] = [];
    api.on("POST", "/api/stream/str_1/ticket", (call) => {
      seen.push(call);
      return hangUntilAborted(call);
    });
    const { result, unmount } = renderHook(options());
    await act(async () => {
      await result.current.start({ task: "x" });
    });
    await settle();
    expect(seen).toHaveLength(1);
    expect(seen[0].signal?.aborted).toBe(false);
    unmount();
    expect(seen[0].signal?.aborted).toBe(true);
    await settle();
    expect(FakeEventSource.instances).toHaveLength(0);
  });

  it("a new start() closes the previous stream", async () => {
    const { result } = renderHook(options());
    const { source } = await started(result);
    await started(result, { task: "again" });
    expect(source.closed).toBe(true);
    expect(FakeEventSource.instances).toHaveLength(2);
    expect(result.current.lanes).toEqual([]);
  });
});
