import { describe, expect, it } from "vitest";

import type { EventDataMap, EventName } from "./protocol";
import { applyEvent, initialState, lanesOf, type StreamState } from "./streamState";

function run(events: [EventName, Record<string, unknown>][]): StreamState {
  let state = initialState("s", "starting");
  let seq = 0;
  for (const [name, fields] of events) {
    seq += 1;
    const data = { stream_id: "s", seq, timestamp: "2025-01-01T00:00:00Z", ...fields } as unknown as EventDataMap[EventName];
    state = applyEvent(state, name, data);
  }
  return state;
}

const started = (id: string, extra: Record<string, unknown> = {}): [EventName, Record<string, unknown>] => [
  "chunk_started",
  { chunk_id: id, chunk_number: 1, role: "coder", agent: `Coder ${id}`, model: "m", description: "", ...extra },
];
const tokens = (id: string, text: string): [EventName, Record<string, unknown>] => [
  "token_stream",
  { chunk_id: id, tokens: text, role: "coder", agent: `Coder ${id}` },
];
const completed = (id: string, content: string, cost: number | null = 0.5): [EventName, Record<string, unknown>] => [
  "chunk_completed",
  { chunk_id: id, chunk_number: 1, role: "coder", agent: `Coder ${id}`, model: "m", content, usage: { prompt_tokens: 2, completion_tokens: 3 }, cost_usd: cost, duration_s: 1 },
];

describe("applyEvent", () => {
  it("keeps streamed text that matches the completed content", () => {
    const state = run([started("c1"), tokens("c1", "a\n"), tokens("c1", "b\n"), completed("c1", "a\nb\n")]);
    expect(lanesOf(state)[0]).toMatchObject({ text: "a\nb\n", repaired: false, done: true });
  });

  it("repairs (and flags) streamed text that differs from the completed content", () => {
    const state = run([started("c1"), tokens("c1", "a\n"), completed("c1", "a\nb\n")]);
    expect(lanesOf(state)[0]).toMatchObject({ text: "a\nb\n", repaired: true });
  });

  it("an attempt restarted after a broken provider stream replaces the text", () => {
    const state = run([started("c1"), tokens("c1", "half"), started("c1", { attempt: 2 }), tokens("c1", "whole\n")]);
    expect(lanesOf(state)[0]).toMatchObject({ text: "whole\n", attempt: 2 });
  });

  it("cost becomes unknown (null) once any turn's cost is unknown", () => {
    const state = run([started("c1"), completed("c1", "", 0.25), started("c2"), completed("c2", "", null)]);
    expect(state.totals).toEqual({ promptTokens: 4, completionTokens: 6, costUsd: null });
  });

  it("the Tester's lane keeps the counts of its test run; a lane without a run has none", () => {
    const counts = { passed: 2, failed: 1, errors: 0, duration_s: 0.4 };
    const tester: [EventName, Record<string, unknown>] = [
      "chunk_completed",
      { chunk_id: "tests", chunk_number: 2, role: "tester", agent: "Tester", model: "pytest", content: "1 failed", usage: { prompt_tokens: 0, completion_tokens: 0 }, cost_usd: 0, duration_s: 0.5, tests: counts },
    ];
    const state = run([started("c1"), completed("c1", "x"), tester]);
    expect(lanesOf(state).map((lane) => lane.tests)).toEqual([null, counts]);
  });

  it("opens a lane for tokens of a chunk it never saw start", () => {
    const state = run([tokens("c9", "x")]);
    expect(lanesOf(state)[0]).toMatchObject({ chunkId: "c9", text: "x" });
  });

  it("applies nothing after the terminal event, and nothing twice", () => {
    let state = run([started("c1"), ["task_cancelled", { reason: "user" }]]);
    const after = applyEvent(state, "token_stream", { stream_id: "s", seq: 9, timestamp: "", chunk_id: "c1", tokens: "late", role: "coder", agent: "A" });
    expect(after).toBe(state);
    state = run([started("c1"), tokens("c1", "x")]);
    const again = applyEvent(state, "token_stream", { stream_id: "s", seq: 2, timestamp: "", chunk_id: "c1", tokens: "x", role: "coder", agent: "A" });
    expect(lanesOf(again)[0].text).toBe("x");
    expect(again.duplicatesIgnored).toBe(1);
  });

  it("records start and end times from the events", () => {
    const state = run([["task_started", { task: "t", context: {}, workflow: "sequential", task_id: "k" }], ["task_error", { error: "boom", code: "x" }]]);
    expect(state.phase).toBe("failed");
    expect(state.startedAt).toBe("2025-01-01T00:00:00Z");
    expect(state.finishedAt).toBe("2025-01-01T00:00:00Z");
    expect(state.taskError?.error).toBe("boom");
  });
});
