"""A whole sequential run over real HTTP: event order, live tokens, concurrency, artifacts."""

from __future__ import annotations

import httpx

from fakes.openai_server import FakeOpenAI
from support import collect, iter_events, names, script_happy_path, start_task


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
