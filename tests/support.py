"""Test helpers: the real app under uvicorn on loopback, scripted agent replies, SSE reading."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from facilitair.config import Settings
from facilitair.server.auth import create_key
from facilitair.server.background import BackgroundServer
from facilitair.store import build_store
from fakes.openai_server import FakeOpenAI, RecordedRequest, Reply

ServerThread = BackgroundServer


def make_settings(data_dir: Path, fake: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "llm_base_url": fake.base_url,
        "llm_api_key": "test-key",
        "llm_retry_base_s": 0.01,
        "llm_first_token_timeout_s": 5.0,
        "llm_timeout_s": 30.0,
        "heartbeat_s": 15.0,
        "sse_retry_ms": 500,
    }
    values.update(overrides)
    return Settings(**values)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that points a `facilitair` process at the same data as `settings`."""
    env = {"FAC_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["FAC_DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["FAC_REDIS_URL"] = settings.redis_url
        env["FAC_REDIS_PREFIX"] = settings.redis_prefix
    return env


def new_key(settings: Settings, name: str, tenant: str | None = None) -> str:
    async def make() -> str:
        store = build_store(settings)
        await store.open()
        try:
            return (await create_key(store, name, tenant))[1]
        finally:
            await store.close()

    # A thread of its own, so this works from sync and async tests alike.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


# --- scripted replies --------------------------------------------------------------------


def plan_reply(*chunks: tuple[str, str, list[str]]) -> str:
    plan = {"chunks": [{"id": c, "description": d, "depends_on": deps} for c, d, deps in chunks]}
    return (
        "Design: a small service with a clear module per concern.\n\n"
        f"```json\n{json.dumps(plan)}\n```\n"
    )


def code_reply(path: str, body: str, language: str = "python") -> str:
    return f"Here is the file.\n\n```{language} path={path}\n{body}\n```\n"


def verdict_reply(approved: bool = True, issues: list[dict[str, Any]] | None = None) -> str:
    verdict = {"approved": approved, "score": 8 if approved else 4, "issues": issues or []}
    return f"```json\n{json.dumps(verdict)}\n```\n"


README_TEXT = "# Demo\n\nRun it with `python app.py`.\n"


def script_happy_path(
    fake: FakeOpenAI,
    *,
    chunks: int = 2,
    coder_delay_s: float = 0.0,
    independent: bool = True,
    architect: bool = True,
) -> None:
    """Architect plans `chunks` chunks, each coder writes one file, the reviewer approves."""
    plan = [
        (f"c{i}", f"Write module m{i}", [] if independent or i == 1 else [f"c{i - 1}"])
        for i in range(1, chunks + 1)
    ]
    if architect:
        fake.script("architect", plan_reply(*plan))

    def coder(request: Any) -> Reply:
        user = request.messages[-1]["content"]
        for chunk_id, _, _ in plan:
            if f"Your chunk: {chunk_id}\n" in user:
                break
        lines = [f"line_{n} = {n}\n" for n in range(8)]
        text = code_reply(f"pkg/{chunk_id}.py", "".join(lines).rstrip("\n"))
        return Reply(text=text, delay_s=coder_delay_s)

    fake.set_default("coder", coder)
    fake.set_default("reviewer", verdict_reply(True))
    fake.set_default("documenter", README_TEXT)


# --- a council of three, each judge ranking by the answers' (scripted) quality ---------------

COUNCIL = """
[workflow.council]
chairman = "chair-model"

[[workflow.council.members]]
model = "model-a"

[[workflow.council.members]]
model = "model-b"

[[workflow.council.members]]
model = "model-c"
"""
QUALITY = {"model-a": 3, "model-b": 2, "model-c": 1}  # what the judges think of each answer


def answer_of(model: str) -> str:
    return f"Answer by {model}.\n\n```python path=app_{model[-1]}.py\nprint('{model}')\n```\n"


def ranking_reply(request: RecordedRequest) -> str:
    """Ranks the shown responses by the quality of the model that wrote them."""
    user = request.messages[-1]["content"]
    shown = dict(re.findall(r"## Response ([A-Z])\nAnswer by (model-\w)", user))
    order = sorted(shown, key=lambda label: -QUALITY[shown[label]])
    ranking = [{"response": label, "reason": f"{shown[label]} quality"} for label in order]
    return "```json\n" + json.dumps({"ranking": ranking}) + "\n```\n"


def script_council(fake: FakeOpenAI, member: Callable[[RecordedRequest], Reply | str]) -> None:
    fake.set_default("member", member)
    fake.set_default("judge", ranking_reply)
    fake.set_default("chair", "Final answer.\n\n```python path=app.py\nprint('chair')\n```\n")


# --- reading streams ----------------------------------------------------------------------


@dataclass
class Received:
    id: str
    event: str
    data: dict[str, Any]
    at: float

    @property
    def seq(self) -> int:
        return int(self.id) if self.id else int(self.data["seq"])


async def start_task(
    client: httpx.AsyncClient, key: str, body: dict[str, Any] | None = None, **params: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/stream/task",
        json=body or {"task": "Build a tiny key-value store"},
        headers={"X-API-Key": key},
        params=params,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def iter_events(
    client: httpx.AsyncClient,
    stream_id: str,
    *,
    key: str | None = None,
    last_event_id: int | None = None,
    params: dict[str, Any] | None = None,
) -> AsyncIterator[Received]:
    headers = {"X-API-Key": key} if key else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with aconnect_sse(
        client, "GET", f"/api/stream/events/{stream_id}", headers=headers, params=params
    ) as source:
        source.response.raise_for_status()
        async for sse in source.aiter_sse():
            yield Received(sse.id, sse.event, json.loads(sse.data), time.monotonic())


async def read_until_tokens(
    client: httpx.AsyncClient, stream_id: str, key: str, count: int, role: str | None = None
) -> list[Received]:
    """The stream's events up to its `count`th token_stream (of `role`, if given)."""
    seen: list[Received] = []
    tokens = 0
    async for event in iter_events(client, stream_id, key=key):
        seen.append(event)
        if event.event == "token_stream" and role in (None, event.data.get("role")):
            tokens += 1
            if tokens >= count:
                break
    return seen


async def collect(
    client: httpx.AsyncClient, stream_id: str, key: str, **kwargs: Any
) -> list[Received]:
    return [e async for e in iter_events(client, stream_id, key=key, **kwargs)]


def names(events: list[Received]) -> list[str]:
    return [e.event for e in events]
