"""A whole sequential run over real HTTP: event order, live tokens, concurrency, artifacts."""

from __future__ import annotations

import itertools

import httpx

from fakes.openai_server import FakeOpenAI
from support import collect, names, script_happy_path, start_task

# Every test here runs on the embedded backend and on PostgreSQL + Redis (conftest.py).
BACKENDS = ("embedded", "scaleout")


async def test_full_run_streams_every_stage_in_order(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.02)
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    seen = names(events)
    assert seen[0] == "task_started"
    assert seen[1] == "task_progress"
    assert seen[-1] == "task_completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    started = [e.data["chunk_id"] for e in events if e.event == "chunk_started"]
    assert started == ["architect", *sorted(started[1:3]), "review", "docs"]
    assert set(started[1:3]) == {"c1", "c2"}
    for event in events:
        assert event.data["stream_id"] == created["stream_id"]
        assert event.data["seq"] == event.seq
        assert event.data["timestamp"].endswith("Z")

    final = events[-1].data
    paths = sorted(a["path"] for a in final["artifacts"])
    assert paths == ["README.md", "pkg/c1.py", "pkg/c2.py"]
    assert final["metrics"]["llm_calls"] == 5
    assert final["metrics"]["cached"] is False
    assert final["metrics"]["prompt_tokens"] > 0
    assert final["metrics"]["cost_usd"] > 0
    assert "pkg/c1.py" in final["content"]


async def test_tokens_reach_the_client_while_the_model_is_still_writing(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1, coder_delay_s=0.05)
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    coder_call = fake.requests_for("coder")[0]
    assert coder_call.last_token_at is not None
    first_token = next(
        e for e in events if e.event == "token_stream" and e.data["chunk_id"] == "c1"
    )
    assert first_token.at < coder_call.last_token_at


async def test_independent_chunks_run_concurrently_and_interleave(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=3, coder_delay_s=0.03)
    created = await start_task(client, key, params={"verbosity": "full"})
    events = await collect(client, created["stream_id"], key)

    order = [e.data["chunk_id"] for e in events if e.event == "token_stream"]
    coder_order = [c for c in order if c.startswith("c")]
    switches = sum(1 for a, b in itertools.pairwise(coder_order) if a != b)
    assert switches > 3, coder_order  # interleaved, not one chunk after another
    calls = fake.requests_for("coder")
    assert max(c.received_at for c in calls) < min(c.finished_at or 0 for c in calls)


async def test_dependent_chunks_wait_for_their_dependencies(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.01, independent=False)
    created = await start_task(client, key)
    await collect(client, created["stream_id"], key)

    first, second = fake.requests_for("coder")
    assert first.finished_at is not None and second.received_at >= first.finished_at
    assert "pkg/c1.py" in second.messages[-1]["content"]  # it sees the code it builds on


async def test_filtered_verbosity_sends_whole_lines(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    pieces = [e.data["tokens"] for e in events if e.event == "token_stream"]
    completed = {
        e.data["chunk_id"]: e.data["content"] for e in events if e.event == "chunk_completed"
    }
    assert all(p.endswith("\n") for p in pieces[:-1])
    coder_text = "".join(
        e.data["tokens"] for e in events if e.event == "token_stream" and e.data["chunk_id"] == "c1"
    )
    assert coder_text == completed["c1"]


async def test_progress_estimates_come_before_the_work_and_follow_the_plan(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=3)
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)

    progress = [e for e in events if e.event == "task_progress"]
    first_chunk = next(i for i, e in enumerate(events) if e.event == "chunk_started")
    assert events.index(progress[0]) < first_chunk
    assert progress[0].data["estimated_time"] > 0
    assert progress[0].data["estimated_cost"] > 0
    after_plan = progress[1].data
    assert after_plan["total_chunks"] == 6  # architect, 3 coders, reviewer, documenter
    assert [p["chunk_id"] for p in after_plan["plan"]][1:4] == ["c1", "c2", "c3"]
    status = (
        await client.get(f"/api/stream/status/{created['stream_id']}", headers={"X-API-Key": key})
    ).json()
    assert status["completed_chunks"] == status["total_chunks"] == 6
    final = events[-1].data["metrics"]
    assert status["tokens"]["prompt"] == final["prompt_tokens"]
    assert status["cost_usd"] == final["cost_usd"]
