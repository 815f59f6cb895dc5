import { useLayoutEffect, useRef } from "react";

import { formatCount, formatSeconds, formatUsd } from "../format";
import type { TestCounts } from "../protocol";
import type { Lane, SystemNote, StreamMessage } from "../streamState";

const ROLE_TITLES: Record<string, string> = {
  architect: "Architect",
  coder: "Coders",
  reviewer: "Reviewer",
  documenter: "Documenter",
};

/** Lanes grouped by role, in the order roles first spoke; concurrent coders share one row. */
export function groupLanes(lanes: Lane[]): { role: string; lanes: Lane[] }[] {
  const groups: { role: string; lanes: Lane[] }[] = [];
  for (const lane of lanes) {
    const group = groups.find((g) => g.role === lane.role);
    if (group) group.lanes.push(lane);
    else groups.push({ role: lane.role, lanes: [lane] });
  }
  return groups;
}

function LaneView({ lane, ended }: { lane: Lane; ended: boolean }) {
  const textRef = useRef<HTMLPreElement>(null);
  const stick = useRef(true);

  useLayoutEffect(() => {
    const el = textRef.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lane.text]);

  const titleId = `lane-${lane.chunkId}`;
  return (
    <article
      className={`lane role-${lane.role}${lane.done ? " done" : " live"}`}
      aria-labelledby={titleId}
      aria-busy={!lane.done && !ended}
      data-testid="lane"
      data-chunk-id={lane.chunkId}
      data-role={lane.role}
      data-done={lane.done ? "true" : "false"}
      data-repaired={lane.repaired ? "true" : "false"}
      data-iteration={lane.iteration}
    >
      <header className="lane-head">
        <h4 id={titleId}>{lane.agent || lane.chunkId}</h4>
        <span className={`badge role role-${lane.role}`}>{lane.role}</span>
        {lane.model && (
          <span className="badge model" title="Model">
            {lane.model}
          </span>
        )}
        {lane.iteration > 1 && <span className="badge">revision {lane.iteration}</span>}
        {lane.attempt > 1 && <span className="badge warn">attempt {lane.attempt}</span>}
        {lane.tests && <TestsBadge tests={lane.tests} />}
      </header>
      {lane.description && <p className="lane-desc">{lane.description}</p>}
      <pre
        ref={textRef}
        className="lane-text"
        data-testid="lane-text"
        tabIndex={0}
        aria-label={`${lane.agent || lane.chunkId} output`}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {lane.text}
        {!lane.done && !ended && <span className="cursor" aria-hidden="true">▍</span>}
      </pre>
      <footer className="lane-foot muted">
        {lane.done ? (
          <>
            done
            {lane.durationS !== null && ` in ${formatSeconds(lane.durationS)}`}
            {lane.usage && ` · ${formatCount(lane.usage.completion_tokens)} tokens`}
            {` · ${formatUsd(lane.costUsd)}`}
          </>
        ) : ended ? (
          "stopped before the end of its turn"
        ) : (
          "writing…"
        )}
      </footer>
    </article>
  );
}

function TestsBadge({ tests }: { tests: TestCounts }) {
  const failing = tests.failed + tests.errors;
  const parts = [`${tests.passed} passed`];
  if (tests.failed) parts.push(`${tests.failed} failed`);
  if (tests.errors) parts.push(`${tests.errors} errors`);
  return (
    <span className={`badge ${failing ? "warn" : "ok"}`} data-testid="tests-badge">
      tests: {parts.join(", ")}
    </span>
  );
}

function Notes({ notes }: { notes: SystemNote[] }) {
  if (!notes.length) return null;
  return (
    <ul className="notes" aria-label="System messages" data-testid="system-messages">
      {notes.map((note) => (
        <li key={note.seq} className={`note ${note.level}`} data-kind={note.kind}>
          <span className="badge">{note.kind.replace(/_/g, " ")}</span> {note.message}
        </li>
      ))}
    </ul>
  );
}

/** `ended`: the run is over, so a lane still open was cut short (cancel, failure). */
export function Debate({ messages, ended }: { messages: StreamMessage[]; ended: boolean }) {
  const lanes = messages.filter((m): m is Lane => m.type === "agent");
  const notes = messages.filter((m): m is SystemNote => m.type === "system");
  const groups = groupLanes(lanes);
  return (
    <section className="debate" aria-label="Live debate">
      <Notes notes={notes} />
      {groups.map((group) => (
        <div className="lane-group" key={group.role}>
          <h3 className="group-title">{ROLE_TITLES[group.role] ?? group.role}</h3>
          <div className={`lanes${group.lanes.length > 1 ? " multi" : ""}`}>
            {group.lanes.map((lane) => (
              <LaneView key={lane.chunkId} lane={lane} ended={ended} />
            ))}
          </div>
        </div>
      ))}
    </section>
  );
}
