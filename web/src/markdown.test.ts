import { describe, expect, it } from "vitest";

import { describeHit } from "./components/CacheBadge";
import { groupLanes } from "./components/Debate";
import { splitList } from "./components/TaskForm";
import { formatSeconds, formatUsd } from "./format";
import { languageFor, renderMarkdown, safeUrl } from "./markdown";
import type { Lane } from "./streamState";

describe("renderMarkdown", () => {
  it("shows raw HTML as text", () => {
    const html = renderMarkdown('Hi <script>alert(1)</script> <img src=x onerror="alert(1)">');
    expect(html).not.toContain("<script");
    expect(html).not.toContain("<img");
    expect(html).toContain("&lt;script&gt;");
  });

  it("drops javascript: links and keeps safe ones", () => {
    const html = renderMarkdown("[bad](javascript:alert(1)) [good](https://example.com/a) [rel](docs/x.md)");
    expect(html).not.toContain("javascript:");
    expect(html).toContain('href="https://example.com/a"');
    expect(html).toContain('href="docs/x.md"');
    expect(safeUrl("data:text/html,x")).toBeNull();
  });

  it("highlights fenced code and labels it with its path", () => {
    const html = renderMarkdown("```python path=pkg/a.py\ndef f():\n    return 1\n```\n");
    expect(html).toContain('<div class="code-label">pkg/a.py</div>');
    expect(html).toContain("language-python");
    expect(html).toContain('<span class="hljs-keyword">def</span>');
  });

  it("finds a language from the fence or the file name", () => {
    expect(languageFor("ts")).toBe("ts"); // an alias highlight.js knows
    expect(languageFor("", "app/main.py")).toBe("python");
    expect(languageFor("", "Dockerfile")).toBe("dockerfile");
    expect(languageFor("", "notes.unknownext")).toBeNull();
  });
});

describe("display helpers", () => {
  it("formats money and time", () => {
    expect(formatUsd(null)).toBe("unknown");
    expect(formatUsd(0.00261)).toBe("$0.00261");
    expect(formatUsd(0.08)).toBe("$0.080");
    expect(formatSeconds(4.12)).toBe("4.1 s");
    expect(formatSeconds(125)).toBe("2 min 05 s");
  });

  it("describes a cache hit", () => {
    expect(describeHit({ message: null, similarity: 0.94, savedUsd: 0.08, savedS: 4.1 })).toBe(
      "Cache hit · 94% match · saved $0.080, ~4.1 s",
    );
  });

  it("splits frameworks", () => {
    expect(splitList(" fastapi, ,sqlalchemy ")).toEqual(["fastapi", "sqlalchemy"]);
  });

  it("groups concurrent coders into one row", () => {
    const lane = (chunkId: string, role: string) => ({ chunkId, role }) as Lane;
    const groups = groupLanes([lane("architect", "architect"), lane("c1", "coder"), lane("c2", "coder"), lane("review", "reviewer")]);
    expect(groups.map((g) => [g.role, g.lanes.length])).toEqual([["architect", 1], ["coder", 2], ["reviewer", 1]]);
  });
});
