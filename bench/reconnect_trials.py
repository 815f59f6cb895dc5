"""Reconnect trials: how many events are lost or repeated when readers cut their connections at
random points of live streams and resume.

What it measures
    One `facilitair serve` (--backend embedded, the default; or scaleout: two API processes on
    PostgreSQL + Redis from scripts/services.sh, each reconnect going to the other one) and the
    fake provider of bench/stream_overhead.py. --streams tasks stream --tokens tokens each at
    --rate tokens/s; one reader per stream reads a random 1-5 events, drops the connection,
    and resumes after the last event it got: by the Last-Event-ID header and by the
    ?last_event_id= query parameter in turn. When every stream has ended, each reader's events
    are compared with the whole stream read again from the start.

    It prints the trials (cuts), events received, and events lost, repeated or out of order.

    .venv/bin/python bench/reconnect_trials.py                      # ~2,000 trials
    .venv/bin/python bench/reconnect_trials.py --backend scaleout

It prints its figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from stream_overhead import (
    SERVICES,
    Child,
    facilitair_env,
    run_in_workdir,
    start_fake,
    start_server,
    start_services,
)

TERMINAL = ("task_completed", "task_error", "task_cancelled")

Received = list[tuple[int, str, str]]


async def read_with_cuts(
    clients: list[httpx.AsyncClient], stream_id: str, rng: random.Random
) -> tuple[Received, int]:
    received: Received = []
    cuts = 0
    last = 0
    while True:
        client = clients[cuts % len(clients)]
        headers: dict[str, str] = {}
        params: dict[str, int] = {}
        if last and cuts % 2 == 0:
            headers["Last-Event-ID"] = str(last)
        elif last:
            params["last_event_id"] = last
        budget = rng.randint(1, 5)
        async with aconnect_sse(
            client, "GET", f"/api/stream/events/{stream_id}", headers=headers, params=params
        ) as source:
            if source.response.status_code == 204:
                return received, cuts
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                if not sse.id:
                    continue
                last = int(sse.id)
                received.append((last, sse.event, sse.data))
                if sse.event in TERMINAL:
                    return received, cuts
                budget -= 1
                if budget == 0:
                    break
        cuts += 1


async def whole(client: httpx.AsyncClient, stream_id: str) -> Received:
    events: Received = []
    async with aconnect_sse(client, "GET", f"/api/stream/events/{stream_id}") as source:
        async for sse in source.aiter_sse():
            if sse.id:
                events.append((int(sse.id), sse.event, sse.data))
                if sse.event in TERMINAL:
                    break
    return events


def compare(got: Received, expected: Received) -> tuple[int, int, int]:
    """(lost, repeated, out of order)."""
    seqs = [seq for seq, _, _ in got]
    repeated = len(seqs) - len(set(seqs))
    out_of_order = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
    by_seq = {seq: (name, json.loads(data)) for seq, name, data in got}
    lost = sum(
        1
        for seq, name, data in expected
        if seq not in by_seq or by_seq[seq] != (name, json.loads(data))
    )
    return lost, repeated, out_of_order


async def bench(args: argparse.Namespace, workdir: Path, children: list[Child]) -> None:
    fake_url = await start_fake(workdir, children)
    env = facilitair_env(workdir / "data", fake_url, FAC_CACHE_ENABLED="false")
    count = 1
    if args.backend == "scaleout":
        env.update(start_services(SERVICES))
        count = 2
    servers = [await start_server(env, f"server-{n}", workdir, children) for n in range(count)]
    urls = [server.url for server in servers]
    rng = random.Random(args.seed)
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls]
    task = f"Write the module. bench-tokens={args.tokens} bench-rate={args.rate:g} bench-run=burst"
    began = time.monotonic()
    try:
        created = [
            (await clients[0].post("/api/stream/task", json={"task": task})).json()
            for _ in range(args.streams)
        ]
        results = await asyncio.gather(
            *(read_with_cuts(clients, c["stream_id"], random.Random(rng.random())) for c in created)
        )
        lost = repeated = disordered = received = 0
        for c, (got, _) in zip(created, results, strict=True):
            expected = await whole(clients[0], c["stream_id"])
            a, b, d = compare(got, expected)
            lost, repeated, disordered = lost + a, repeated + b, disordered + d
            received += len(got)
    finally:
        for client in clients:
            await client.aclose()
    trials = sum(cuts for _, cuts in results)
    print(
        f"Reconnect trials ({args.backend}: {count} API process(es)"
        f"{', each reconnect to the other' if count > 1 else ''}): {args.streams} live streams "
        f"of {args.tokens} tokens at {args.rate:g}/s, cut after a random 1-5 events, resumed by "
        "header and by query in turn"
    )
    print(
        f"trials {trials}, events received {received}, lost {lost}, repeated {repeated}, "
        f"out of order {disordered}, {time.monotonic() - began:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("embedded", "scaleout"), default="embedded")
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run_in_workdir("fac-reconnect-", lambda workdir, children: bench(args, workdir, children))
    return 0


if __name__ == "__main__":
    sys.exit(main())
