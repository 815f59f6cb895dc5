"""The offline default for real: SmolLM2-135M on llama.cpp's server inside the process (xllamacpp),
no endpoint configured."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from facilitair.agents.parsing import parse_plan, parse_verdict
from facilitair.config import Settings
from facilitair.server.background import BackgroundServer
from support import collect, iter_events, new_key, start_task


async def test_a_short_task_runs_end_to_end_on_the_local_model(tmp_path: Path) -> None:
    config = tmp_path / "fast.toml"
    config.write_text("[local]\nmax_tokens = 40\n", encoding="utf-8")
    settings = Settings(data_dir=tmp_path, config=config, llm_base_url=None, cache_enabled=False)
    key = new_key(settings, "alice")
    with BackgroundServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            agents = (await client.get("/api/v1/agents", headers={"X-API-Key": key})).json()
            created = await start_task(client, key, {"task": "Write a Python hello world script"})
            events = await collect(client, created["stream_id"], key)

    assert {a["model"] for a in agents["agents"]} == {"SmolLM2-135M-Instruct"}
    assert all(a["offline"] for a in agents["agents"])
    assert events[-1].event == "task_completed", events[-1].data
    # The plan and the verdict are held to their JSON schemas by llama.cpp's grammar: nothing
    # is asked twice, nothing falls back.
    kinds = [e.data["kind"] for e in events if e.event == "system_message"]
    assert "invalid_json" not in kinds and "fallback" not in kinds, kinds
    by_role = {e.data["role"]: e.data["content"] for e in events if e.event == "chunk_completed"}
    assert parse_plan(by_role["architect"], 8)
    assert parse_verdict(by_role["reviewer"]) is not None
    turns = [e for e in events if e.event == "chunk_completed"]
    assert turns and all(t.data["model"] == "SmolLM2-135M-Instruct" for t in turns)
    free_text = [t for t in turns if t.data["role"] in ("coder", "documenter")]
    assert all(0 < t.data["usage"]["completion_tokens"] <= 40 for t in free_text)
    first_token = next(i for i, e in enumerate(events) if e.event == "token_stream")
    first_done = next(i for i, e in enumerate(events) if e.event == "chunk_completed")
    assert first_token < first_done  # text streamed before the turn ended
    assert events[-1].data["metrics"]["cost_usd"] == 0.0


async def test_cancelling_stops_the_local_model_mid_answer(tmp_path: Path) -> None:
    config = tmp_path / "long.toml"
    config.write_text("[local]\nmax_tokens = 2000\nstop = []\n", encoding="utf-8")
    settings = Settings(data_dir=tmp_path, config=config, llm_base_url=None, cache_enabled=False)
    key = new_key(settings, "alice")
    headers = {"X-API-Key": key}
    task = {"task": "Write a very long essay about the history of every programming language"}
    with BackgroundServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            created = await start_task(client, key, task)
            async for event in iter_events(client, created["stream_id"], key=key):
                if event.event == "token_stream":
                    break
            began = time.monotonic()
            cancelled = await client.post(
                f"/api/stream/{created['stream_id']}/cancel", headers=headers
            )
            stopped_in = time.monotonic() - began
            tail = await collect(client, created["stream_id"], key, last_event_id=event.seq)
            # The llama.cpp slot must be free again: a new task streams at once, not after the
            # cancelled answer's remaining ~2,000 tokens.
            again = await start_task(client, key, {"task": "Say hello"})
            began = time.monotonic()
            async for event in iter_events(client, again["stream_id"], key=key):
                if event.event == "token_stream":
                    break
            next_first_token = time.monotonic() - began
            await client.post(f"/api/stream/{again['stream_id']}/cancel", headers=headers)

    assert cancelled.json()["status"] == "cancelled"
    assert tail[-1].event == "task_cancelled"
    assert stopped_in < 5
    assert next_first_token < 10
