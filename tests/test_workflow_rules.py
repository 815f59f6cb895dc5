"""Review loop, malformed model output and the budget, driven through the real server."""

from __future__ import annotations

import httpx

from fakes.openai_server import FakeOpenAI, Reply
from support import (
    code_reply,
    collect,
    names,
    plan_reply,
    script_happy_path,
    start_task,
    verdict_reply,
)


def system_kinds(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.data["kind"] for e in events if e.event == "system_message"]


async def test_blocking_review_issues_are_revised_then_approved(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2)
    issue = {"severity": "Major", "chunk_id": "c2", "description": "m2 has no error handling"}
    fake.script("reviewer", verdict_reply(False, [issue]), verdict_reply(True))
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    assert events[-1].event == "task_completed"
    coder_turns = [
        (e.data["chunk_id"], e.data["iteration"])
        for e in events
        if e.event == "chunk_started" and e.data["role"] == "coder"
    ]
    assert sorted(coder_turns) == [("c1", 1), ("c2", 1), ("c2", 2)]
    revision = fake.requests_for("coder")[-1]
    assert "m2 has no error handling" in revision.messages[-1]["content"]
    assert len(fake.requests_for("reviewer")) == 2
    plans = [e.data for e in events if e.event == "task_progress"]
    assert plans[-1]["total_chunks"] == plans[1]["total_chunks"] + 2  # revision + re-review
    assert events[-1].data["metrics"]["iterations"] == 2


async def test_review_rounds_are_bounded(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    issue = {"severity": "critical", "chunk_id": "c1", "description": "SQL injection"}
    fake.set_default("reviewer", verdict_reply(False, [issue]))
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    assert events[-1].event == "task_completed"
    assert len(fake.requests_for("reviewer")) == 3  # first review + 2 re-reviews (default)
    assert "review" in system_kinds(events)
    assert "SQL injection" in events[-1].data["content"]


async def test_malformed_plan_gets_one_retry_then_a_single_chunk_fallback(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, architect=False)
    fake.set_default("architect", "Here is my plan: {not json at all")
    fake.set_default("coder", code_reply("app.py", "print('hi')"))
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    assert events[-1].event == "task_completed"
    assert len(fake.requests_for("architect")) == 2
    assert system_kinds(events)[:2] == ["invalid_json", "fallback"]
    assert [a["path"] for a in events[-1].data["artifacts"]] == ["app.py", "README.md"]


async def test_plan_fixed_on_retry_is_used(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1, architect=False)
    fake.script("architect", '```json\n{"chunks": [oops]}\n```', plan_reply(("x", "X", [])))
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    coders = [
        e.data["chunk_id"]
        for e in events
        if e.event == "chunk_started" and e.data["role"] == "coder"
    ]
    assert coders == ["x"]


async def test_unreadable_verdict_is_delivered_unreviewed_not_crashed(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    fake.set_default("reviewer", "Looks fine to me!")
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    assert events[-1].event == "task_completed"
    assert system_kinds(events) == ["invalid_json", "fallback"]
    assert "not reviewed" in events[-1].data["content"]


async def test_budget_stops_the_run_with_a_clear_error(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, architect=False)
    fake.script(
        "architect",
        Reply(
            text=plan_reply(("c1", "a", []), ("c2", "b", [])),
            prompt_tokens=1000,
            completion_tokens=1000,
        ),
    )
    created = await start_task(client, key, {"task": "Build it", "budget_usd": 0.0005})
    events = await collect(client, created["stream_id"], key)

    assert events[-1].event == "task_error"
    assert events[-1].data["code"] == "budget_exceeded"
    assert "task_completed" not in names(events)
    assert fake.requests_for("coder") == []  # stopped before paying for more
    status = (
        await client.get(f"/api/stream/status/{created['stream_id']}", headers={"X-API-Key": key})
    ).json()
    assert status["status"] == "failed"


async def test_unknown_model_price_is_reported_not_guessed(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    body = {"task": "Build it", "models": {"coder": "my-local-model"}}
    created = await start_task(client, key, body)
    events = await collect(client, created["stream_id"], key)

    coder_done = next(
        e for e in events if e.event == "chunk_completed" and e.data["role"] == "coder"
    )
    assert coder_done.data["model"] == "my-local-model"
    assert coder_done.data["cost_usd"] is None
    assert events[-1].data["metrics"]["cost_usd"] is None
    assert "budget" in system_kinds(events)
    assert fake.requests_for("coder")[0].model == "my-local-model"
