/**
 * The state of one stream, built by applying its events in order. Pure functions only, so the
 * hook, the tests and a replay all share the same rules:
 *
 * - events are applied once: any event whose `seq` is not above the last applied one is ignored
 *   (a resumed connection may send some again);
 * - a `chunk_started` for a chunk already seen (a revision, or a turn restarted after its
 *   provider stream broke) replaces that chunk's text;
 * - `chunk_completed` carries the turn's full text; the streamed text is kept when it matches
 *   and replaced (and flagged `repaired`) when it does not.
 */

import type {
  Artifact,
  EventDataMap,
  EventName,
  PlanItem,
  StreamEvent,
  TaskErrorData,
  TaskMetrics,
  TaskResult,
  TaskStatus,
  TestCounts,
  Usage,
} from "./protocol";

export type Phase = "idle" | "starting" | TaskStatus;

export interface Lane {
  type: "agent";
  chunkId: string;
  chunkNumber: number;
  role: string;
  agent: string;
  model: string;
  description: string;
  iteration: number;
  attempt: number;
  /** The text as streamed so far (whole turn once done). */
  text: string;
  done: boolean;
  /** True when chunk_completed's content differed from the streamed text and replaced it. */
  repaired: boolean;
  usage: Usage | null;
  costUsd: number | null;
  durationS: number | null;
  /** The Tester's lane: the counts of its test run. */
  tests: TestCounts | null;
  firstSeq: number;
}

export interface SystemNote {
  type: "system";
  seq: number;
  message: string;
  level: "info" | "warning";
  kind: string;
  timestamp: string;
}

export type StreamMessage = Lane | SystemNote;

export interface CacheHit {
  message: string | null;
  similarity: number | null;
  savedUsd: number | null;
  savedS: number | null;
}

export interface Totals {
  promptTokens: number;
  completionTokens: number;
  /** null when some turn's cost is unknown (a model missing from the price table). */
  costUsd: number | null;
}

export interface StreamState {
  streamId: string | null;
  taskId: string | null;
  task: string | null;
  context: Record<string, unknown> | null;
  workflow: string | null;
  phase: Phase;
  lastSeq: number;
  plan: PlanItem[];
  totalChunks: number;
  completedChunks: number;
  estimatedTimeS: number | null;
  estimatedCostUsd: number | null;
  messages: StreamMessage[];
  totals: Totals;
  finalResult: TaskResult | null;
  taskError: TaskErrorData | null;
  cancelReason: string | null;
  cacheHit: CacheHit | null;
  /** Server timestamps of the first and the terminal event. */
  startedAt: string | null;
  finishedAt: string | null;
  /** Events ignored because they had been applied already (visible for tests and debugging). */
  duplicatesIgnored: number;
}

export function initialState(streamId: string | null = null, phase: Phase = "idle"): StreamState {
  return {
    streamId,
    taskId: null,
    task: null,
    context: null,
    workflow: null,
    phase,
    lastSeq: 0,
    plan: [],
    totalChunks: 0,
    completedChunks: 0,
    estimatedTimeS: null,
    estimatedCostUsd: null,
    messages: [],
    totals: { promptTokens: 0, completionTokens: 0, costUsd: 0 },
    finalResult: null,
    taskError: null,
    cancelReason: null,
    cacheHit: null,
    startedAt: null,
    finishedAt: null,
    duplicatesIgnored: 0,
  };
}

export function lanesOf(state: StreamState): Lane[] {
  return state.messages.filter((m): m is Lane => m.type === "agent");
}

export function isFinished(phase: Phase): boolean {
  return phase === "completed" || phase === "failed" || phase === "cancelled";
}

/** A lane before any text: the fields an event gives, the rest at their starting values. */
function newLane(
  fields: Pick<Lane, "chunkId" | "role" | "agent"> & Partial<Lane>,
  firstSeq: number,
): Lane {
  return {
    type: "agent",
    chunkNumber: 0,
    model: "",
    description: "",
    iteration: 1,
    attempt: 1,
    text: "",
    done: false,
    repaired: false,
    usage: null,
    costUsd: null,
    durationS: null,
    tests: null,
    ...fields,
    firstSeq,
  };
}

function laneIndex(messages: StreamMessage[], chunkId: string): number {
  return messages.findIndex((m) => m.type === "agent" && m.chunkId === chunkId);
}

function replaceAt<T>(items: T[], index: number, item: T): T[] {
  const copy = items.slice();
  copy[index] = item;
  return copy;
}

function addCost(total: number | null, cost: number | null | undefined): number | null {
  if (total === null || cost === null || cost === undefined) return null;
  return total + cost;
}

