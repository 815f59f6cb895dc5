/**
 * useCollaborativeStream(): start a Facilitair task and watch its agents live.
 *
 *   const { start, stop, messages, finalResult, isStreaming, error } = useCollaborativeStream({ apiKey });
 *
 * `messages` is the debate in order: one entry per agent turn (chunk), whose `text` grows as its
 * tokens stream in, and the system notices (retries, fallbacks, cache hits). Everything else a
 * page needs (plan, lanes, totals, cache hit, connection) is returned too.
 */

import { useCallback, useEffect, useMemo, useRef, useSyncExternalStore } from "react";

import type { FetchLike } from "./api";
import type { PlanItem, TaskCreated, TaskErrorData, TaskRequest, TaskResult } from "./protocol";
import {
  type ControllerOptions,
  type Connection,
  type EventSourceFactory,
  type ReconnectPolicy,
  StreamController,
  type StreamError,
} from "./streamController";
import {
  type CacheHit,
  isFinished,
  type Lane,
  lanesOf,
  type Phase,
  type StreamMessage,
  type Totals,
} from "./streamState";

export interface UseCollaborativeStreamOptions {
  apiKey: string;
  /** Where the API is; "" (the default) is this page's origin. */
  baseUrl?: string;
  fetch?: FetchLike;
  EventSource?: EventSourceFactory;
  reconnect?: Partial<ReconnectPolicy>;
  renderIntervalMs?: number;
  cancelGraceMs?: number;
}

export interface CollaborativeStream {
  /** Creates the task and follows its stream. */
  start: (request: TaskRequest) => Promise<TaskCreated | null>;
  /** Cancels the run on the server (the stream ends with `task_cancelled`). */
  stop: () => Promise<void>;
  /** Follows an existing stream from its first event (a finished one is replayed). */
  attach: (streamId: string, taskId?: string | null) => void;
  /** Reconnects after the connection was given up. */
  resume: () => void;
  /** Forgets the current stream. */
  reset: () => void;
  /** Closes the connection as a network drop would (the stream then resumes by itself). */
  dropConnection: () => void;

  messages: StreamMessage[];
  lanes: Lane[];
  finalResult: TaskResult | null;
  isStreaming: boolean;
  error: StreamError | null;

  status: Phase;
  streamId: string | null;
  taskId: string | null;
  task: string | null;
  plan: PlanItem[];
  progress: { completed: number; total: number };
  estimate: { timeS: number | null; costUsd: number | null };
  totals: Totals;
  cacheHit: CacheHit | null;
  taskError: TaskErrorData | null;
  cancelReason: string | null;
  cancelling: boolean;
  connection: Connection;
  reconnects: number;
  lastEventId: number;
  duplicatesIgnored: number;
  startedAt: string | null;
  finishedAt: string | null;
}

export function useCollaborativeStream(options: UseCollaborativeStreamOptions): CollaborativeStream {
  const controllerRef = useRef<StreamController | null>(null);
  if (controllerRef.current === null) {
    const { apiKey, baseUrl, fetch, EventSource, reconnect, renderIntervalMs, cancelGraceMs } = options;
    const controllerOptions: ControllerOptions = {
      apiKey,
      baseUrl,
      fetch,
      EventSource,
      reconnect,
      renderIntervalMs,
      cancelGraceMs,
    };
    controllerRef.current = new StreamController(controllerOptions);
  }
  const controller = controllerRef.current;

  useEffect(() => {
    controller.setApiKey(options.apiKey, options.baseUrl);
  }, [controller, options.apiKey, options.baseUrl]);

  // Unmount: close the EventSource, abort requests in flight, stop timers.
  useEffect(() => () => controller.dispose(), [controller]);

  const snapshot = useSyncExternalStore(controller.subscribe, controller.getSnapshot, controller.getSnapshot);
  const { state, error, connection, reconnects, cancelling } = snapshot;

  const start = useCallback((request: TaskRequest) => controller.start(request), [controller]);
  const stop = useCallback(() => controller.stop(), [controller]);
  const attach = useCallback(
    (streamId: string, taskId: string | null = null) => controller.attach(streamId, taskId),
    [controller],
  );
  const resume = useCallback(() => controller.resume(), [controller]);
  const reset = useCallback(() => controller.reset(), [controller]);
  const dropConnection = useCallback(() => controller.dropConnection(), [controller]);
  const lanes = useMemo(() => lanesOf(state), [state]);

  const fatal = error !== null && error.source !== "task";
  const isStreaming = state.phase !== "idle" && !isFinished(state.phase) && !fatal;

  return {
    start,
    stop,
    attach,
    resume,
    reset,
    dropConnection,
    messages: state.messages,
    lanes,
    finalResult: state.finalResult,
    isStreaming,
    error,
    status: state.phase,
    streamId: state.streamId,
    taskId: state.taskId,
    task: state.task,
    plan: state.plan,
    progress: { completed: state.completedChunks, total: state.totalChunks },
    estimate: { timeS: state.estimatedTimeS, costUsd: state.estimatedCostUsd },
    totals: state.totals,
    cacheHit: state.cacheHit,
    taskError: state.taskError,
    cancelReason: state.cancelReason,
    cancelling,
    connection,
    reconnects,
    lastEventId: state.lastSeq,
    duplicatesIgnored: state.duplicatesIgnored,
    startedAt: state.startedAt,
    finishedAt: state.finishedAt,
  };
}
