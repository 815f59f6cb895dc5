import { useMemo, useState } from "react";

import { basename, formatCount, formatSeconds, formatUsd } from "../format";
import { highlight, languageFor, renderMarkdown } from "../markdown";
import type { Artifact, Consensus, TaskResult } from "../protocol";

async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back below
  }
  // Plain http on another host has no clipboard API: the old way still works.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

export function downloadText(path: string, text: string): void {
  const blob = new Blob([text], { type: "text/plain;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = basename(path);
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function FileView({ file }: { file: Artifact }) {
  const [copied, setCopied] = useState<string | null>(null);
  const language = languageFor(file.language, file.path);
  const html = useMemo(() => highlight(file.content, language), [file.content, language]);
  const id = `file-${file.path.replace(/[^a-zA-Z0-9_-]/g, "-")}`;

  async function copy() {
    const ok = await copyText(file.content);
    setCopied(ok ? "Copied" : "Copy failed: select the text instead");
    setTimeout(() => setCopied(null), 2000);
  }

  return (
    <section className="file" aria-labelledby={id} data-testid="file" data-path={file.path}>
      <header className="file-head">
        <h4 id={id}>
          <code>{file.path}</code>
        </h4>
        <span className="badge">{file.language || language || "text"}</span>
        <div className="row">
          <button type="button" className="secondary small" onClick={() => void copy()} data-testid="copy" aria-label={`Copy ${file.path}`}>
            Copy
          </button>
          <button
            type="button"
            className="secondary small"
            onClick={() => downloadText(file.path, file.content)}
            data-testid="download"
            aria-label={`Download ${file.path}`}
          >
            Download
          </button>
          <span className="copied" role="status" aria-live="polite">
            {copied}
          </span>
        </div>
      </header>
      <pre className="file-code" tabIndex={0} aria-label={`Contents of ${file.path}`}>
        <code className={`hljs${language ? ` language-${language}` : ""}`} dangerouslySetInnerHTML={{ __html: html }} />
      </pre>
    </section>
  );
}

/** The council's ranking: members by mean rank (1 is best), agreement, and the dissent. */
export function Ranking({ consensus }: { consensus: Consensus }) {
  return (
    <div className="ranking" data-testid="ranking">
      <h3>Council ranking</h3>
      <table>
        <thead>
          <tr>
            <th scope="col">Place</th>
            <th scope="col">Member</th>
            <th scope="col">Model</th>
            <th scope="col">Mean rank</th>
          </tr>
        </thead>
        <tbody>
          {consensus.ranking.map((row, n) => (
            <tr key={row.member} data-testid="ranking-row">
              <td>{n + 1}</td>
              <td>{row.member}</td>
              <td>
                <code>{row.model}</code>
              </td>
              <td>{row.mean_rank.toFixed(2)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted" data-testid="agreement">
        Agreement (Kendall&apos;s W): {consensus.agreement === null ? "n/a" : consensus.agreement.toFixed(2)}
        {consensus.dissent && ` · dissent: ${consensus.dissent.member}`}
      </p>
    </div>
  );
}

/** The final result: rendered Markdown, the metrics, then every file with copy and download. */
export function Result({ result }: { result: TaskResult }) {
  const html = useMemo(() => renderMarkdown(result.content || ""), [result.content]);
  const m = result.metrics;
  return (
    <section className="result card" aria-labelledby="result-title" data-testid="result">
      <h2 id="result-title">Result</h2>
      {m && (
        <p className="muted" data-testid="result-metrics">
          {formatSeconds(m.duration_s)} · {formatCount(m.llm_calls)} LLM calls · {formatCount(m.prompt_tokens)} in /{" "}
          {formatCount(m.completion_tokens)} out · {formatUsd(m.cost_usd)}
          {m.iterations > 1 && ` · ${m.iterations} review rounds`}
        </p>
      )}
      {m?.consensus && <Ranking consensus={m.consensus} />}
      {result.artifacts.length > 0 && (
        <div className="files" aria-label="Files">
          <h3>Files ({result.artifacts.length})</h3>
          {result.artifacts.map((file) => (
            <FileView key={file.path} file={file} />
          ))}
        </div>
      )}
      <details className="summary" open>
        <summary>Full write-up</summary>
        <div className="markdown" data-testid="result-markdown" dangerouslySetInnerHTML={{ __html: html }} />
      </details>
    </section>
  );
}
