"""The offline default for real: SmolLM2-135M through llama.cpp, no endpoint configured."""

from __future__ import annotations

from pathlib import Path

import httpx

from facilitair.config import Settings
from facilitair.server.background import BackgroundServer
from support import collect, new_key, start_task


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
    assert events[-1].event == "task_completed", events[-1].data
    turns = [e for e in events if e.event == "chunk_completed"]
    assert turns and all(t.data["model"] == "SmolLM2-135M-Instruct" for t in turns)
    assert all(0 < t.data["usage"]["completion_tokens"] <= 40 for t in turns)
    first_token = next(i for i, e in enumerate(events) if e.event == "token_stream")
    first_done = next(i for i, e in enumerate(events) if e.event == "chunk_completed")
    assert first_token < first_done  # text streamed before the turn ended
    assert events[-1].data["metrics"]["cost_usd"] == 0.0
