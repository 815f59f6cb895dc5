import { useCallback, useEffect, useRef, useState } from "react";

import { Api, ApiError, isAbort } from "../api";
import { formatDate, formatUsd } from "../format";
import type { TaskSummary } from "../protocol";

interface Props {
  apiKey: string;
  /** Changes when the list should be fetched again (a run started or ended). */
  refreshToken: string;
  currentStreamId: string | null;
  onOpen: (item: TaskSummary) => void;
  onUnauthorized: (message: string) => void;
}

const PAGE = 15;

/** This tenant's past tasks; opening one replays its stream. */
export function History({ apiKey, refreshToken, currentStreamId, onOpen, onUnauthorized }: Props) {
  const [items, setItems] = useState<TaskSummary[]>([]);
  const [total, setTotal] = useState(0);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [authError, setAuthError] = useState<string | null>(null);
  const abortRef = useRef<AbortController | null>(null);

  const load = useCallback(
    async (offset: number) => {
      abortRef.current?.abort();
      const abort = new AbortController();
      abortRef.current = abort;
      setLoading(true);
      try {
        const page = await new Api({ apiKey }).tasks(PAGE, offset, abort.signal);
        setItems((old) => (offset === 0 ? page.items : [...old, ...page.items]));
        setTotal(page.total);
        setError(null);
      } catch (caught) {
        if (isAbort(caught)) return;
        const message = caught instanceof ApiError ? caught.message : "Could not load the history.";
        if (caught instanceof ApiError && caught.status === 401) {
          setAuthError(message);
          onUnauthorized(message);
        }
        setError(message);
      } finally {
        if (abortRef.current === abort) {
          abortRef.current = null;
          setLoading(false);
        }
      }
    },
    [apiKey, onUnauthorized],
  );

  useEffect(() => {
    void load(0);
    return () => abortRef.current?.abort();
  }, [load, refreshToken]);

  return (
    <section className="card history" aria-labelledby="history-title">
      <div className="row spread">
        <h2 id="history-title">History</h2>
        <button type="button" className="secondary small" onClick={() => void load(0)} disabled={loading}>
          {loading ? "Loading…" : "Refresh"}
        </button>
      </div>
      {error && (
        <p className="error" role={error === authError ? undefined : "alert"}>
          {error === authError ? "Not available with this key." : error}
        </p>
      )}
      {!error && items.length === 0 && !loading && <p className="muted">No tasks yet.</p>}
      <ul className="history-list" data-testid="history">
        {items.map((item) => (
          <li key={item.task_id}>
            <button
              type="button"
              className={`history-item${item.stream_id === currentStreamId ? " current" : ""}`}
              onClick={() => onOpen(item)}
              aria-current={item.stream_id === currentStreamId ? "true" : undefined}
              data-testid="history-item"
              data-stream-id={item.stream_id}
            >
              <span className="history-task">{item.task}</span>
              <span className="history-meta">
                <span className={`status status-${item.status}`}>{item.status}</span>
                <span>{formatDate(item.created_at)}</span>
                <span>{formatUsd(item.cost_usd)}</span>
              </span>
            </button>
          </li>
        ))}
      </ul>
      {items.length < total && (
        <button type="button" className="secondary small" onClick={() => void load(items.length)} disabled={loading}>
          Show more
        </button>
      )}
    </section>
  );
}
