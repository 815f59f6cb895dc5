#!/usr/bin/env node
/**
 * End-to-end scenarios of the web UI: Debian's Chromium (driven by playwright-core) against a
 * real Facilitair server that serves web/dist.
 *
 *   BASE_URL=http://127.0.0.1:8000 API_KEY=fac_… SCENARIO=happy node e2e/run.mjs
 *
 * Environment:
 *   BASE_URL        the server (required)
 *   API_KEY         the key to enter (for wrong_key: a wrong one)
 *   SCENARIO        happy | cancel | drop | wrong_key | cache
 *   SCREENSHOT_DIR  where PNGs go (default ../artifacts/screenshots)
 *   TASK            the task text (default: a small one)
 *   CHROMIUM        the browser (default /usr/bin/chromium)
 *   DROP_AFTER_TOKENS  drop: cut the first event stream after this many token events of
 *                   DROP_CHUNK (default 3 of "c1": in the middle of a coder's turn)
 *   REWIND          drop: on the reconnect, ask the server for this many events before the ones
 *                   the page asked for, so it must ignore repeats (default 3)
 *   TIMEOUT_MS      per wait (default 60000)
 *
 * Every request goes through a small local proxy that records it (to check that no key ever
 * appears in a URL) and, in the drop scenario, cuts the event stream's TCP connection in the
 * middle of a run, just as a flaky network would.
 *
 * Prints one JSON object on the last line of stdout; exit code 0 when the scenario's own checks
 * passed, 1 when one failed (its message is in the JSON's "error"), 2 on bad usage.
 */

