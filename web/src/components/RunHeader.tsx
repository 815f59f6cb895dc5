import { useEffect, useState } from "react";

import { formatCount, formatSeconds, formatUsd } from "../format";
import type { CollaborativeStream } from "../useCollaborativeStream";
import { CacheBadge } from "./CacheBadge";

const STATUS_TEXT: Record<string, string> = {
  idle: "Idle",
  starting: "Starting…",
  queued: "Queued",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

function useNow(active: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}

export function elapsedSeconds(stream: CollaborativeStream, now: number): number | null {
  const { startedAt, finishedAt, finalResult } = stream;
  if (finalResult?.metrics && Number.isFinite(finalResult.metrics.duration_s) && finishedAt) {
    return finalResult.metrics.duration_s;
  }
  if (!startedAt) return null;
  const start = Date.parse(startedAt);
  const end = finishedAt ? Date.parse(finishedAt) : now;
  if (Number.isNaN(start) || Number.isNaN(end)) return null;
  return Math.max(0, (end - start) / 1000);
}

/** Status, plan progress, elapsed time, estimated vs actual cost and tokens, cancel. */
export function RunHeader({ stream, headingId }: { stream: CollaborativeStream; headingId: string }) {
  const now = useNow(stream.isStreaming);
  const { progress, estimate, totals, status, connection, cancelling } = stream;
  const elapsed = elapsedSeconds(stream, now);
  const showReconnecting = stream.isStreaming && connection === "reconnecting" && stream.lastEventId > 0;
  return (
    <header className="run-header card">
      <div className="run-title">
        <h2 id={headingId} tabIndex={-1}>
          {stream.task ?? "Task"}
        </h2>
        <div className="row wrap">
          <span
            className={`status status-${status}`}
            role="status"
            data-testid="run-status"
            data-status={status}
          >
            {cancelling && stream.isStreaming ? "Cancelling…" : STATUS_TEXT[status] ?? status}
          </span>
          {showReconnecting && (
            <span className="status status-warning" data-testid="reconnecting">
              Reconnecting…
            </span>
          )}
          {stream.cacheHit && <CacheBadge hit={stream.cacheHit} />}
          {stream.isStreaming && stream.streamId && (
            <button type="button" className="danger" onClick={() => void stream.stop()} disabled={cancelling} data-testid="cancel">
              {cancelling ? "Cancelling…" : "Cancel run"}
            </button>
          )}
        </div>
      </div>
      <dl className="stats">
        <div>
          <dt>Plan</dt>
          <dd>
            <span data-testid="progress">
              {progress.total > 0 ? `${Math.min(progress.completed, progress.total)} / ${progress.total} turns` : "planning…"}
            </span>
            {progress.total > 0 && (
              <progress
                max={progress.total}
                value={Math.min(progress.completed, progress.total)}
                aria-label="Turns completed"
              />
            )}
          </dd>
        </div>
        <div>
          <dt>Elapsed</dt>
          <dd data-testid="elapsed">
            {formatSeconds(elapsed)}
            {estimate.timeS !== null && <span className="muted"> · est. {formatSeconds(estimate.timeS)}</span>}
          </dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd data-testid="cost">
            {formatUsd(totals.costUsd)}
            <span className="muted"> · est. {formatUsd(estimate.costUsd)}</span>
          </dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd data-testid="tokens">
            {formatCount(totals.promptTokens)} in · {formatCount(totals.completionTokens)} out
          </dd>
        </div>
      </dl>
    </header>
  );
}
