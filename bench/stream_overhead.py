"""Streaming overhead: the latency Facilitair adds to each token, and the events/s it delivers.

What it measures
    A fake OpenAI-compatible provider streams the coder's reply at a fixed rate (--rate tokens/s,
    --tokens per reply). Every token is the text `<NS>\\n`, where NS is `time.monotonic_ns()`
    taken by the fake just before it writes that token to the socket (CLOCK_MONOTONIC is
    system-wide on Linux, so stamps compare across processes). The client takes its own
    `time.monotonic_ns()` when the event carrying the token is parsed; the difference is the
    token's send → receive latency.

    For each backend (--backends, default both: `embedded`, one API process on SQLite with the
    in-process event log; `scaleout`, two API processes on PostgreSQL + Redis started by
    scripts/services.sh, each task started through one process and read through the other)
    and each level of N concurrent streams (--levels, default 10,100) it runs, in this order:
      direct      the baseline: N streaming chat completions read straight from the fake by the
                  same client code (httpx + httpx_sse), no Facilitair in between;
      facilitair  N tasks through the real server (`facilitair serve --no-auth`): POST
                  /api/stream/task, then read /api/stream/events/{id}; each coder token_stream
                  event carries the stamps (the default `filtered` verbosity flushes at line
                  ends, so every token is forwarded as soon as it arrives).
    It prints p50/p99/max latency of both, the added latency (facilitair minus direct at the
    same percentile), token events/s delivered and its ratio to the baseline's.

    Steady state, not start-up: the fake holds every coder reply's first token until the client
    has seen all N streams open (direct: response headers; facilitair: the coder's
    chunk_started) and says "go", then releases them, each stream shifted by a phase that
    spreads the N streams' tokens evenly over one token interval (instead of N in the same
    millisecond). The burst of N task starts is reported on its own ("start-up" lines: POST
    /api/stream/task, the events GET until its headers, and the time until all N coders run),
    and so is the server's CPU use (sampled from /proc every 0.1 s; Linux only).
    The architect, reviewer and documenter answer at once with short fixed replies (one chunk,
    approved), so a task is one coder turn plus bookkeeping; the reviewer and documenter turns
    of streams that end first overlap the last tokens of the others, as they would in use.

    Then, per backend, a burst (--burst N, default 100; 0 skips it): N tasks created evenly
    within one second by one key, each read with `verbosity=full`, the fake streaming at once
    (direct: N streams started the same way). It prints failed requests, streams that ended
    with exactly one terminal event (read until the server closes them), the added latency per
    token, POST -> first token, and the CPU of every Facilitair process per token delivered.

Processes (none shares a GIL with another): the fake provider (this file, `--fake-port`), the
Facilitair server, and this script as the client. All share this machine's CPUs; the client's
and the fake's own costs are in both paths, and the "added" row subtracts them.

Run it from the repository root (about three minutes with the defaults; it stops by itself):

    .venv/bin/python bench/stream_overhead.py
    .venv/bin/python bench/stream_overhead.py --levels 10,50,100 --tokens 100 --rate 20
    .venv/bin/python bench/stream_overhead.py --backends embedded --burst 0

It prints its figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

SCRIPT = Path(__file__).resolve()
T = TypeVar("T")
TARGET_STREAMS = 100
TARGET_P99_ADDED_MS = 5.0
TARGET_BURST_P99_MS = 100.0
CPU_SAMPLE_S = 0.1
GATE_TIMEOUT_S = 30.0  # the fake starts a held reply by itself after this long
GOLDEN = (math.sqrt(5) - 1) / 2
STAMP = re.compile(r"<(\d+)>")
PARAMS = re.compile(r"bench-tokens=(\d+) bench-rate=([0-9.]+) bench-run=(\w+)")
PAD = re.compile(r"bench-pad=(\d+)")  # optional: that many bytes of padding in each token
ROLE = re.compile(r"\b(architect|coder|reviewer|documenter)\b", re.IGNORECASE)
TERMINAL = {"task_completed", "task_error", "task_cancelled"}
BURST = "burst"  # run ids of bursts start with it

ARCHITECT_REPLY = (
    "Design: one module.\n\n"
    '```json\n{"chunks":[{"id":"c1","description":"x","depends_on":[]}]}\n```\n'
)
REVIEWER_REPLY = '```json\n{"approved": true, "score": 9, "issues": []}\n```\n'
DOCUMENTER_REPLY = "# Doc\n"


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (as uvicorn does), else on asyncio's default loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


# --- the fake provider (its own process: `--fake-port P`) ----------------------------------


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _sse_chunk(obj: dict[str, Any]) -> bytes:
    return _chunked(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


def _response(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class FakeProvider:
    """A minimal OpenAI chat-completions server (one request per connection) that stamps the
    coder's tokens at send time. `POST /bench/go/<run>` releases the held replies of a run."""

    def __init__(self) -> None:
        self.requests = 0
        self.gates: dict[str, asyncio.Event] = {}

    async def serve(self, port: int) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=4096)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()

    def gate(self, run: str) -> asyncio.Event:
        return self.gates.setdefault(run, asyncio.Event())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            if method == "GET" and path.startswith("/v1/models"):
                payload = b'{"object":"list","data":[{"id":"fake-model","object":"model"}]}'
                headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
                writer.write(_response("200 OK", headers, payload))
            elif method == "POST" and path.startswith("/v1/chat/completions"):
                await self.chat(writer, json.loads(raw or b"{}"))
            elif method == "POST" and path.startswith("/bench/go/"):
                self.gate(path.removeprefix("/bench/go/")).set()
                writer.write(_response("204 No Content", {}))
            else:
                writer.write(_response("404 Not Found", {"Content-Length": "0"}))
            await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def chat(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        system = next((str(m["content"]) for m in messages if m.get("role") == "system"), "")
        found = ROLE.search(system)
        role = found.group(1).lower() if found else "coder"
        user = str(messages[-1].get("content", "")) if messages else ""
        self.requests += 1
        phase = (self.requests * GOLDEN) % 1.0
        base = {
            "id": f"chatcmpl-bench-{self.requests}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model", "fake-model")),
        }
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        writer.write(_response("200 OK", headers))
        await writer.drain()

        def delta(text: str) -> bytes:
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            return _sse_chunk({**base, "choices": [choice]})

        params = PARAMS.search(user)
        if role == "coder" and params is not None:
            count, rate, run = int(params.group(1)), float(params.group(2)), params.group(3)
            if not run.startswith(BURST):  # a burst starts streaming at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gate(run).wait(), GATE_TIMEOUT_S)
            found_pad = PAD.search(user)
            pad = "." * int(found_pad.group(1)) if found_pad else ""
            start = time.monotonic() + phase / rate
            for i in range(count):
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(delta(f"<{time.monotonic_ns()}>{pad}\n"))
                await writer.drain()
            sent = count
        else:
            text = {
                "architect": ARCHITECT_REPLY,
                "reviewer": REVIEWER_REPLY,
                "documenter": DOCUMENTER_REPLY,
            }.get(role, "OK\n")
            parts = text.splitlines(keepends=True)
            writer.write(b"".join(delta(part) for part in parts))
            sent = len(parts)
        final = {"index": 0, "delta": {}, "finish_reason": "stop"}
        tail = _sse_chunk({**base, "choices": [final]})
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            prompt = max(1, sum(len(str(m.get("content", ""))) for m in messages) // 4)
            usage = {"prompt_tokens": prompt, "completion_tokens": sent}
            usage["total_tokens"] = prompt + sent
            tail += _sse_chunk({**base, "choices": [], "usage": usage})
        writer.write(tail + _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""  # a server's base URL

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM this child by its PID; SIGKILL it if it has not exited after 10 s."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Child:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    return Child(name, proc, log)


async def wait_ready(child: Child, url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not become ready at {url}:\n{child.tail()}")


def _cpu_between(
    samples: list[tuple[int, float]], since_ns: int, until_ns: int
) -> tuple[float, float]:
    samples = [(t, c) for t, c in samples if not math.isnan(c)]
    if len(samples) < 2:
        return math.nan, math.nan
    t0, c0 = min(samples, key=lambda s: abs(s[0] - since_ns))
    t1, c1 = min(samples, key=lambda s: abs(s[0] - until_ns))
    return c1 - c0, (c1 - c0) / ((t1 - t0) / 1e9) if t1 > t0 else math.nan


def cpu_of(pids: list[int]) -> float:
    """CPU seconds used so far by all these processes together."""
    return sum(cpu_seconds(pid) for pid in pids)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def facilitair_command() -> list[str]:
    script = Path(sys.executable).parent / "facilitair"
    if script.exists():
        return [str(script)]
    found = shutil.which("facilitair")
    if found is None:
        raise RuntimeError("the `facilitair` command is not installed next to this Python")
    return [found]


# --- the client -------------------------------------------------------------------------


def percentile(values: list[int], p: float) -> float:
    """Nearest-rank percentile of nanosecond values, in ms (NaN when there are none)."""
    data = sorted(values)
    if not data:
        return math.nan
    return data[min(len(data) - 1, max(0, math.ceil(p / 100 * len(data)) - 1))] / 1e6


@dataclass
class Run:
    """What one path (direct or facilitair) delivered at one level."""

    latencies_ns: list[int] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int = 0
    token_events: int = 0
    events: int = 0
    early: int = 0
    endings: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    began_ns: int = 0
    ended_ns: int = 0
    post_ns: list[int] = field(default_factory=list)  # POST /api/stream/task
    open_ns: list[int] = field(default_factory=list)  # request sent → response headers
    ready_s: float = math.nan  # level start → all N streams open and waiting for tokens
    gate_timed_out: bool = False
    go_ns: int = 0  # when the fake was told to release the tokens
    first_token_ns: list[int] = field(default_factory=list)  # request sent → its first token
    terminals: Counter[int] = field(default_factory=Counter)  # terminal events per stream → count
    cpu_samples: list[tuple[int, float]] = field(default_factory=list)  # (ns, server CPU s)
    client_cpu_samples: list[tuple[int, float]] = field(default_factory=list)  # this script's

    def server_cpu(self, since_ns: int, until_ns: int) -> tuple[float, float]:
        """The server's CPU seconds between two instants (nearest samples), and its share of
        one core over that time; NaN without samples. (In a direct run: the fake provider's.)"""
        return _cpu_between(self.cpu_samples, since_ns, until_ns)

    def client_cpu(self, since_ns: int, until_ns: int) -> tuple[float, float]:
        """The same for this script, the client."""
        return _cpu_between(self.client_cpu_samples, since_ns, until_ns)

    def peak_server_share(self, window_s: float = 1.0) -> float:
        """The highest share of one core the server used over any `window_s`."""
        best = math.nan
        for i, (t0, c0) in enumerate(self.cpu_samples):
            for t1, c1 in self.cpu_samples[i + 1 :]:
                if (t1 - t0) / 1e9 >= window_s:
                    share = (c1 - c0) / ((t1 - t0) / 1e9)
                    best = share if math.isnan(best) else max(best, share)
                    break
        return best

    def record(self, text: str, now: int, since: int) -> None:
        stamps = [int(s) for s in STAMP.findall(text)]
        if not stamps:
            return
        self.token_events += 1
        if self.first_ns is None or now < self.first_ns:
            self.first_ns = now
        self.last_ns = max(self.last_ns, now)
        for stamp in stamps:
            if stamp < since:  # sent before this client subscribed: a replay, not a stream
                self.early += 1
            else:
                self.latencies_ns.append(now - stamp)

    def ms(self, p: float) -> float:
        return percentile(self.latencies_ns, p)

    @property
    def token_events_per_s(self) -> float:
        if self.first_ns is None or self.last_ns <= self.first_ns:
            return math.nan
        return self.token_events / ((self.last_ns - self.first_ns) / 1e9)

    @property
    def events_per_s(self) -> float:
        wall = (self.ended_ns - self.began_ns) / 1e9
        return self.events / wall if wall > 0 else math.nan


@dataclass(frozen=True)
class Job:
    run: Run
    run_id: str
    ready: Callable[[], None]


def _params(tokens: int, rate: float, run_id: str) -> str:
    return f"bench-tokens={tokens} bench-rate={rate:g} bench-run={run_id}"


async def direct_stream(
    client: httpx.AsyncClient, fake_url: str, tokens: int, rate: float, job: Job
) -> None:
    run = job.run
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are a Coder."},
            {"role": "user", "content": _params(tokens, rate, job.run_id)},
        ],
    }
    sent = time.monotonic_ns()
    async with aconnect_sse(client, "POST", f"{fake_url}/chat/completions", json=body) as source:
        source.response.raise_for_status()
        since = time.monotonic_ns()
        run.open_ns.append(since - sent)
        job.ready()
        first = True
        async for sse in source.aiter_sse():
            now = time.monotonic_ns()
            run.events += 1
            if sse.data == "[DONE]":
                run.endings["done"] += 1
                run.terminals[1] += 1
                return
            for choice in json.loads(sse.data).get("choices", []):
                text = choice.get("delta", {}).get("content") or ""
                if first and STAMP.search(text):
                    run.first_token_ns.append(now - sent)
                    first = False
                run.record(text, now, since)
    run.endings["closed early"] += 1


async def facilitair_stream(
    client: httpx.AsyncClient,
    servers: list[str],
    index: int,
    tokens: int,
    rate: float,
    job: Job,
) -> None:
    """One task, started through one API process and read through the next one (the same one
    when there is only one), so with several processes every token crosses between them."""
    run = job.run
    post_url, read_url = servers[index % len(servers)], servers[(index + 1) % len(servers)]
    task = {"task": f"Benchmark stream {index}. {_params(tokens, rate, job.run_id)}"}
    posted = time.monotonic_ns()
    params = {"verbosity": "full"} if job.run_id.startswith(BURST) else None
    created = await client.post(
        f"{post_url}/api/stream/task", json={**task, "cache": "off"}, params=params
    )
    created.raise_for_status()
    sent = time.monotonic_ns()
    run.post_ns.append(sent - posted)
    url = f"{read_url}/api/stream/events/{created.json()['stream_id']}"
    async with aconnect_sse(client, "GET", url) as source:
        source.response.raise_for_status()
        since = time.monotonic_ns()
        run.open_ns.append(since - sent)
        terminals, timed_first = 0, False
        async for sse in source.aiter_sse():
            now = time.monotonic_ns()
            run.events += 1
            if sse.event == "token_stream":
                data = json.loads(sse.data)
                if data.get("role") == "coder":
                    text = str(data.get("tokens", ""))
                    if not timed_first and STAMP.search(text):
                        timed_first = True
                        run.first_token_ns.append(now - posted)
                    run.record(text, now, since)
            elif sse.event == "chunk_started" and json.loads(sse.data).get("role") == "coder":
                job.ready()
            elif sse.event in TERMINAL:
                # Keep reading until the server closes the stream: exactly one terminal event.
                terminals += 1
                run.endings[sse.event] += 1
                if sse.event == "task_error":
                    error = json.loads(sse.data)
                    run.failures[f"{error.get('code')}: {error.get('error', '')[:120]}"] += 1
        run.terminals[terminals] += 1
        if not terminals:
            run.endings["closed early"] += 1


Stream = Callable[[httpx.AsyncClient, int, Job], Awaitable[None]]


async def drive(
    streams: int,
    timeout_s: float,
    fake_url: str,
    one: Stream,
    server_pids: list[int] | None = None,
    *,
    burst: bool = False,
) -> Run:
    """N concurrent streams; once all N are open, tell the fake to release their tokens. As a
    burst: the N streams start evenly spread over one second, and stream at once."""
    run = Run()
    run_id = (BURST if burst else "") + uuid.uuid4().hex[:12]
    waiting: set[int] = set()
    all_open = asyncio.Event()

    def make_ready(index: int) -> Callable[[], None]:
        def ready() -> None:
            waiting.add(index)
            if len(waiting) >= streams:
                all_open.set()

        return ready

    limits = httpx.Limits(max_connections=2 * streams + 10, max_keepalive_connections=streams + 10)
    timeout = httpx.Timeout(GATE_TIMEOUT_S + 30.0, connect=10.0)

    async def guarded(client: httpx.AsyncClient, index: int) -> None:
        if burst:
            await asyncio.sleep(index / streams)
        try:
            await one(client, index, Job(run, run_id, make_ready(index)))
        except Exception as exc:  # counted and shown; the benchmark goes on
            run.failures[f"{type(exc).__name__}: {exc}"[:120]] += 1

    async def release(client: httpx.AsyncClient) -> None:
        if burst:
            run.go_ns = run.began_ns
            return
        try:
            await asyncio.wait_for(all_open.wait(), GATE_TIMEOUT_S - 5)
        except TimeoutError:
            run.gate_timed_out = True
        run.go_ns = time.monotonic_ns()
        run.ready_s = (run.go_ns - run.began_ns) / 1e9
        (await client.post(f"{fake_url.removesuffix('/v1')}/bench/go/{run_id}")).raise_for_status()

    def take_sample(pids: list[int]) -> None:
        now = time.monotonic_ns()
        run.cpu_samples.append((now, cpu_of(pids)))
        run.client_cpu_samples.append((now, cpu_seconds(os.getpid())))

    async def sample(pids: list[int]) -> None:
        while True:  # cancelled when the level ends
            take_sample(pids)
            await asyncio.sleep(CPU_SAMPLE_S)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        run.began_ns = time.monotonic_ns()
        sampler = asyncio.create_task(sample(server_pids)) if server_pids else None
        try:
            async with asyncio.timeout(GATE_TIMEOUT_S + timeout_s):
                await asyncio.gather(release(client), *(guarded(client, i) for i in range(streams)))
        except TimeoutError:
            run.failures[f"level timed out after {GATE_TIMEOUT_S + timeout_s:.0f} s"] += 1
        run.ended_ns = time.monotonic_ns()
        if sampler is not None and server_pids:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            take_sample(server_pids)
    return run


# --- report -----------------------------------------------------------------------------


@dataclass
class Level:
    backend: str
    streams: int
    direct: Run
    via: Run
    burst: bool = False

    @property
    def added_p99_ms(self) -> float:
        return self.via.ms(99) - self.direct.ms(99)


def _f(value: float, fmt: str = "8.2f") -> str:
    if not math.isnan(value):
        return format(value, fmt)
    width = re.match(r"\+?(\d*)", fmt)
    return format("n/a", ">" + width.group(1)) if width and width.group(1) else "n/a"


def report(levels: list[Level], tokens: int, rate: float) -> None:
    levels = [level for level in levels if not level.burst]
    print()
    print(
        f"Stream overhead: {tokens} tokens/stream at {rate:g} tokens/s, one token per event, "
        f"{os.cpu_count()} CPUs"
    )
    print("latency = fake-provider send -> client receive, per token, in ms")
    print()
    header = (
        f"{'backend':<9} {'streams':>7}  {'path':<10}  {'tokens':>11}  {'p50':>8}  {'p99':>8}  "
        f"{'max':>8}  {'tok ev/s':>9}  {'all ev/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for level in levels:
        expected = level.streams * tokens
        row = f"{level.backend:<9} {level.streams:>7}"
        for name, run in (("direct", level.direct), ("facilitair", level.via)):
            got = f"{len(run.latencies_ns)}/{expected}"
            print(
                f"{row}  {name:<10}  {got:>11}  {_f(run.ms(50))}  "
                f"{_f(run.ms(99))}  {_f(run.ms(100))}  "
                f"{_f(run.token_events_per_s, '9.1f')}  {_f(run.events_per_s, '9.1f')}"
            )
        added50 = level.via.ms(50) - level.direct.ms(50)
        ratio = level.via.token_events_per_s / level.direct.token_events_per_s
        print(
            f"{row}  {'added':<10}  {'':>11}  {_f(added50, '+8.2f')}  "
            f"{_f(level.added_p99_ms, '+8.2f')}  {'':>8}  {_f(ratio, '8.3f')}x"
        )
    print()
    print("tokens = stamps measured / sent. tok ev/s = token-carrying events per second from the")
    print("first to the last; x = its facilitair/direct ratio. all ev/s = every SSE event over")
    print("the level's wall time, start-up included. added = facilitair minus direct at the same")
    print("percentile.")
    print()
    print("start-up, ms p50/p99 (facilitair: POST task; open = events GET -> headers;")
    print("ready = s until every stream's coder turn was waiting for its first token)")
    for level in levels:
        d, v = level.direct, level.via
        print(
            f"{level.backend:<9} {level.streams:>7} streams: "
            f"direct open {_f(percentile(d.open_ns, 50), '.1f')}/"
            f"{_f(percentile(d.open_ns, 99), '.1f')}, ready {_f(d.ready_s, '.2f')} s | "
            f"facilitair POST {_f(percentile(v.post_ns, 50), '.1f')}/"
            f"{_f(percentile(v.post_ns, 99), '.1f')}, open {_f(percentile(v.open_ns, 50), '.1f')}/"
            f"{_f(percentile(v.open_ns, 99), '.1f')}, ready {_f(v.ready_s, '.2f')} s"
        )
    print()
    print("server CPU in the facilitair run (share of one core): start-up = until the go;")
    print("streaming = from the go to the last token received; peak = busiest 1 s")
    for level in levels:
        v = level.via
        _, up_share = v.server_cpu(v.began_ns, v.go_ns)
        cpu, share = v.server_cpu(v.go_ns, v.last_ns)
        per_token = cpu / max(1, len(v.latencies_ns)) * 1e6
        print(
            f"{level.backend:<9} {level.streams:>7} streams: "
            f"start-up {_f(100 * up_share, '.0f')}%, streaming "
            f"{_f(100 * share, '.0f')}% = {_f(per_token, '.0f')} us per token, "
            f"peak {_f(100 * v.peak_server_share(), '.0f')}%"
        )
    print("for scale (the direct run, CPU per token over its streaming): the fake provider")
    print("only writes each token (one json.dumps, one socket write); the client only reads")
    print("and parses it (httpx + httpx-sse). Facilitair reads, logs and writes each token.")
    for level in levels:
        d = level.direct
        tokens_read = max(1, len(d.latencies_ns))
        fake_cpu, _ = d.server_cpu(d.go_ns, d.last_ns)
        client_cpu, _ = d.client_cpu(d.go_ns, d.last_ns)
        print(
            f"{level.backend:<9} {level.streams:>7} streams: fake provider "
            f"{_f(fake_cpu / tokens_read * 1e6, '.0f')} us per token, client "
            f"{_f(client_cpu / tokens_read * 1e6, '.0f')} us per token"
        )
    for level in levels:
        for name, run in (("direct", level.direct), ("facilitair", level.via)):
            notes = []
            if run.gate_timed_out:
                notes.append("not every stream opened in time; tokens were released anyway")
            if run.early:
                notes.append(f"{run.early} stamps sent before the client subscribed (excluded)")
            lost = level.streams * tokens - len(run.latencies_ns) - run.early
            if lost:
                notes.append(f"{lost} tokens never arrived")
            bad = {k: n for k, n in run.endings.items() if k not in ("done", "task_completed")}
            if bad:
                notes.append(f"endings {dict(bad)}")
            if run.failures:
                notes.append(f"failures {dict(run.failures)}")
            if notes:
                print(
                    f"note: {level.backend}, {level.streams} streams, {name}: " + "; ".join(notes)
                )
    print()
    for backend in dict.fromkeys(level.backend for level in levels):
        print(f"{backend}: {BACKENDS[backend]}")
        at_target = next(
            (lv for lv in levels if lv.streams == TARGET_STREAMS and lv.backend == backend), None
        )
        if at_target is None:
            verdict = f"not measured ({TARGET_STREAMS} is not in --levels)"
        else:
            complete = len(at_target.via.latencies_ns) == TARGET_STREAMS * tokens
            met = complete and at_target.added_p99_ms < TARGET_P99_ADDED_MS
            verdict = ("MET" if met else "NOT MET") + f" ({_f(at_target.added_p99_ms, '+.2f')} ms)"
            if not complete:
                verdict += ", not every token was measured"
        print(
            f"  target: p99 added latency < {TARGET_P99_ADDED_MS:g} ms at {TARGET_STREAMS} "
            f"streams: {verdict}"
        )


def report_bursts(bursts: list[Level], tokens: int, rate: float) -> None:
    if not bursts:
        return
    print()
    print(
        f"Burst: N tasks created evenly within one second (one key), each read with "
        f"verbosity=full, {tokens} tokens at {rate:g}/s; the fake streams at once"
    )
    header = (
        f"{'backend':<9} {'N':>4}  {'failed':>6}  {'1 terminal':>10}  {'added p50':>9}  "
        f"{'added p99':>9}  {'1st token p50/p99 ms':>20}  {'direct':>13}  {'CPU/token':>9}"
    )
    print(header)
    print("-" * len(header))
    for level in bursts:
        d, v = level.direct, level.via
        failed = sum(v.failures.values()) + v.endings["closed early"]
        one = v.terminals[1]
        cpu, _ = v.server_cpu(v.began_ns, v.ended_ns)
        per_token = cpu / max(1, len(v.latencies_ns)) * 1e6
        first = f"{_f(percentile(v.first_token_ns, 50), '.0f')}/" + _f(
            percentile(v.first_token_ns, 99), ".0f"
        )
        direct_first = f"{_f(percentile(d.first_token_ns, 50), '.0f')}/" + _f(
            percentile(d.first_token_ns, 99), ".0f"
        )
        print(
            f"{level.backend:<9} {level.streams:>4}  {failed:>6}  {one:>5}/{level.streams:<4}  "
            f"{_f(v.ms(50) - d.ms(50), '+9.2f')}  {_f(v.ms(99) - d.ms(99), '+9.2f')}  "
            f"{first:>20}  {direct_first:>13}  {_f(per_token, '6.0f')} us"
        )
        lost = level.streams * tokens - len(v.latencies_ns) - v.early
        if lost or v.failures:
            print(f"  note: {lost} tokens never arrived; failures {dict(v.failures)}")
    print(
        "failed = requests that errored or streams closed without a terminal event; "
        "1 terminal = streams that ended with exactly one; added = facilitair minus direct per "
        "token; 1st token = POST -> the first coder token (direct: request -> first token); "
        "CPU/token = CPU of every Facilitair process over the burst / tokens delivered"
    )
    for level in bursts:
        added = level.via.ms(99) - level.direct.ms(99)
        verdict = "MET" if added < TARGET_BURST_P99_MS else "NOT MET"
        print(
            f"  {level.backend}: target p99 added < {TARGET_BURST_P99_MS:g} ms in the burst: "
            f"{verdict} ({_f(added, '+.1f')} ms)"
        )


# --- main -------------------------------------------------------------------------------


BACKENDS = {
    "embedded": "1 API process running its tasks, SQLite + in-process event log",
    "scaleout": "2 API processes + 2 workers, PostgreSQL + Redis; each task started through "
    "one API process and read through the other",
}


async def start_fake(workdir: Path, children: list[Child]) -> str:
    """The fake provider in a process of its own; its base URL."""
    port = free_port()
    fake = spawn(
        "fake", [sys.executable, str(SCRIPT), "--fake-port", str(port)], dict(os.environ), workdir
    )
    children.append(fake)
    url = f"http://127.0.0.1:{port}/v1"
    await wait_ready(fake, f"{url}/models")
    return url


def facilitair_env(data_dir: Path, fake_url: str, **settings: str) -> dict[str, str]:
    """This environment without FAC_* settings, plus what points Facilitair at the fake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAC_")}
    env.update(
        FAC_DATA_DIR=str(data_dir),
        FAC_LLM_BASE_URL=fake_url,
        FAC_LLM_API_KEY="x",
        FAC_RATE_LIMIT_PER_MINUTE="100000",
        **settings,
    )
    return env


async def start_server(
    env: dict[str, str], name: str, workdir: Path, children: list[Child]
) -> Child:
    """`facilitair serve --no-auth` on a free port, ready; `child.url` is its base URL."""
    port = free_port()
    argv = [*facilitair_command(), "serve", "--port", str(port), "--no-auth"]
    server = spawn(name, [*argv, "--log-level", "warning"], env, workdir)
    children.append(server)
    server.url = f"http://127.0.0.1:{port}"
    await wait_ready(server, f"{server.url}/api/v1/health")
    return server


async def start_servers(
    backend: str, fake_url: str, workdir: Path, children: list[Child]
) -> tuple[list[str], list[int]]:
    """The API processes of one backend: their URLs and PIDs."""
    env = facilitair_env(workdir / f"data-{backend}", fake_url)
    count = 1
    if backend == "scaleout":
        env.update(start_services(SERVICES))
        count = 2
        env["FAC_RUN_TASKS"] = "false"  # the API processes accept; the workers run
    urls, pids = [], []
    for n in range(count):
        port = free_port()
        argv = [*facilitair_command(), "serve", "--port", str(port), "--no-auth"]
        server = spawn(f"{backend}-server-{n}", [*argv, "--log-level", "warning"], env, workdir)
        children.append(server)
        urls.append(f"http://127.0.0.1:{port}")
        pids.append(server.proc.pid)
    for url, child in zip(urls, children[-count:], strict=True):
        await wait_ready(child, f"{url}/api/v1/health")
    if backend == "scaleout":
        for n in range(2):
            argv = [*facilitair_command(), "worker", "--log-level", "warning"]
            worker = spawn(f"{backend}-worker-{n}", argv, env, workdir)
            children.append(worker)
            pids.append(worker.proc.pid)
            await wait_logged(worker, "taking tasks")
    return urls, pids


async def wait_logged(child: Child, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.proc.poll() is None:
        if text in child.tail(50):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not start:\n{child.tail()}")


SERVICES = Path(tempfile.gettempdir()) / f"fac-bench-services-{os.getpid()}"


def start_services(folder: Path) -> dict[str, str]:
    """PostgreSQL + pgvector and Redis from scripts/services.sh, on free ports. (Not in the
    bench's private temporary folder: PostgreSQL runs as its own user.)"""
    folder.mkdir(mode=0o755, exist_ok=True)
    folder.chmod(0o755)
    env = {**os.environ, "PG_PORT": str(free_port()), "REDIS_PORT": str(free_port())}
    done = subprocess.run(
        ["bash", str(SCRIPT.parent.parent / "scripts" / "services.sh"), "start", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def stop_services(folder: Path) -> None:
    if folder.exists():
        script = SCRIPT.parent.parent / "scripts" / "services.sh"
        subprocess.run(["bash", str(script), "stop", str(folder)], check=False)


async def bench(args: argparse.Namespace, workdir: Path, children: list[Child]) -> list[Level]:
    fake_url = await start_fake(workdir, children)
    fake_pid = children[-1].proc.pid

    tokens, rate = args.tokens, args.rate
    timeout_s = 2 / rate + tokens / rate * 1.5 + 15

    async def direct(client: httpx.AsyncClient, index: int, job: Job) -> None:
        await direct_stream(client, fake_url, tokens, rate, job)

    levels = []
    for backend in args.backends:
        servers, pids = await start_servers(backend, fake_url, workdir, children)

        async def via(
            client: httpx.AsyncClient, index: int, job: Job, servers: list[str] = servers
        ) -> None:
            await facilitair_stream(client, servers, index, tokens, rate, job)

        async def warm(
            client: httpx.AsyncClient, index: int, job: Job, servers: list[str] = servers
        ) -> None:
            await facilitair_stream(client, servers, index, 5, 50.0, job)

        # Warm the servers up (imports, first writes, connection pools) before measuring.
        await drive(4, 20.0, fake_url, warm)
        for streams in args.levels:
            print(f"... {backend}, {streams} streams: direct", file=sys.stderr, flush=True)
            baseline = await drive(streams, timeout_s, fake_url, direct, [fake_pid])
            print(f"... {backend}, {streams} streams: facilitair", file=sys.stderr, flush=True)
            measured = await drive(streams, timeout_s, fake_url, via, pids)
            levels.append(Level(backend, streams, baseline, measured))
        if args.burst:
            streams = args.burst
            print(f"... {backend}, burst of {streams}: direct", file=sys.stderr, flush=True)
            baseline = await drive(streams, timeout_s, fake_url, direct, [fake_pid], burst=True)
            print(f"... {backend}, burst of {streams}: facilitair", file=sys.stderr, flush=True)
            measured = await drive(streams, timeout_s, fake_url, via, pids, burst=True)
            levels.append(Level(backend, streams, baseline, measured, burst=True))
    for child in children:
        if child.proc.poll() is not None:
            print(f"warning: {child.name} exited early:\n{child.tail()}", file=sys.stderr)
        elif "server" in child.name and any(level.via.failures for level in levels):
            print(f"--- {child.name} log (last lines):\n{child.tail(60)}", file=sys.stderr)
    return levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[10, TARGET_STREAMS],
        help="comma-separated numbers of concurrent streams (default 10,100)",
    )
    parser.add_argument(
        "--streams", type=int, default=None, help="one level of N streams (overrides --levels)"
    )
    parser.add_argument("--tokens", type=int, default=100, help="tokens per stream (default 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per stream (default 20)")
    parser.add_argument(
        "--backends",
        type=lambda s: [b.strip() for b in s.split(",") if b.strip()],
        default=["embedded", "scaleout"],
        help="comma-separated: embedded (1 process, SQLite), scaleout (2 API processes on "
        "PostgreSQL + Redis, started by scripts/services.sh); default both",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=TARGET_STREAMS,
        help="then N tasks created within one second, read with verbosity=full (default 100; "
        "0: none)",
    )
    parser.add_argument("--fake-port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not set(args.backends) <= set(BACKENDS):
        parser.error(f"--backends: choose from {', '.join(BACKENDS)}")
    if args.streams is not None:
        args.levels = [args.streams]
    if not args.levels or min(args.levels) < 1 or args.tokens < 1 or args.rate <= 0:
        parser.error("--levels/--streams, --tokens and --rate must be positive")
    return args


def run_in_workdir(prefix: str, work: Callable[[Path, list[Child]], Coroutine[Any, Any, T]]) -> T:
    """Run `work` in a temporary folder; every child process it started is stopped after, and
    the services, if it started them."""
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            return run_async(work(Path(tmp), children))
        finally:
            for child in reversed(children):
                child.stop()
            stop_services(SERVICES)
            shutil.rmtree(SERVICES, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fake_port is not None:
        run_async(FakeProvider().serve(args.fake_port))
        return 0
    levels = run_in_workdir("fac-bench-", lambda workdir, children: bench(args, workdir, children))
    report(levels, args.tokens, args.rate)
    report_bursts([lv for lv in levels if lv.burst], args.tokens, args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