import { mkdir, mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const BASE_URL = env.BASE_URL;
const API_KEY = env.API_KEY ?? "";
const SCENARIO = env.SCENARIO ?? "happy";
const SCREENSHOT_DIR = resolve(env.SCREENSHOT_DIR ?? join(here, "..", "..", "artifacts", "screenshots"));
const TASK = env.TASK ?? "Build a tiny key-value store with a CLI";
const CHROMIUM = env.CHROMIUM ?? "/usr/bin/chromium";
const TIMEOUT = Number(env.TIMEOUT_MS ?? 60000);
const DROP_AFTER_TOKENS = Number(env.DROP_AFTER_TOKENS ?? 3);
const DROP_CHUNK = env.DROP_CHUNK ?? "c1";
const REWIND = Number(env.REWIND ?? 3);

const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

// --- the recording proxy ------------------------------------------------------------------

function startProxy(target, { dropAfterTokens = 0, dropChunk = "c1", rewind = 0 } = {}) {
  const upstreamUrl = new URL(target);
  const log = [];
  let eventConnections = 0;
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://proxy");
    const isEvents = url.pathname.startsWith("/api/stream/events/");
    const entry = {
      method: req.method,
      path: url.pathname,
      params: Object.fromEntries([...url.searchParams].map(([k, v]) => [k, k === "ticket" ? "…" : v])),
      keyHeader: Boolean(req.headers["x-api-key"]),
      keyInUrl: API_KEY.length > 0 && decodeURIComponent(req.url).includes(API_KEY),
    };
    log.push(entry);
    let path = req.url;
    let connection = 0;
    if (isEvents) {
      eventConnections += 1;
      connection = eventConnections;
      entry.connection = connection;
      const asked = Number(url.searchParams.get("last_event_id") ?? 0);
      if (rewind > 0 && connection > 1 && asked > 0) {
        // Ask the server for events the page already has: it must ignore them.
        url.searchParams.set("last_event_id", String(Math.max(0, asked - rewind)));
        path = `${url.pathname}?${url.searchParams}`;
        entry.rewoundTo = Math.max(0, asked - rewind);
      }
    }
    const headers = { ...req.headers, host: upstreamUrl.host };
    const upstream = http.request(
      { host: upstreamUrl.hostname, port: upstreamUrl.port, method: req.method, path, headers },
      (up) => {
        entry.status = up.statusCode;
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (isEvents && dropAfterTokens > 0 && connection === 1) {
          // Count the token events of one chunk (whole events only: a TCP chunk may end
          // mid-event), then cut the connection mid-stream.
          let tokens = 0;
          let pending = "";
          up.on("data", (chunk) => {
            if (res.destroyed) return;
            res.write(chunk);
            pending += chunk.toString("utf8");
            const events = pending.split(/\r?\n\r?\n/);
            pending = events.pop() ?? "";
            for (const event of events) {
              if (/^event: token_stream\r?$/m.test(event) && event.includes(`"chunk_id":"${dropChunk}"`)) tokens += 1;
            }
            if (tokens >= dropAfterTokens) {
              entry.droppedAfterTokens = tokens;
              entry.droppedInChunk = dropChunk;
              // A dropped connection: the TCP socket goes away, no clean end of the stream.
              res.socket?.destroy();
              up.destroy();
            }
          });
          up.on("end", () => res.end());
        } else {
          up.pipe(res);
        }
      },
    );
    upstream.on("error", () => res.destroy());
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  return new Promise((resolveStart) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolveStart({
        url: `http://127.0.0.1:${port}`,
        log,
        close: () =>
          new Promise((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

// --- page helpers -------------------------------------------------------------------------

async function shot(page, name, options = {}) {
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true, ...options });
  return path;
}

async function enterKey(page, key) {
  const input = page.getByLabel("API key", { exact: true });
  await input.waitFor({ timeout: TIMEOUT });
  await input.fill(key);
  await page.getByRole("button", { name: "Save key" }).click();
}

async function submitTask(page, { task = TASK, language = "python", frameworks = "fastapi, pydantic", teamSize = "3", workflow = "sequential" } = {}) {
  await page.getByLabel("Task", { exact: true }).fill(task);
  await page.getByLabel("Language").fill(language);
  await page.getByLabel("Frameworks").fill(frameworks);
  await page.getByLabel("Team size").fill(teamSize);
  await page.getByLabel("Workflow").selectOption(workflow);
  await page.getByRole("button", { name: "Run task" }).click();
}

function status(page) {
  return page.locator('[data-testid="run-status"]').getAttribute("data-status");
}

async function waitStatus(page, wanted, timeout = TIMEOUT) {
  const list = Array.isArray(wanted) ? wanted : [wanted];
  await page.waitForFunction(
    (values) => values.includes(document.querySelector('[data-testid="run-status"]')?.getAttribute("data-status")),
    list,
    { timeout, polling: 50 },
  );
  return status(page);
}

/** Waits until some lane shows text while the run is still going; returns what was seen then. */
async function waitForLiveTokens(page) {
  const handle = await page.waitForFunction(
    () => {
      const state = document.querySelector('[data-testid="run-status"]')?.getAttribute("data-status");
      if (state !== "running") return null;
      for (const lane of document.querySelectorAll('[data-testid="lane"]')) {
        const text = lane.querySelector('[data-testid="lane-text"]')?.textContent?.replace("▍", "") ?? "";
        if (text.trim() && lane.getAttribute("data-done") === "false") {
          return { status: state, chunkId: lane.getAttribute("data-chunk-id"), role: lane.getAttribute("data-role"), text };
        }
      }
      return null;
    },
    undefined,
    { timeout: TIMEOUT, polling: 20 },
  );
  return handle.jsonValue();
}

function lanes(page) {
  return page.$$eval('[data-testid="lane"]', (nodes) =>
    nodes.map((lane) => ({
      chunkId: lane.getAttribute("data-chunk-id"),
      role: lane.getAttribute("data-role"),
      done: lane.getAttribute("data-done") === "true",
      repaired: lane.getAttribute("data-repaired") === "true",
      iteration: Number(lane.getAttribute("data-iteration")),
      text: lane.querySelector('[data-testid="lane-text"]')?.textContent ?? "",
      box: (({ x, y, width }) => ({ x, y, width }))(lane.getBoundingClientRect()),
    })),
  );
}

function runInfo(page) {
  return page.$eval('[data-testid="run"]', (run) => ({
    streamId: run.getAttribute("data-stream-id"),
    lastEventId: Number(run.getAttribute("data-last-event-id")),
    duplicatesIgnored: Number(run.getAttribute("data-duplicates-ignored")),
    reconnects: Number(run.getAttribute("data-reconnects")),
    connection: run.getAttribute("data-connection"),
    header: {
      progress: document.querySelector('[data-testid="progress"]')?.textContent ?? "",
      elapsed: document.querySelector('[data-testid="elapsed"]')?.textContent ?? "",
      cost: document.querySelector('[data-testid="cost"]')?.textContent ?? "",
      tokens: document.querySelector('[data-testid="tokens"]')?.textContent ?? "",
    },
  }));
}

async function files(page) {
  return page.$$eval('[data-testid="file"]', (nodes) =>
    nodes.map((file) => ({
      path: file.getAttribute("data-path"),
      hasCopy: Boolean(file.querySelector('[data-testid="copy"]')),
      hasDownload: Boolean(file.querySelector('[data-testid="download"]')),
      highlighted: file.querySelectorAll("code.hljs span").length > 0,
    })),
  );
}

// --- scenarios ----------------------------------------------------------------------------

const scenarios = {
  async happy({ page, context, origin, out }) {
    await enterKey(page, API_KEY);
    await submitTask(page);
    out.live = await waitForLiveTokens(page);
    out.screenshots.push(await shot(page, "happy-1-streaming"));
    out.finalStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    check(out.finalStatus === "completed", `the run ended ${out.finalStatus}`);
    await page.locator('[data-testid="file"]').first().waitFor({ timeout: TIMEOUT });
    out.files = await files(page);
    out.lanes = await lanes(page);
    out.run = await runInfo(page);
    check(out.files.length > 0 && out.files.every((f) => f.hasCopy && f.hasDownload), "every file has copy and download");

    // Copy and download the first file.
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
    const first = page.locator('[data-testid="file"]').first();
    await first.locator('[data-testid="copy"]').click();
    await first.getByText("Copied").waitFor({ timeout: 5000 });
    out.clipboard = await page.evaluate(() => navigator.clipboard.readText());
    const [download] = await Promise.all([
      page.waitForEvent("download", { timeout: 10000 }),
      first.locator('[data-testid="download"]').click(),
    ]);
    out.download = download.suggestedFilename();
    out.screenshots.push(await shot(page, "happy-2-completed"));

    // Phone width: one column, lanes stacked, nothing wider than the screen.
    await page.setViewportSize({ width: 375, height: 812 });
    await page.waitForTimeout(200);
    out.phone = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
    }));
    out.phoneLanes = (await lanes(page)).map(({ chunkId, box }) => ({ chunkId, box }));
    out.screenshots.push(await shot(page, "happy-3-phone-full"));
    await page.locator('[data-testid="lane"][data-chunk-id="c1"]').scrollIntoViewIfNeeded();
    out.screenshots.push(await shot(page, "happy-3-phone-lanes", { fullPage: false }));
    await page.setViewportSize({ width: 1280, height: 900 });

    // History: reload (the key is remembered), re-open the run: it is replayed.
    await page.reload();
    const item = page.locator(`[data-testid="history-item"][data-stream-id="${out.run.streamId}"]`);
    await item.waitFor({ timeout: TIMEOUT });
    await item.click();
    out.replayStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    await page.locator('[data-testid="file"]').first().waitFor({ timeout: TIMEOUT });
    out.replayLanes = (await lanes(page)).map(({ chunkId, text }) => ({ chunkId, text }));
    out.screenshots.push(await shot(page, "happy-4-history-replay"));
  },

  async council({ page, out }) {
    await enterKey(page, API_KEY);
    await submitTask(page, { workflow: "council" });
    out.live = await waitForLiveTokens(page);
    out.liveLanes = (await lanes(page)).map(({ chunkId, done, box }) => ({ chunkId, done, box }));
    out.screenshots.push(await shot(page, "council-1-proposing"));
    out.finalStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    check(out.finalStatus === "completed", `the run ended ${out.finalStatus}`);
    await page.locator('[data-testid="ranking"]').waitFor({ timeout: TIMEOUT });
    out.ranking = await page.$$eval('[data-testid="ranking-row"]', (rows) =>
      rows.map((row) => Array.from(row.querySelectorAll("td")).map((cell) => cell.textContent)),
    );
    out.agreement = await page.locator('[data-testid="agreement"]').textContent();
    out.lanes = await lanes(page);
    out.run = await runInfo(page);
    out.screenshots.push(await shot(page, "council-2-ranking"));
  },

  async cancel({ page, out }) {
    await enterKey(page, API_KEY);
    await submitTask(page);
    out.live = await waitForLiveTokens(page);
    await page.getByRole("button", { name: "Cancel run" }).click();
    out.finalStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    await page.locator('[data-testid="cancelled"]').waitFor({ timeout: 5000 });
    out.notice = await page.locator('[data-testid="cancelled"]').textContent();
    out.lanes = await lanes(page);
    out.run = await runInfo(page);
    out.cancelButtonGone = (await page.getByRole("button", { name: "Cancel run" }).count()) === 0;
    out.screenshots.push(await shot(page, "cancel-1-cancelled"));
    check(out.finalStatus === "cancelled", `the run ended ${out.finalStatus}`);
  },

  async drop({ page, out, proxy }) {
    await enterKey(page, API_KEY);
    await submitTask(page);
    out.live = await waitForLiveTokens(page);
    out.finalStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    out.lanes = await lanes(page);
    out.run = await runInfo(page);
    out.screenshots.push(await shot(page, "drop-1-completed-after-reconnect"));
    const streams = proxy.log.filter((e) => e.path.startsWith("/api/stream/events/"));
    check(streams.some((e) => e.droppedAfterTokens), "the proxy dropped the first event stream");
    check(streams.length >= 2, "the page reconnected");
    check(out.finalStatus === "completed", `the run ended ${out.finalStatus}`);
  },

  async wrong_key({ page, out }) {
    // 1. The key form refuses a wrong key with a clear message.
    await enterKey(page, API_KEY);
    const error = page.locator('[data-testid="key-error"]');
    await error.waitFor({ timeout: TIMEOUT });
    out.keyFormError = (await error.textContent())?.trim();
    out.keyStored = await page.evaluate(() => localStorage.getItem("facilitair.apiKey") ?? sessionStorage.getItem("facilitair.apiKey"));
    out.screenshots.push(await shot(page, "wrong-key-1-key-form"));

    // 2. A stored key that stopped working (revoked): submitting a task says so.
    await page.evaluate((key) => localStorage.setItem("facilitair.apiKey", key), API_KEY);
    await page.reload();
    await submitTask(page);
    const banner = page.locator('[data-testid="error"]');
    await banner.waitFor({ timeout: TIMEOUT });
    out.taskError = (await banner.textContent())?.trim();
    out.taskErrorCode = await banner.getAttribute("data-code");
    out.changeKeyOffered = (await banner.getByRole("button", { name: "Change key" }).count()) === 1;
    out.alerts = await page.locator('[role="alert"]').count();
    out.runStarted = (await page.locator('[data-testid="run"]').count()) > 0;
    out.screenshots.push(await shot(page, "wrong-key-2-task-error"));
    check(/invalid or revoked api key/i.test(out.keyFormError ?? ""), "the key form says the key is invalid");
    check(/invalid or revoked api key/i.test(out.taskError ?? ""), "the run says the key is invalid");
  },

  async cache({ page, out }) {
    await enterKey(page, API_KEY);
    await submitTask(page);
    out.firstStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    out.firstBadge = await page.locator('[data-testid="cache-badge"]').count();
    out.screenshots.push(await shot(page, "cache-1-first-run"));
    check(out.firstStatus === "completed", `the first run ended ${out.firstStatus}`);
    // The same task, the same context: the server answers from its semantic cache.
    const firstStream = (await runInfo(page)).streamId;
    out.firstStreamId = firstStream;
    await submitTask(page);
    await page.waitForFunction(
      (first) => {
        const id = document.querySelector('[data-testid="run"]')?.getAttribute("data-stream-id");
        return Boolean(id) && id !== first;
      },
      firstStream,
      { timeout: TIMEOUT },
    );
    out.secondStatus = await waitStatus(page, ["completed", "failed", "cancelled"]);
    const badge = page.locator('[data-testid="cache-badge"]');
    await badge.waitFor({ timeout: 10000 }).catch(() => {});
    out.badge = (await badge.count()) ? (await badge.textContent())?.trim() : null;
    out.systemMessages = await page.$$eval('[data-testid="system-messages"] li', (items) =>
      items.map((li) => ({ kind: li.getAttribute("data-kind"), text: li.textContent })),
    );
    out.run = await runInfo(page);
    out.lanes = await lanes(page);
    out.screenshots.push(await shot(page, "cache-2-cached-repeat"));
    check(out.secondStatus === "completed", `the repeat ended ${out.secondStatus}`);
    check(Boolean(out.badge), "the repeat shows the cache-hit badge");
  },
};

// --- main -----------------------------------------------------------------------------------

async function main() {
  if (!BASE_URL || !scenarios[SCENARIO]) {
    console.error(`usage: BASE_URL=… API_KEY=… SCENARIO=${Object.keys(scenarios).join("|")} node e2e/run.mjs`);
    process.exit(2);
  }
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const proxy = await startProxy(BASE_URL, {
    dropAfterTokens: SCENARIO === "drop" ? DROP_AFTER_TOKENS : 0,
    dropChunk: DROP_CHUNK,
    rewind: SCENARIO === "drop" ? REWIND : 0,
  });
  const profile = await mkdtemp(join(tmpdir(), "facilitair-chromium-"));
  const out = { scenario: SCENARIO, ok: false, screenshots: [], console: [], cspViolations: [], pageErrors: [] };
  let context;
  let page;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1280, height: 900 },
      acceptDownloads: true,
    });
    context.setDefaultTimeout(TIMEOUT);
    await context.addInitScript(() => {
      window.__csp = [];
      document.addEventListener("securitypolicyviolation", (e) =>
        window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`),
      );
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (msg) => {
      if (msg.type() === "error" || msg.type() === "warning") out.console.push(`${msg.type()}: ${msg.text()}`);
    });
    page.on("pageerror", (error) => out.pageErrors.push(String(error)));
    const response = await page.goto(`${proxy.url}/`);
    out.page = {
      status: response?.status(),
      csp: response?.headers()["content-security-policy"] ?? null,
      cacheControl: response?.headers()["cache-control"] ?? null,
    };
    await scenarios[SCENARIO]({ page, context, origin: proxy.url, out, proxy });
    out.cspViolations = await page.evaluate(() => window.__csp ?? []);
    out.ok = true;
  } catch (error) {
    out.error = error instanceof CheckFailed ? error.message : String(error?.stack ?? error);
    if (page) {
      try {
        out.screenshots.push(await shot(page, `${SCENARIO}-failure`));
        out.failureText = (await page.locator("body").innerText()).slice(0, 4000);
      } catch {
        // the page may be gone
      }
    }
  } finally {
    out.requests = proxy.log;
    out.keyInAnyUrl = proxy.log.some((e) => e.keyInUrl);
    await context?.close().catch(() => {});
    await proxy.close();
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(out.ok ? 0 : 1);
}

main().catch((error) => {
  process.stdout.write(`${JSON.stringify({ scenario: SCENARIO, ok: false, error: String(error?.stack ?? error) })}\n`);
  process.exit(1);
});
