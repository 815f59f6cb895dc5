"""Cancelling a run, and what the client sees when the provider fails."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from fakes.openai_server import FakeOpenAI, Reply
from support import (
    Received,
    ServerThread,
    collect,
    iter_events,
    names,
    new_key,
    script_happy_path,
    start_task,
)

# Every test here runs on the embedded backend and on PostgreSQL + Redis (conftest.py).
BACKENDS = ("embedded", "scaleout")


async def test_cancel_mid_run_aborts_the_llm_request_and_keeps_partial_output(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2)
    fake.set_default("coder", Reply(text="partial line\n" * 100, delay_s=0.05))
    stream_id = (await start_task(client, key))["stream_id"]
    headers = {"X-API-Key": key}

    seen: list[Received] = []
    async for event in iter_events(client, stream_id, key=key):
        seen.append(event)
        if sum(1 for e in seen if e.event == "token_stream" and e.data["role"] == "coder") >= 4:
            break
    cancelled_at = time.monotonic()
    response = await client.post(f"/api/stream/{stream_id}/cancel", headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    coder_calls = fake.requests_for("coder")
    assert len(coder_calls) == 2
    assert await fake.wait_for_async(lambda: all(c.disconnected_at for c in coder_calls), 2)
    assert all(c.disconnected_at - cancelled_at < 1.0 for c in coder_calls)  # type: ignore[operator]
    assert all(c.finished_at is None for c in coder_calls)

    rest = await collect(client, stream_id, key, last_event_id=seen[-1].seq)
    assert rest[-1].event == "task_cancelled"
    assert "task_completed" not in names(rest)
    detail = (await client.get(f"/api/v1/tasks/{seen[0].data['task_id']}", headers=headers)).json()
    assert detail["status"] == "cancelled"
    assert detail["partial"]["architect"].startswith("Design")
    assert "partial line" in detail["partial"]["c1"]
    again = await client.post(f"/api/stream/{stream_id}/cancel", headers=headers)
    assert again.status_code == 409


async def test_rate_limited_provider_is_retried_and_the_run_completes(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    fake.script("documenter", Reply(status=429), "# Docs\n")
    stream_id = (await start_task(client, key))["stream_id"]
    events = await collect(client, stream_id, key)

    retries = [e for e in events if e.event == "system_message" and e.data["kind"] == "retry"]
    assert len(retries) == 1
    assert "429" in retries[0].data["message"]
    assert events[-1].event == "task_completed"
    assert len(fake.requests_for("documenter")) == 2


async def test_permanent_server_error_ends_with_a_retryable_task_error(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(llm_max_retries=2)
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(status=500, text="upstream exploded"))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        stream_id = (await start_task(client, key))["stream_id"]
        events = await collect(client, stream_id, key)

    assert events[-1].event == "task_error"
    error = events[-1].data
    assert error["retryable"] is True
    assert error["details"]["chunk_id"] == "c1"
    assert "upstream exploded" in error["error"]
    assert "task_completed" not in names(events)
    assert len(fake.requests_for("coder")) == 3  # first try + 2 retries
    assert sum(1 for e in events if e.event == "system_message" and e.data["kind"] == "retry") == 2


async def test_a_stream_broken_mid_answer_restarts_the_turn_once(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    fake.script("documenter", Reply(text="# Docs\nmore\nlines\n", drop_after=2), "# Docs\nfine\n")
    stream_id = (await start_task(client, key))["stream_id"]
    events = await collect(client, stream_id, key)

    assert events[-1].event == "task_completed"
    docs_started = [
        e.data for e in events if e.event == "chunk_started" and e.data["chunk_id"] == "docs"
    ]
    assert [d["attempt"] for d in docs_started] == [1, 2]
    docs_done = next(
        e for e in events if e.event == "chunk_completed" and e.data["chunk_id"] == "docs"
    )
    assert docs_done.data["content"] == "# Docs\nfine\n"


async def test_non_retryable_provider_error_fails_at_once(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1, architect=False)
    fake.set_default("architect", Reply(status=401, text="bad key"))
    stream_id = (await start_task(client, key))["stream_id"]
    events = await collect(client, stream_id, key)

    assert names(events)[-1] == "task_error"
    assert events[-1].data["code"] == "provider_auth"
    assert events[-1].data["retryable"] is False
    assert len(fake.requests_for("architect")) == 1
