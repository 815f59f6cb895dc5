import { useCallback, useEffect, useState } from "react";

import { Debate } from "./components/Debate";
import { History } from "./components/History";
import { KeyForm } from "./components/KeyForm";
import { PlanList } from "./components/PlanList";
import { Result } from "./components/Result";
import { RunHeader } from "./components/RunHeader";
import { TaskForm } from "./components/TaskForm";
import { forgetKey, loadKey, maskKey, saveKey } from "./keyStore";
import type { TaskRequest, TaskSummary } from "./protocol";
import type { StreamError } from "./streamController";
import { isFinished } from "./streamState";
import { useCollaborativeStream } from "./useCollaborativeStream";

declare global {
  interface Window {
    /** For manual and end-to-end testing: simulate a dropped connection. */
    __facilitair?: { dropConnection: () => void };
  }
}

export function App() {
  const [stored, setStored] = useState(loadKey);
  const [editingKey, setEditingKey] = useState(false);
  const [keyProblem, setKeyProblem] = useState<string | null>(null);
  const apiKey = stored?.key ?? "";
  const stream = useCollaborativeStream({ apiKey });
  const [focusRun, setFocusRun] = useState(0);

  useEffect(() => {
    window.__facilitair = { dropConnection: stream.dropConnection };
    return () => {
      delete window.__facilitair;
    };
  }, [stream.dropConnection]);

  useEffect(() => {
    if (focusRun) document.getElementById("run-title")?.focus();
  }, [focusRun]);

  const onUnauthorized = useCallback((message: string) => setKeyProblem(message), []);

  function onSaveKey(key: string, remember: boolean) {
    saveKey(key, remember);
    setStored({ key, remembered: remember });
    setEditingKey(false);
    setKeyProblem(null);
    if (stream.error?.status === 401) stream.reset();
  }

  function onForgetKey() {
    stream.reset();
    forgetKey();
    setStored(null);
    setEditingKey(false);
  }

  async function onSubmit(request: TaskRequest) {
    setFocusRun((n) => n + 1);
    await stream.start(request);
  }

  function onOpen(item: TaskSummary) {
    stream.attach(item.stream_id, item.task_id);
    setFocusRun((n) => n + 1);
  }

  const unauthorized = stream.error?.status === 401;
  const authProblem = keyProblem ?? (unauthorized ? stream.error?.message ?? null : null);
  const needKey = !stored || editingKey;
  const showRun = stream.status !== "idle";
  // An error that is not about the key: shown with the run, or alone when no run began.
  const runError = stream.error && !unauthorized ? stream.error : null;

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <h1>Facilitair</h1>
        <p className="tagline">Watch a team of LLM agents build software together.</p>
        {stored && !editingKey && (
          <div className="row key-status">
            <span className="muted">
              Key <code>{maskKey(stored.key)}</code>
              {stored.remembered ? " (remembered)" : " (this tab)"}
            </span>
            <button type="button" className="secondary small" onClick={() => setEditingKey(true)}>
              Change key
            </button>
            <button type="button" className="secondary small" onClick={onForgetKey}>
              Forget key
            </button>
          </div>
        )}
      </header>
      <main id="main">
        {needKey ? (
          <KeyForm
            initialRemember={stored?.remembered ?? true}
            onSave={onSaveKey}
            onCancel={stored ? () => setEditingKey(false) : undefined}
            problem={keyProblem}
          />
        ) : (
          <>
            {authProblem && (
              <div className="card error-banner auth" role="alert" data-testid="error" data-code="unauthorized">
                <p>
                  <strong>{authProblem}</strong> Requests with this key are refused: enter a valid key to go on.
                </p>
                <button type="button" onClick={() => setEditingKey(true)}>
                  Change key
                </button>
              </div>
            )}
            <div className="layout">
              <div className="side-form">
                <TaskForm disabled={stream.isStreaming} onSubmit={(r) => void onSubmit(r)} />
              </div>
              <div className="side-history">
                <History
                  apiKey={apiKey}
                  refreshToken={`${stream.streamId ?? ""}:${stream.status}`}
                  currentStreamId={stream.streamId}
                  onOpen={onOpen}
                  onUnauthorized={onUnauthorized}
                />
              </div>
              <div className="run">
                {!showRun && runError && <ErrorCard error={runError} onResume={stream.resume} />}
                {!showRun && !runError && (
                  <section className="card empty">
                    <h2 id="run-title" tabIndex={-1}>
                      No run yet
                    </h2>
                    <p className="muted">
                      Describe a task and press <strong>Run task</strong>: the Architect plans it, Coders write the
                      chunks side by side, the Reviewer checks them and the Documenter writes the README — live.
                    </p>
                  </section>
                )}
                {showRun && (
                  <div
                    className="run-view"
                    data-testid="run"
                    data-stream-id={stream.streamId ?? ""}
                    data-last-event-id={stream.lastEventId}
                    data-duplicates-ignored={stream.duplicatesIgnored}
                    data-reconnects={stream.reconnects}
                    data-connection={stream.connection}
                  >
                    <RunHeader stream={stream} headingId="run-title" />
                    {runError && <ErrorCard error={runError} onResume={stream.resume} />}
                    {stream.status === "cancelled" && (
                      <p className="card notice" data-testid="cancelled">
                        Cancelled{stream.cancelReason ? `: ${stream.cancelReason}` : ""}. Partial output is kept below.
                      </p>
                    )}
                    <PlanList plan={stream.plan} lanes={stream.lanes} />
                    <Debate messages={stream.messages} ended={isFinished(stream.status)} />
                    {stream.finalResult && <Result result={stream.finalResult} />}
                  </div>
                )}
              </div>
            </div>
          </>
        )}
      </main>
      <footer className="footer muted">
        <a href="/docs">API docs</a>
      </footer>
    </>
  );
}

function ErrorCard({ error, onResume }: { error: StreamError; onResume: () => void }) {
  return (
    <div className="card error-banner" role="alert" data-testid="error" data-code={error.code}>
      <p>
        <strong>{error.source === "task" ? "The task failed: " : "Error: "}</strong>
        {error.message}
      </p>
      {error.code === "connection_lost" && (
        <button type="button" onClick={onResume}>
          Reconnect
        </button>
      )}
    </div>
  );
}
