"""Reconnect trials: readers cut their connection at random points of live streams and resume
with Last-Event-ID (header) or ?last_event_id= (query), several times per stream. Every event
arrives exactly once, in order. On PostgreSQL + Redis each reconnect also switches between two
API processes."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from fakes.openai_server import FakeOpenAI, Reply
from support import collect, new_key, script_happy_path, start_task

BACKENDS = ("embedded", "scaleout")
STREAMS = 8
TOKENS = 60  # coder lines per stream: ~75 events each
MIN_TRIALS = 200


async def read_with_cuts(
    clients: list[httpx.AsyncClient], stream_id: str, key: str, rng: random.Random
) -> tuple[list[tuple[int, str, str]], int]:
    """Read the stream to its end, cutting the connection after a random 1-5 events each
    time; the events received, and the number of cuts."""
    received: list[tuple[int, str, str]] = []
    cuts = 0
    last = 0
    while True:
        client = clients[cuts % len(clients)]
        headers = {"X-API-Key": key}
        params: dict[str, Any] = {}
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
            assert source.response.status_code == 200, source.response.status_code
            async for sse in source.aiter_sse():
                if not sse.id:
                    continue  # a heartbeat
                last = int(sse.id)
                received.append((last, sse.event, sse.data))
                if sse.event in ("task_completed", "task_error", "task_cancelled"):
                    return received, cuts
                budget -= 1
                if budget == 0:
                    break  # leaving the block closes the connection mid-stream
        cuts += 1


async def test_random_cuts_lose_and_repeat_nothing(make_server: Any, fake: FakeOpenAI) -> None:
    first = make_server(rate_limit_per_minute=100_000)
    servers = [first]
    if first.settings.redis_url:  # scale-out: a second API process on the same services
        servers.append(make_server(rate_limit_per_minute=100_000))
    key = new_key(first.settings, "reader")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(tokens=[f"x{n} = {n}\n" for n in range(TOKENS)], delay_s=0.03))
    rng = random.Random(20261202)
    clients = [httpx.AsyncClient(base_url=s.base_url, timeout=30) for s in servers]
    try:
        created = [await start_task(clients[0], key) for _ in range(STREAMS)]
        results = await asyncio.gather(
            *(
                read_with_cuts(clients, c["stream_id"], key, random.Random(rng.random()))
                for c in created
            )
        )
        trials = sum(cuts for _, cuts in results)
        assert trials >= MIN_TRIALS, trials
        for c, (received, _) in zip(created, results, strict=True):
            whole = await collect(clients[0], c["stream_id"], key)
            expected = [(e.seq, e.event, json.dumps(e.data, sort_keys=True)) for e in whole]
            got = [
                (seq, name, json.dumps(json.loads(data), sort_keys=True))
                for seq, name, data in received
            ]
            seqs = [seq for seq, _, _ in received]
            assert len(seqs) == len(set(seqs)), "an event arrived twice"
            assert got == expected, "an event was lost or changed"
            assert whole[-1].event == "task_completed"
    finally:
        for client in clients:
            await client.aclose()
