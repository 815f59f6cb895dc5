"""Provider chaos: every LLM call of 100 concurrent tasks is, at random, a success, a 429, a
500, a 401, a hang before the first byte, or a stream dropped midway. Every stream still ends
with exactly one terminal event, in time; the status endpoint agrees with it; and every
failure is a task_error whose `retryable` says the truth."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from typing import Any

import httpx

from fakes.openai_server import FakeOpenAI, Reply
from support import code_reply, collect, new_key, plan_reply, start_task, verdict_reply

BACKENDS = ("embedded", "scaleout")
TASKS = 100
TERMINAL = {"task_completed": "completed", "task_error": "failed", "task_cancelled": "cancelled"}
RETRYABLE = {"rate_limited": True, "provider_error": True, "timeout": True}
RETRYABLE |= {"stream_interrupted": True, "connection_error": True, "provider_auth": False}


class Chaos:
    """Picks each call's fate; the fake calls it from its own thread."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.fates: Counter[str] = Counter()

    def reply(self, text: str) -> Any:
        def fate(_: Any) -> Reply:
            with self.lock:
                roll = self.rng.random()
            name, reply = "ok", Reply(text=text, delay_s=0.005)
            if roll < 0.12:
                name, reply = "429", Reply(status=429)
            elif roll < 0.24:
                name, reply = "500", Reply(status=500)
            elif roll < 0.27:
                name, reply = "401", Reply(status=401)
            elif roll < 0.37:
                name, reply = "hang", Reply(hang=True)
            elif roll < 0.49:
                name, reply = "drop", Reply(text=text, delay_s=0.005, drop_after=2)
            with self.lock:
                self.fates[name] += 1
            return reply

        return fate


async def test_every_task_ends_once_and_truthfully_under_provider_chaos(
    make_server: Any, fake: FakeOpenAI
) -> None:
    server = make_server(
        rate_limit_per_minute=100_000,
        llm_max_retries=2,
        llm_retry_base_s=0.01,
        llm_first_token_timeout_s=0.5,
        cache_enabled=False,
    )
    key = new_key(server.settings, "chaos")
    chaos = Chaos(seed=7)
    fake.set_default("architect", chaos.reply(plan_reply(("c1", "Write the module", []))))
    fake.set_default("coder", chaos.reply(code_reply("pkg/m.py", "\n".join(["x = 1"] * 12))))
    fake.set_default("reviewer", chaos.reply(verdict_reply(True)))
    fake.set_default("documenter", chaos.reply("# Module\n\nIt sets x.\n"))
    endings: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        created = await asyncio.gather(*(start_task(client, key) for _ in range(TASKS)))

        async def check(task: dict[str, Any]) -> None:
            events = await asyncio.wait_for(collect(client, task["stream_id"], key), 90)
            terminals = [e for e in events if e.event in TERMINAL]
            assert len(terminals) == 1 and terminals[0] is events[-1], [e.event for e in events]
            end = terminals[0]
            endings[end.event] += 1
            status = await client.get(task["status_url"], headers={"X-API-Key": key})
            assert status.json()["status"] == TERMINAL[end.event]
            if end.event == "task_error":
                code = end.data["code"]
                assert code in RETRYABLE, end.data
                assert end.data["retryable"] is RETRYABLE[code], end.data

        await asyncio.gather(*(check(task) for task in created))
    assert sum(endings.values()) == TASKS
    assert endings["task_completed"] and endings["task_error"], endings  # chaos really bit
    assert set(chaos.fates) == {"ok", "429", "500", "401", "hang", "drop"}, chaos.fates
