"""Stalled clients: what 50 readers that stop reading cost the server, against 50 that read.

What it measures
    One `facilitair serve` (embedded: SQLite + the in-process event log) and the fake provider
    of bench/stream_overhead.py. Twice, N tasks (--tasks, default 50) stream --tokens tokens
    of about --pad bytes each at --rate tokens/s:
      reading   each task has one reader that reads its SSE stream to the end;
      stalled   each task has one reader that sends its request and never reads (its socket
                has a 4 KB receive buffer, so the server's sends back up at once).
    It samples the server's resident memory (RSS, from /proc) every 0.2 s and prints, per
    phase: RSS before, the peak, and the peak's growth over the idle server; for the stalled
    phase also how many stalled connections the server closed, and when (FAC_SEND_TIMEOUT_S,
    --send-timeout, default 5 s), and whether every task still completed.

    The point is the shape, not the bytes: a server that queued events per client would grow
    with every event a stalled client does not take (N x tokens x pad); this one keeps one
    cursor per reader and one event in flight, so the stalled phase should cost about what the
    reading one does.

    .venv/bin/python bench/stalled_clients.py
    .venv/bin/python bench/stalled_clients.py --tasks 50 --tokens 400 --pad 2000 --rate 40

It prints its figures and asserts nothing. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_overhead import Child, facilitair_env, run_in_workdir, start_fake, start_server

SAMPLE_S = 0.2


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stalled_reader(base_url: str, path: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    sock.setblocking(False)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Drain what is buffered; True when the server has closed (EOF or reset)."""
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


async def phase(
    name: str, args: argparse.Namespace, url: str, pid: int
) -> dict[str, float | int | str]:
    samples: list[float] = []

    async def sample() -> None:
        while True:
            samples.append(rss_mb(pid))
            await asyncio.sleep(SAMPLE_S)

    before = rss_mb(pid)
    sampler = asyncio.create_task(sample())
    task = (
        f"Write the module. bench-tokens={args.tokens} bench-rate={args.rate:g} "
        f"bench-run=burst{name} bench-pad={args.pad}"
    )
    stalled: list[socket.socket] = []
    closed_at: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        started = time.monotonic()
        created = [
            (await client.post("/api/stream/task", json={"task": task})).json()
            for _ in range(args.tasks)
        ]
        if name == "reading":

            async def read(events_url: str) -> None:
                async with client.stream("GET", events_url) as response:
                    async for _ in response.aiter_bytes():
                        pass

            await asyncio.gather(*(read(c["events_url"]) for c in created))
        else:
            stalled = [stalled_reader(url, c["events_url"]) for c in created]
            deadline = time.monotonic() + args.tokens / args.rate + args.send_timeout + 30
            while time.monotonic() < deadline and len(closed_at) < len(stalled):
                await asyncio.sleep(0.25)
                for n, sock in enumerate(stalled):
                    # Only look once the server should have given up; reading earlier would
                    # make the reader not stalled.
                    waited = time.monotonic() - started
                    if n not in closed_at and waited > args.send_timeout and closed_by_server(sock):
                        closed_at[n] = waited
        statuses = [(await client.get(c["status_url"])).json()["status"] for c in created]
        ended = time.monotonic() - started
    sampler.cancel()
    for sock in stalled:
        sock.close()
    return {
        "phase": name,
        "before": before,
        "peak": max(samples) if samples else float("nan"),
        "completed": statuses.count("completed"),
        "closed": len(closed_at),
        "closed_by_s": max(closed_at.values()) if closed_at else float("nan"),
        "seconds": ended,
    }


async def bench(args: argparse.Namespace, workdir: Path, children: list[Child]) -> None:
    fake_url = await start_fake(workdir, children)
    env = facilitair_env(
        workdir / "data",
        fake_url,
        FAC_SEND_TIMEOUT_S=str(args.send_timeout),
        FAC_CACHE_ENABLED="false",
    )
    server = await start_server(env, "server", workdir, children)
    url = server.url
    idle = rss_mb(server.proc.pid)
    rows = [await phase(name, args, url, server.proc.pid) for name in ("reading", "stalled")]
    volume = args.tasks * args.tokens * (args.pad + 200) / 1e6
    print(
        f"Stalled clients: {args.tasks} tasks x {args.tokens} tokens of ~{args.pad} bytes at "
        f"{args.rate:g}/s (~{volume:.0f} MB of events in all); send timeout {args.send_timeout:g} s"
    )
    print(f"server RSS when idle: {idle:.1f} MB")
    print(
        f"{'phase':<8} {'RSS before':>10} {'peak':>8} {'growth':>8} {'completed':>9} "
        f"{'closed by server':>17} {'wall s':>7}"
    )
    for row in rows:
        closed = (
            ""
            if row["phase"] == "reading"
            else (f"{row['closed']}/{args.tasks} by {row['closed_by_s']:.1f}s")
        )
        print(
            f"{row['phase']:<8} {row['before']:>8.1f}MB {row['peak']:>6.1f}MB "
            f"{float(row['peak']) - idle:>+6.1f}MB {row['completed']:>5}/{args.tasks:<3} "
            f"{closed:>17} {row['seconds']:>7.1f}"
        )
    print(
        "growth = peak RSS minus the idle server's. A server that queued what stalled clients "
        f"do not take would grow by up to ~{volume:.0f} MB in the stalled phase."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--pad", type=int, default=2000, help="bytes of padding per token")
    parser.add_argument("--rate", type=float, default=40.0, help="tokens/s per task")
    parser.add_argument("--send-timeout", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_in_workdir("fac-stalled-", lambda workdir, children: bench(args, workdir, children))
    return 0


if __name__ == "__main__":
    sys.exit(main())
