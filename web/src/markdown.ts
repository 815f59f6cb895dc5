/**
 * Markdown to safe HTML (marked) with syntax highlighting (highlight.js core + a few languages).
 *
 * The Markdown comes from LLMs, so it is untrusted: raw HTML is shown as text, never parsed,
 * and links keep only http(s), mailto and relative targets. The page's CSP (no inline scripts)
 * is a second line of defence.
 */

import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import dockerfile from "highlight.js/lib/languages/dockerfile";
import go from "highlight.js/lib/languages/go";
import ini from "highlight.js/lib/languages/ini";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import markdown from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import { Marked, type Tokens } from "marked";

const LANGUAGES = {
  bash, css, dockerfile, go, ini, java, javascript, json, markdown, python, rust, sql,
  typescript, xml, yaml,
};
for (const [name, language] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, language);
hljs.registerAliases(["sh", "shell", "zsh", "console"], { languageName: "bash" });
hljs.registerAliases(["toml", "cfg", "conf"], { languageName: "ini" });
hljs.registerAliases(["js", "jsx", "mjs", "cjs"], { languageName: "javascript" });
hljs.registerAliases(["ts", "tsx"], { languageName: "typescript" });
hljs.registerAliases(["py"], { languageName: "python" });
hljs.registerAliases(["html", "svg"], { languageName: "xml" });
hljs.registerAliases(["yml"], { languageName: "yaml" });
hljs.registerAliases(["md"], { languageName: "markdown" });

const EXTENSIONS: Record<string, string> = {
  py: "python", js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript",
  ts: "typescript", tsx: "typescript", json: "json", sh: "bash", bash: "bash", css: "css",
  html: "xml", xml: "xml", svg: "xml", md: "markdown", yml: "yaml", yaml: "yaml", toml: "ini",
  ini: "ini", cfg: "ini", sql: "sql", go: "go", rs: "rust", java: "java",
};

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** The highlight.js language for a fence's info string or a file's path, if known. */
export function languageFor(lang: string | undefined, path?: string): string | null {
  const word = (lang ?? "").trim().split(/\s+/)[0]?.toLowerCase() ?? "";
  if (word && hljs.getLanguage(word)) return word;
  const ext = path?.split(".").pop()?.toLowerCase();
  if (ext && EXTENSIONS[ext]) return EXTENSIONS[ext];
  if (path && /(^|\/)Dockerfile$/.test(path)) return "dockerfile";
  return null;
}

/** Highlighted HTML of some code (escaped as plain text when the language is unknown). */
export function highlight(code: string, lang: string | null): string {
  if (lang && hljs.getLanguage(lang)) {
    try {
      return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    } catch {
      // fall through to plain text
    }
  }
  return escapeHtml(code);
}

const SAFE_URL = /^(https?:|mailto:|#|\/(?!\/)|\.{0,2}\/|[^:/?#]+($|[/?#]))/i;

export function safeUrl(href: string | null | undefined): string | null {
  if (!href) return null;
  const trimmed = href.trim();
  return SAFE_URL.test(trimmed) ? trimmed : null;
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html({ text }: Tokens.HTML | Tokens.Tag): string {
      return escapeHtml(text);
    },
    code({ text, lang }: Tokens.Code): string {
      const info = (lang ?? "").trim();
      const pathMatch = /(?:^|\s)path=(\S+)/.exec(info);
      const path = pathMatch?.[1];
      const language = languageFor(info, path);
      const label = path ?? (info.split(/\s+/)[0] || "");
      const header = label ? `<div class="code-label">${escapeHtml(label)}</div>` : "";
      const cls = language ? ` class="hljs language-${escapeHtml(language)}"` : ` class="hljs"`;
      return `<figure class="code-block">${header}<pre><code${cls}>${highlight(text, language)}</code></pre></figure>\n`;
    },
    link({ href, title, tokens }: Tokens.Link): string {
      const inner = this.parser.parseInline(tokens);
      const url = safeUrl(href);
      if (!url) return inner;
      const titleAttr = title ? ` title="${escapeHtml(title)}"` : "";
      return `<a href="${escapeHtml(url)}"${titleAttr} rel="noopener noreferrer nofollow" target="_blank">${inner}</a>`;
    },
    image({ href, text }: Tokens.Image): string {
      // Remote images are blocked by the CSP anyway: show the alt text as a link.
      const url = safeUrl(href);
      const alt = escapeHtml(text || href || "image");
      return url ? `<a href="${escapeHtml(url)}" rel="noopener noreferrer nofollow" target="_blank">[${alt}]</a>` : `[${alt}]`;
    },
  },
});

/** Markdown → HTML that is safe to insert. */
export function renderMarkdown(source: string): string {
  return marked.parse(source, { async: false });
}
