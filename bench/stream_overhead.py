"""Streaming overhead: the latency Facilitair adds to each token, and the events/s it delivers.

What it measures
    A fake OpenAI-compatible provider streams the coder's reply at a fixed rate (--rate tokens/s,
    --tokens per reply). Every token is the text `<NS>\\n`, where NS is `time.monotonic_ns()`
    taken by the fake just before it writes that token to the socket (CLOCK_MONOTONIC is
    system-wide on Linux, so the stamp is comparable across processes). The client notes its own
    `time.monotonic_ns()` when the event carrying the token is parsed; the difference is the
    send → receive latency of that token.

    For each level of N concurrent streams (--levels, default 10,100) it runs, in this order:
      direct      the baseline: N streaming chat completions read straight from the fake by the
                  same client code (httpx + httpx_sse), no Facilitair in between;
      facilitair  N tasks through the real server (`facilitair serve --no-auth`): POST
                  /api/stream/task, read /api/stream/events/{id}; every token_stream event of
                  the coder carries the stamps (default `filtered` verbosity flushes at line
                  ends, so each token is forwarded as soon as it arrives).
    It prints p50/p99/max latency of both, the added latency (facilitair minus direct at the
    same percentile), token events/s delivered and its ratio to the baseline's.

    The architect, reviewer and documenter answer at once with short fixed replies (one chunk,
    approved), so each task is one coder turn plus a little bookkeeping. The fake delays each
    coder reply's first token by 0.5 s (so the subscriber is connected before it starts; stamps
    older than the subscription are excluded and counted as "replayed") plus a per-request
    phase offset that spreads the streams' tokens evenly over one token interval instead of
    sending all N in the same millisecond. Both apply to the baseline too.

Processes (so that none shares a GIL with another): the fake provider, the Facilitair server,
and this script (the client). All are on this machine; the figures include the client's and
the fake's own costs, which the baseline measures and the "added" row subtracts.

Run it from the repository root (about 30 s with the defaults; it stops by itself):

    .venv/bin/python bench/stream_overhead.py
    .venv/bin/python bench/stream_overhead.py --levels 10,50,100 --tokens 100 --rate 20

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
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

SCRIPT = Path(__file__).resolve()
TARGET_STREAMS = 100
TARGET_P99_ADDED_MS = 5.0
FIRST_TOKEN_DELAY_S = 0.5
GOLDEN = (math.sqrt(5) - 1) / 2
STAMP = re.compile(r"<(\d+)>")
PARAMS = re.compile(r"bench-tokens=(\d+) bench-rate=([0-9.]+)")
ROLE = re.compile(r"\b(architect|coder|reviewer|documenter)\b", re.IGNORECASE)
TERMINAL = {"task_completed", "task_error", "task_cancelled"}

ARCHITECT_REPLY = (
    "Design: one module.\n\n"
    '```json\n{"chunks":[{"id":"c1","description":"x","depends_on":[]}]}\n```\n'
)
REVIEWER_REPLY = '```json\n{"approved": true, "score": 9, "issues": []}\n```\n'
DOCUMENTER_REPLY = "# Doc\n"


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (as uvicorn does), else on asyncio's default loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


# --- the fake provider (runs in its own process: `--fake-port P`) --------------------------


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _sse_chunk(obj: dict[str, Any]) -> bytes:
    return _chunked(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


def _response_head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FakeProvider:
    """A minimal OpenAI chat-completions server that stamps coder tokens at send time."""

    def __init__(self) -> None:
        self.requests = 0

    async def serve(self, port: int) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=4096)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()

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
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == "GET" and path.startswith("/v1/models"):
                payload = b'{"object":"list","data":[{"id":"fake-model","object":"model"}]}'
                head_bytes = _response_head(
                    "200 OK",
                    {"Content-Type": "application/json", "Content-Length": str(len(payload))},
                )
                writer.write(head_bytes + payload)
            elif method == "POST" and path.startswith("/v1/chat/completions"):
                await self.chat(writer, body)
            else:
                writer.write(_response_head("404 Not Found", {"Content-Length": "0"}))
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
        base = {
            "id": f"chatcmpl-bench-{self.requests}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model", "fake-model")),
        }
        writer.write(
            _response_head(
                "200 OK",
                {
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "Transfer-Encoding": "chunked",
                },
            )
        )
        await writer.drain()

        def delta(text: str) -> bytes:
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            return _sse_chunk({**base, "choices": [choice]})

        sent = 0
        params = PARAMS.search(user)
        if role == "coder" and params is not None:
            count, rate = int(params.group(1)), float(params.group(2))
            # Spread concurrent streams evenly over one token interval (golden-ratio sequence).
            phase = (self.requests * GOLDEN) % 1.0
            start = time.monotonic() + FIRST_TOKEN_DELAY_S + phase / rate
            for i in range(count):
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(delta(f"<{time.monotonic_ns()}>\n"))
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


def facilitair_command() -> list[str]:
    script = Path(sys.executable).parent / "facilitair"
    if script.exists():
        return [str(script)]
    found = shutil.which("facilitair")
    if found is None:
        raise RuntimeError("the `facilitair` command is not installed next to this Python")
    return [found]


# --- the client -------------------------------------------------------------------------


@dataclass
class Run:
    """What one path (direct or facilitair) delivered at one level."""

    latencies_ns: list[int] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int = 0
    token_events: int = 0
    events: int = 0
    replayed: int = 0
    endings: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    began_ns: int = 0
    ended_ns: int = 0

    def record(self, text: str, now: int, since: int) -> None:
        stamps = [int(s) for s in STAMP.findall(text)]
        if not stamps:
            return
        self.token_events += 1
        if self.first_ns is None or now < self.first_ns:
            self.first_ns = now
        self.last_ns = max(self.last_ns, now)
        for stamp in stamps:
            if stamp < since:
                self.replayed += 1
            else:
                self.latencies_ns.append(now - stamp)

    def percentile_ms(self, p: float) -> float:
        data = sorted(self.latencies_ns)
        if not data:
            return math.nan
        return data[min(len(data) - 1, max(0, math.ceil(p / 100 * len(data)) - 1))] / 1e6

    @property
    def token_events_per_s(self) -> float:
        if self.first_ns is None or self.last_ns <= self.first_ns:
            return math.nan
        return self.token_events / ((self.last_ns - self.first_ns) / 1e9)

    @property
    def events_per_s(self) -> float:
        wall = (self.ended_ns - self.began_ns) / 1e9
        return self.events / wall if wall > 0 else math.nan


def _params(tokens: int, rate: float) -> str:
    return f"bench-tokens={tokens} bench-rate={rate:g}"


async def direct_stream(
    client: httpx.AsyncClient, fake_url: str, tokens: int, rate: float, run: Run
) -> None:
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are a Coder."},
            {"role": "user", "content": _params(tokens, rate)},
        ],
    }
    async with aconnect_sse(client, "POST", f"{fake_url}/chat/completions", json=body) as source:
        source.response.raise_for_status()
        since = time.monotonic_ns()
        async for sse in source.aiter_sse():
            now = time.monotonic_ns()
            run.events += 1
            if sse.data == "[DONE]":
                run.endings["done"] += 1
                return
            for choice in json.loads(sse.data).get("choices", []):
                run.record(choice.get("delta", {}).get("content") or "", now, since)
    run.endings["closed early"] += 1


async def facilitair_stream(
    client: httpx.AsyncClient, server_url: str, index: int, tokens: int, rate: float, run: Run
) -> None:
    task = {"task": f"Benchmark stream {index}. {_params(tokens, rate)}", "cache": "off"}
    created = await client.post(f"{server_url}/api/stream/task", json=task)
    created.raise_for_status()
    stream_id = created.json()["stream_id"]
    url = f"{server_url}/api/stream/events/{stream_id}"
    async with aconnect_sse(client, "GET", url) as source:
        source.response.raise_for_status()
        since = time.monotonic_ns()
        async for sse in source.aiter_sse():
            now = time.monotonic_ns()
            run.events += 1
            if sse.event == "token_stream":
                data = json.loads(sse.data)
                if data.get("role") == "coder":
                    run.record(str(data.get("tokens", "")), now, since)
            elif sse.event in TERMINAL:
                run.endings[sse.event] += 1
                return
    run.endings["closed early"] += 1


async def drive(
    streams: int,
    timeout_s: float,
    one: Callable[[httpx.AsyncClient, int, Run], Coroutine[Any, Any, None]],
) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=2 * streams + 10, max_keepalive_connections=streams + 10)
    timeout = httpx.Timeout(30.0, connect=10.0)

    async def guarded(client: httpx.AsyncClient, index: int) -> None:
        try:
            await one(client, index, run)
        except Exception as exc:  # counted and shown; a benchmark run goes on
            run.failures[f"{type(exc).__name__}: {exc}"[:120]] += 1

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        run.began_ns = time.monotonic_ns()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(guarded(client, i) for i in range(streams)))
        except TimeoutError:
            run.failures[f"level timed out after {timeout_s:.0f} s"] += 1
        run.ended_ns = time.monotonic_ns()
    return run


# --- report -----------------------------------------------------------------------------


@dataclass
class Level:
    streams: int
    direct: Run
    via: Run

    @property
    def added_p99_ms(self) -> float:
        return self.via.percentile_ms(99) - self.direct.percentile_ms(99)


def _f(value: float, fmt: str = "8.2f") -> str:
    return format(value, fmt) if not math.isnan(value) else format("n/a", fmt[0] + "s")


def report(levels: list[Level], tokens: int, rate: float) -> None:
    print()
    print(
        f"Stream overhead: {tokens} tokens/stream at {rate:g} tokens/s, one token per event, "
        f"{os.cpu_count()} CPUs"
    )
    print("latency = fake-provider send -> client receive, per token (ms)")
    print()
    header = (
        f"{'streams':>7}  {'path':<10}  {'tokens':>11}  {'p50':>8}  {'p99':>8}  {'max':>8}  "
        f"{'tok ev/s':>9}  {'all ev/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for level in levels:
        expected = level.streams * tokens
        for name, run in (("direct", level.direct), ("facilitair", level.via)):
            got = f"{len(run.latencies_ns)}/{expected}"
            print(
                f"{level.streams:>7}  {name:<10}  {got:>11}  {_f(run.percentile_ms(50))}  "
                f"{_f(run.percentile_ms(99))}  {_f(run.percentile_ms(100))}  "
                f"{_f(run.token_events_per_s, '9.1f')}  {_f(run.events_per_s, '9.1f')}"
            )
        added50 = level.via.percentile_ms(50) - level.direct.percentile_ms(50)
        ratio = level.via.token_events_per_s / level.direct.token_events_per_s
        print(
            f"{level.streams:>7}  {'added':<10}  {'':>11}  {_f(added50, '+8.2f')}  "
            f"{_f(level.added_p99_ms, '+8.2f')}  {'':>8}  {_f(ratio, '8.3f')}x"
        )
    print()
    print(
        "tokens = stamps measured / expected; tok ev/s = events carrying tokens per second "
        "between the first and last; all ev/s = every SSE event / wall time of the level "
        "(for facilitair it includes the architect/reviewer/documenter turns); "
        "added = facilitair minus direct at the same percentile; x = tok ev/s ratio."
    )
    for level in levels:
        for name, run in (("direct", level.direct), ("facilitair", level.via)):
            notes = []
            if run.replayed:
                notes.append(f"{run.replayed} stamps older than the subscription (excluded)")
            bad = {k: v for k, v in run.endings.items() if k not in ("done", "task_completed")}
            if bad:
                notes.append(f"endings {dict(bad)}")
            if run.failures:
                notes.append(f"failures {dict(run.failures)}")
            if notes:
                print(f"note: {level.streams} streams, {name}: " + "; ".join(notes))
    at_target = next((lv for lv in levels if lv.streams == TARGET_STREAMS), None)
    if at_target is None:
        verdict = f"not measured ({TARGET_STREAMS} is not in --levels)"
    else:
        complete = len(at_target.via.latencies_ns) == TARGET_STREAMS * tokens
        met = complete and at_target.added_p99_ms < TARGET_P99_ADDED_MS
        verdict = ("MET" if met else "NOT MET") + f" ({_f(at_target.added_p99_ms, '+.2f')} ms)"
        if not complete:
            verdict += ", tokens were lost"
    print()
    print(
        f"target: p99 added latency < {TARGET_P99_ADDED_MS:g} ms at {TARGET_STREAMS} streams: "
        f"{verdict}"
    )


# --- main -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, workdir: Path, children: list[Child]) -> list[Level]:
    fake_port, server_port = free_port(), free_port()
    fake = spawn(
        "fake",
        [sys.executable, str(SCRIPT), "--fake-port", str(fake_port)],
        dict(os.environ),
        workdir,
    )
    children.append(fake)
    fake_url = f"http://127.0.0.1:{fake_port}/v1"
    await wait_ready(fake, f"{fake_url}/models")

    env = {k: v for k, v in os.environ.items() if not k.startswith("FAC_")}
    env.update(
        FAC_DATA_DIR=str(workdir / "data"),
        FAC_LLM_BASE_URL=fake_url,
        FAC_LLM_API_KEY="x",
        FAC_RATE_LIMIT_PER_MINUTE="100000",
    )
    argv = [*facilitair_command(), "serve", "--port", str(server_port), "--no-auth"]
    server = spawn("server", [*argv, "--log-level", "warning"], env, workdir)
    children.append(server)
    server_url = f"http://127.0.0.1:{server_port}"
    await wait_ready(server, f"{server_url}/api/v1/health")

    tokens, rate = args.tokens, args.rate
    timeout_s = FIRST_TOKEN_DELAY_S + 1 / rate + tokens / rate * 1.5 + 15

    async def direct(client: httpx.AsyncClient, index: int, run: Run) -> None:
        await direct_stream(client, fake_url, tokens, rate, run)

    async def via(client: httpx.AsyncClient, index: int, run: Run) -> None:
        await facilitair_stream(client, server_url, index, tokens, rate, run)

    async def warm(client: httpx.AsyncClient, index: int, run: Run) -> None:
        await facilitair_stream(client, server_url, index, 5, 50.0, run)

    # Warm the server (imports, first SQLite writes, connection pools) before measuring.
    await drive(4, 20.0, warm)
    levels = []
    for streams in args.levels:
        print(f"... {streams} streams: direct", file=sys.stderr, flush=True)
        baseline = await drive(streams, timeout_s, direct)
        print(f"... {streams} streams: facilitair", file=sys.stderr, flush=True)
        measured = await drive(streams, timeout_s, via)
        levels.append(Level(streams, baseline, measured))
    for child in children:
        if child.proc.poll() is not None:
            print(f"warning: {child.name} exited early:\n{child.tail()}", file=sys.stderr)
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
    parser.add_argument("--fake-port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.streams is not None:
        args.levels = [args.streams]
    if not args.levels or min(args.levels) < 1 or args.tokens < 1 or args.rate <= 0:
        parser.error("--levels/--streams, --tokens and --rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fake_port is not None:
        run_async(FakeProvider().serve(args.fake_port))
        return 0
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="fac-bench-") as tmp:
        try:
            levels = run_async(bench(args, Path(tmp), children))
        finally:
            for child in reversed(children):
                child.stop()
    report(levels, args.tokens, args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
