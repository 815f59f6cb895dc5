import { type FormEvent, useId, useState } from "react";

import type { CacheMode, TaskRequest, Verbosity, Workflow } from "../protocol";

interface Props {
  disabled: boolean;
  onSubmit: (request: TaskRequest) => void;
}

const LANGUAGES = ["python", "typescript", "javascript", "go", "rust", "java", "kotlin", "c#", "ruby", "php"];

export function splitList(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

/** The task and its context; builds the body of POST /api/stream/task. */
export function TaskForm({ disabled, onSubmit }: Props) {
  const id = useId();
  const [task, setTask] = useState("");
  const [language, setLanguage] = useState("");
  const [frameworks, setFrameworks] = useState("");
  const [teamSize, setTeamSize] = useState("");
  const [workflow, setWorkflow] = useState<Workflow>("sequential");
  const [verbosity, setVerbosity] = useState<Verbosity>("filtered");
  const [cache, setCache] = useState<CacheMode>("use");
  const [problem, setProblem] = useState<string | null>(null);

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!task.trim()) {
      setProblem("Describe the task first.");
      document.getElementById(`${id}-task`)?.focus();
      return;
    }
    const size = teamSize.trim() ? Number(teamSize) : null;
    if (size !== null && (!Number.isInteger(size) || size < 1)) {
      setProblem("Team size is a whole number of people, 1 or more.");
      document.getElementById(`${id}-team`)?.focus();
      return;
    }
    setProblem(null);
    const context: TaskRequest["context"] = {};
    if (language.trim()) context.preferred_language = language.trim();
    const list = splitList(frameworks);
    if (list.length) context.frameworks = list;
    if (size !== null) context.team_size = size;
    onSubmit({ task: task.trim(), context, workflow, verbosity, cache });
  }

  return (
    <form className="card task-form" onSubmit={submit} aria-labelledby={`${id}-title`} noValidate>
      <h2 id={`${id}-title`}>New task</h2>
      <label htmlFor={`${id}-task`}>Task</label>
      <textarea
        id={`${id}-task`}
        name="task"
        rows={4}
        required
        value={task}
        onChange={(e) => setTask(e.target.value)}
        placeholder="Build a REST API with JWT authentication"
        aria-invalid={problem && !task.trim() ? true : undefined}
      />
      <fieldset>
        <legend>Context</legend>
        <div className="grid-2">
          <div>
            <label htmlFor={`${id}-lang`}>Language</label>
            <input
              id={`${id}-lang`}
              name="language"
              list={`${id}-langs`}
              value={language}
              onChange={(e) => setLanguage(e.target.value)}
              placeholder="python"
              autoComplete="off"
            />
            <datalist id={`${id}-langs`}>
              {LANGUAGES.map((l) => (
                <option key={l} value={l} />
              ))}
            </datalist>
          </div>
          <div>
            <label htmlFor={`${id}-team`}>Team size</label>
            <input
              id={`${id}-team`}
              name="team-size"
              type="number"
              inputMode="numeric"
              min={1}
              step={1}
              value={teamSize}
              onChange={(e) => setTeamSize(e.target.value)}
              placeholder="3"
            />
          </div>
        </div>
        <label htmlFor={`${id}-fw`}>Frameworks</label>
        <input
          id={`${id}-fw`}
          name="frameworks"
          value={frameworks}
          onChange={(e) => setFrameworks(e.target.value)}
          placeholder="fastapi, sqlalchemy"
          aria-describedby={`${id}-fw-hint`}
          autoComplete="off"
        />
        <p id={`${id}-fw-hint`} className="hint">
          Separate with commas.
        </p>
      </fieldset>
      <div className="grid-2">
        <div>
          <label htmlFor={`${id}-wf`}>Workflow</label>
          <select id={`${id}-wf`} name="workflow" aria-describedby={`${id}-wf-hint`} value={workflow} onChange={(e) => setWorkflow(e.target.value as Workflow)}>
            <option value="sequential">Sequential</option>
            <option value="council">Council</option>
          </select>
          <p id={`${id}-wf-hint`} className="hint">
            {workflow === "council"
              ? "Several models answer, rank each other blind, a chairman writes the answer."
              : "Architect → coders → reviewer → docs."}
          </p>
        </div>
        <div>
          <label htmlFor={`${id}-cache`}>Cache</label>
          <select id={`${id}-cache`} name="cache" aria-describedby={`${id}-cache-hint`} value={cache} onChange={(e) => setCache(e.target.value as CacheMode)}>
            <option value="use">Use</option>
            <option value="refresh">Refresh</option>
            <option value="off">Off</option>
          </select>
          <p id={`${id}-cache-hint`} className="hint">
            {cache === "use" ? "Same task, same context: answered at once." : cache === "refresh" ? "Run again and store the new result." : "Neither read nor stored."}
          </p>
        </div>
      </div>
      <fieldset className="inline">
        <legend>Verbosity</legend>
        <label className="check">
          <input
            type="radio"
            name="verbosity"
            value="filtered"
            checked={verbosity === "filtered"}
            onChange={() => setVerbosity("filtered")}
          />
          Whole lines
        </label>
        <label className="check">
          <input
            type="radio"
            name="verbosity"
            value="full"
            checked={verbosity === "full"}
            onChange={() => setVerbosity("full")}
          />
          Every token
        </label>
      </fieldset>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      <button type="submit" disabled={disabled}>
        Run task
      </button>
    </form>
  );
}