/** Applies one event; returns the same object when the event changes nothing. */
export function applyEvent<K extends EventName>(
  state: StreamState,
  event: K,
  data: EventDataMap[K],
): StreamState {
  if (event === "heartbeat") return state; // never logged; it moves no cursor
  const seq = Number(data.seq);
  if (!Number.isFinite(seq) || seq <= state.lastSeq) {
    return { ...state, duplicatesIgnored: state.duplicatesIgnored + 1 };
  }
  if (isFinished(state.phase)) return state; // nothing follows a terminal event
  const next: StreamState = {
    ...state,
    lastSeq: seq,
    streamId: state.streamId ?? data.stream_id,
    startedAt: state.startedAt ?? data.timestamp,
  };
  if (next.phase === "idle" || next.phase === "starting" || next.phase === "queued") {
    next.phase = "running";
  }
  const typed = { event, data } as StreamEvent;
  switch (typed.event) {
    case "task_started": {
      const d = typed.data;
      return { ...next, task: d.task, context: d.context, workflow: d.workflow, taskId: d.task_id };
    }
    case "task_progress": {
      const d = typed.data;
      return {
        ...next,
        plan: d.plan ?? [],
        totalChunks: d.total_chunks,
        completedChunks: d.completed_chunks ?? next.completedChunks,
        estimatedTimeS: d.estimated_time ?? null,
        estimatedCostUsd: d.estimated_cost ?? null,
      };
    }
    case "chunk_started": {
      const d = typed.data;
      const lane = newLane(
        {
          chunkId: d.chunk_id,
          chunkNumber: d.chunk_number,
          role: d.role,
          agent: d.agent,
          model: d.model,
          description: d.description,
          iteration: d.iteration ?? 1,
          attempt: d.attempt ?? 1,
        },
        seq,
      );
      const index = laneIndex(next.messages, d.chunk_id);
      if (index === -1) return { ...next, messages: [...next.messages, lane] };
      const old = next.messages[index] as Lane;
      // A revision or a restarted turn: same lane, text replaced.
      return { ...next, messages: replaceAt(next.messages, index, { ...lane, firstSeq: old.firstSeq }) };
    }
    case "token_stream": {
      const d = typed.data;
      const index = laneIndex(next.messages, d.chunk_id);
      if (index === -1) {
        // Tokens for a lane we never saw start (should not happen): open one so nothing is lost.
        const lane = newLane(
          { chunkId: d.chunk_id, role: d.role, agent: d.agent, text: d.tokens },
          seq,
        );
        return { ...next, messages: [...next.messages, lane] };
      }
      const lane = next.messages[index] as Lane;
      return { ...next, messages: replaceAt(next.messages, index, { ...lane, text: lane.text + d.tokens }) };
    }
    case "chunk_completed": {
      const d = typed.data;
      const index = laneIndex(next.messages, d.chunk_id);
      const base: Lane =
        index === -1
          ? newLane(
              {
                chunkId: d.chunk_id,
                chunkNumber: d.chunk_number,
                role: d.role,
                agent: d.agent,
                model: d.model,
              },
              seq,
            )
          : (next.messages[index] as Lane);
      const matches = base.text === d.content;
      const lane: Lane = {
        ...base,
        model: d.model || base.model,
        text: d.content,
        repaired: base.repaired || !matches,
        done: true,
        usage: d.usage ?? null,
        costUsd: d.cost_usd ?? null,
        durationS: d.duration_s ?? null,
        tests: d.tests ?? null,
      };
      const totals: Totals = {
        promptTokens: next.totals.promptTokens + (d.usage?.prompt_tokens ?? 0),
        completionTokens: next.totals.completionTokens + (d.usage?.completion_tokens ?? 0),
        costUsd: addCost(next.totals.costUsd, d.cost_usd),
      };
      const messages =
        index === -1 ? [...next.messages, lane] : replaceAt(next.messages, index, lane);
      return { ...next, messages, totals, completedChunks: next.completedChunks + 1 };
    }
    case "system_message": {
      const d = typed.data;
      const note: SystemNote = {
        type: "system",
        seq,
        message: d.message,
        level: d.level ?? "info",
        kind: d.kind ?? "info",
        timestamp: d.timestamp,
      };
      const withNote = { ...next, messages: [...next.messages, note] };
      if (d.kind === "cache_hit") {
        withNote.cacheHit = {
          message: d.message,
          similarity: next.cacheHit?.similarity ?? null,
          savedUsd: next.cacheHit?.savedUsd ?? null,
          savedS: next.cacheHit?.savedS ?? null,
        };
      }
      return withNote;
    }
    case "task_completed": {
      const d = typed.data;
      const metrics: TaskMetrics = d.metrics;
      const result: TaskResult = {
        content: d.content,
        artifacts: (d.artifacts ?? []) as Artifact[],
        metrics,
      };
      const done: StreamState = {
        ...next,
        phase: "completed",
        finishedAt: d.timestamp,
        finalResult: result,
        completedChunks: Math.max(next.completedChunks, next.totalChunks),
        totals: {
          promptTokens: metrics?.prompt_tokens ?? next.totals.promptTokens,
          completionTokens: metrics?.completion_tokens ?? next.totals.completionTokens,
          costUsd: metrics ? metrics.cost_usd : next.totals.costUsd,
        },
      };
      if (metrics?.cached) {
        done.cacheHit = {
          message: next.cacheHit?.message ?? null,
          similarity: metrics.similarity ?? null,
          savedUsd: metrics.saved_usd ?? null,
          savedS: metrics.saved_s ?? null,
        };
      }
      return done;
    }
    case "task_error":
      return { ...next, phase: "failed", finishedAt: typed.data.timestamp, taskError: typed.data };
    case "task_cancelled":
      return {
        ...next,
        phase: "cancelled",
        finishedAt: typed.data.timestamp,
        cancelReason: typed.data.reason ?? "cancelled",
      };
    default:
      return next;
  }
}
