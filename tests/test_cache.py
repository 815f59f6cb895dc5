"""The semantic cache through the real server: partitions, hits, refresh/off, what is never
cached, TTL, eviction, restarts, and the replayed stream's shape."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fakes.openai_server import FakeOpenAI, Reply
from support import Received, ServerThread, collect, names, new_key, script_happy_path, start_task

# Every test here runs on the embedded backend and on PostgreSQL + Redis (conftest.py).
BACKENDS = ("embedded", "scaleout")

TASK = "Build a REST API with JWT authentication"
PYTHON = {"preferred_language": "Python", "frameworks": ["FastAPI"]}


def body(task: str = TASK, context: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"task": task, "context": PYTHON if context is None else context, **extra}


async def run(client: httpx.AsyncClient, key: str, request: dict[str, Any]) -> list[Received]:
    created = await start_task(client, key, request)
    return await collect(client, created["stream_id"], key)


def cached(events: list[Received]) -> bool:
    assert events[-1].event == "task_completed", names(events)
    return bool(events[-1].data["metrics"]["cached"])


async def cli_run(args: list[Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, args, env=env, capture_output=True, text=True, timeout=60
    )


def contents(events: list[Received]) -> dict[str, str]:
    return {e.data["chunk_id"]: e.data["content"] for e in events if e.event == "chunk_completed"}


async def stats(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await client.get("/api/v1/cache/stats", headers={"X-API-Key": key})
    assert response.status_code == 200
    return dict(response.json())


async def test_a_repeat_in_the_same_context_is_served_from_the_cache_with_the_full_shape(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.01)
    first = await run(client, key, body())
    calls = len(fake.requests)
    second = await run(client, key, body())

    assert not cached(first) and cached(second)
    assert len(fake.requests) == calls  # no LLM call at all
    shape = [n for n in names(second) if n != "token_stream"]
    assert shape[:3] == ["task_started", "system_message", "task_progress"]
    assert shape[-1] == "task_completed"
    hit = second[1].data
    assert hit["kind"] == "cache_hit"
    assert hit["message"].startswith("Cache hit (100% match) • saved $")
    original = contents(first)
    replayed = contents(second)
    assert replayed == original
    streamed = "".join(
        e.data["tokens"] for e in second if e.event == "token_stream" and e.data["chunk_id"] == "c1"
    )
    assert streamed == original["c1"]
    metrics = second[-1].data["metrics"]
    assert metrics["cost_usd"] == 0 and metrics["llm_calls"] == 0
    assert metrics["similarity"] >= 0.99
    assert metrics["saved_usd"] == first[-1].data["metrics"]["cost_usd"]
    assert metrics["saved_s"] >= 0
    assert second[-1].data["artifacts"] == first[-1].data["artifacts"]
    figures = await stats(client, key)
    assert (figures["entries"], figures["hits"], figures["misses"]) == (1, 1, 1)
    assert figures["saved_usd"] > 0


async def test_partitions_separate_tenants_and_contexts_but_not_spellings(
    client: httpx.AsyncClient, key: str, settings: Any, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    assert not cached(await run(client, key, body()))

    spelled = {"preferred_language": " python3 ", "frameworks": ["fastapi"], "team": "x"}
    assert cached(await run(client, key, body(context=spelled)))

    other_language = {"preferred_language": "Go", "frameworks": ["FastAPI"]}
    assert not cached(await run(client, key, body(context=other_language)))
    other_framework = {"preferred_language": "Python", "frameworks": ["Django"]}
    assert not cached(await run(client, key, body(context=other_framework)))

    bob = new_key(settings, "bob")
    assert not cached(await run(client, bob, body()))
    assert (await stats(client, bob))["entries"] == 1


async def test_a_paraphrase_hits_and_a_changed_requirement_does_not(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    await run(client, key, body("Build a REST API with JWT authentication"))

    assert cached(await run(client, key, body("Create a REST API that uses JWT authentication")))
    reworded = await run(client, key, body("Hey! Could you write a REST API with JWT auth? Thx"))
    assert cached(reworded)
    hit = next(e.data for e in reworded if e.data.get("kind") == "cache_hit")
    assert "saved $" in hit["message"] and reworded[-1].data["metrics"]["saved_usd"] > 0
    assert hit["details"]["rule"] is None and hit["details"]["similarity"] >= 0.72
    assert not cached(await run(client, key, body("Build a REST API without JWT authentication")))
    assert not cached(await run(client, key, body("Build a GraphQL API with JWT authentication")))
    in_go = body("Build a REST API with JWT authentication in Go")
    assert not cached(await run(client, key, in_go))
    refused = await run(client, key, body("Build a REST API with OAuth authentication"))
    assert not cached(refused)
    miss = next(e.data for e in refused if e.data.get("kind") == "cache_miss")
    assert miss["details"]["rule"] and miss["details"]["detail"] in miss["message"]


async def test_refresh_ignores_the_hit_and_replaces_the_entry_and_off_bypasses_the_cache(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    await run(client, key, body())

    refreshed = await run(client, key, body(cache="refresh"))
    assert not cached(refreshed)
    assert (await stats(client, key))["entries"] == 1  # replaced, not added
    served = await run(client, key, body())
    assert cached(served)
    assert served[-1].data["content"] == refreshed[-1].data["content"]

    assert not cached(await run(client, key, body(cache="off")))
    assert not cached(await run(client, key, body("Write a CLI todo app", cache="off")))
    assert (await stats(client, key))["entries"] == 1  # `off` stores nothing


async def test_failed_and_cancelled_runs_are_never_cached(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1, architect=False)
    fake.script("architect", Reply(status=400, text="bad request"))
    failed = await run(client, key, body())
    assert failed[-1].event == "task_error"

    fake.set_default("coder", Reply(text="line\n" * 200, delay_s=0.05))
    created = await start_task(client, key, body("Write a CLI todo app"))
    await fake.wait_for_async(lambda: bool(fake.requests_for("coder")))
    await client.post(f"/api/stream/{created['stream_id']}/cancel", headers={"X-API-Key": key})
    events = await collect(client, created["stream_id"], key)
    assert events[-1].event == "task_cancelled"

    assert (await stats(client, key))["entries"] == 0


async def test_entries_survive_a_restart_and_can_be_deleted(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server()
    key = new_key(server.settings, "alice")
    headers = {"X-API-Key": key}
    script_happy_path(fake, chunks=1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await run(client, key, body())
    server.restart()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        assert cached(await run(client, key, body()))
        detail = (await client.get("/api/v1/tasks?limit=1", headers=headers)).json()
        assert detail["items"][0]["cost_usd"] == 0

        await run(client, key, body("Write a CLI todo app"))
        assert (await stats(client, key))["entries"] == 2
        bob = new_key(server.settings, "bob")
        assert (await client.delete("/api/v1/cache", headers={"X-API-Key": bob})).json() == {
            "deleted": 0
        }
        cleared = await client.delete("/api/v1/cache", headers=headers)
        assert cleared.json() == {"deleted": 2}
        assert not cached(await run(client, key, body()))
        missing = await client.delete("/api/v1/cache/cache_nope", headers=headers)
        assert missing.status_code == 404


async def test_old_entries_expire_and_the_least_recently_hit_are_evicted(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(cache_max_entries=2)
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await run(client, key, body("Write a CLI todo app"))
        await run(client, key, body("Build a chat server with websockets"))
        assert cached(await run(client, key, body("Write a CLI todo app")))  # now most recent
        await run(client, key, body("Parse CSV files into a SQLite database"))
        assert (await stats(client, key))["entries"] == 2
        assert cached(await run(client, key, body("Write a CLI todo app")))
        assert not cached(await run(client, key, body("Build a chat server with websockets")))
    # (Stopped first: on the scale-out backend any process may run a task, and this one keeps
    # entries for a week.)
    server.stop()

    short = make_server(cache_ttl_s=1)
    key = new_key(short.settings, "alice")
    async with httpx.AsyncClient(base_url=short.base_url, timeout=30) as client:
        await run(client, key, body())
        await asyncio.sleep(1.2)
        assert not cached(await run(client, key, body()))


async def test_an_openai_compatible_embeddings_endpoint_can_replace_the_local_model(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(embeddings="openai", embeddings_model="fake-embed")
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        assert not cached(await run(client, key, body()))
        assert cached(await run(client, key, body()))
        assert not cached(await run(client, key, body("Write a CLI todo app")))
        figures = await stats(client, key)
    assert figures["embedder"] == "openai:fake-embed"
    # every new text goes to the endpoint; a repeated one reuses its embedding
    assert fake.embedding_inputs.count(TASK) == 1
    assert fake.embedding_inputs.count("Write a CLI todo app") == 1


async def test_a_refused_near_match_is_explained_and_the_cli_shows_the_saving(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await run(client, key, body("Build a REST API with JWT authentication for 10 users"))
        events = await run(
            client, key, body("Build a REST API with JWT authentication for 50 users")
        )
    notes = [
        e.data for e in events if e.event == "system_message" and e.data["kind"] == "cache_miss"
    ]
    assert len(notes) == 1 and "differs" in notes[0]["message"]

    env = {**os.environ, "FAC_API_BASE": server.base_url, "FAC_API_KEY": key}
    cli = Path(sys.executable).parent / "facilitair"
    repeat = ["run", "Build a REST API with JWT authentication for 10 users"]
    repeat += ["--language", "Python", "--framework", "FastAPI"]
    done = await cli_run([cli, *repeat], env)
    assert done.returncode == 0, done.stderr
    hit = [json.loads(line) for line in done.stdout.splitlines()][1]
    assert hit["data"]["kind"] == "cache_hit"
    assert "saved $" in hit["data"]["message"]
    stats_out = await cli_run([cli, "cache", "stats"], env)
    assert json.loads(stats_out.stdout)["hits"] == 1


async def test_configured_embedding_files_replace_the_packaged_ones(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, tmp_path: Path
) -> None:
    from facilitair.cache.embeddings import LocalEmbedder

    packaged = LocalEmbedder()
    model = tmp_path / "model.onnx"
    model.write_bytes(packaged.model_path.read_bytes())
    good = make_server(embeddings_model_path=model)
    missing = make_server(embeddings_model_path=tmp_path / "nope.onnx")
    script_happy_path(fake, chunks=1)
    for server, enabled in ((good, True), (missing, False)):
        key = new_key(server.settings, "alice")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            assert (await stats(client, key))["enabled"] is enabled
            assert (await run(client, key, body()))[-1].event == "task_completed"


async def test_the_verifier_decides_borderline_matches_and_shows_its_verdict_and_cost(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    """With `cache_verify`, a match in the borderline band goes to the LLM verifier (here the
    whole band: every match the guard lets through). A YES is a hit that says who confirmed it
    and what the call cost; a NO is a miss that says why."""
    server = make_server(cache_verify=True, cache_verify_band=1.0)
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    reworded = "Please build a REST API with JWT authentication"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await run(client, key, body())  # stored; nothing to verify yet
        assert fake.requests_for("default") == []

        fake.script("default", Reply("YES"))
        events = await run(client, key, body(reworded))
        assert cached(events)
        asked = fake.requests_for("default")
        assert len(asked) == 1 and TASK in asked[0].messages[0]["content"]
        assert reworded in asked[0].messages[0]["content"]
        hit = next(e.data for e in events if e.data.get("kind") == "cache_hit")
        verdict = hit["details"]["verifier"]
        assert verdict["same"] is True and verdict["answer"] == "YES"
        agents = (await client.get("/api/v1/agents", headers={"X-API-Key": key})).json()
        reviewer = next(a for a in agents["agents"] if a["role"] == "reviewer")
        assert verdict["model"] == reviewer["model"]
        assert verdict["latency_s"] > 0 and verdict["cost_usd"] > 0  # priced from its usage
        assert "confirmed:" in hit["message"] and "said YES" in hit["message"]
        metrics = events[-1].data["metrics"]
        assert metrics["llm_calls"] == 1
        assert metrics["cost_usd"] == verdict["cost_usd"]

        fake.script("default", Reply("NO"))
        events = await run(client, key, body(reworded))
        assert not cached(events)
        miss = next(e.data for e in events if e.data.get("kind") == "cache_miss")
        assert miss["details"]["rule"] == "verifier"
        assert miss["details"]["verifier"]["same"] is False
        assert "said NO" in miss["message"]
