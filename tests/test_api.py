"""The HTTP API of SPEC §4 over real HTTP: validation, auth and tenancy, tickets, rate limit,
status, history, collaborate, agents, health, metrics, OpenAPI and the error shape."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from facilitair.config import Settings
from fakes.openai_server import FakeOpenAI, Reply
from support import (
    ServerThread,
    collect,
    iter_events,
    new_key,
    plan_reply,
    script_happy_path,
    service_env,
    start_task,
)

# Every test here runs on the embedded backend and on PostgreSQL + Redis (conftest.py).
BACKENDS = ("embedded", "scaleout")

MakeServer = Callable[..., ServerThread]


# --- helpers ------------------------------------------------------------------------------


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is `{"error": {"code", "message"}}` with this status, and no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def script_runs(fake: FakeOpenAI) -> None:
    """Every task (not only the first) plans two chunks, codes, passes review, documents."""
    script_happy_path(fake, chunks=2)
    fake.set_default("architect", plan_reply(("c1", "Module one", []), ("c2", "Module two", [])))


async def task_total(client: httpx.AsyncClient, key: str) -> int:
    response = await client.get("/api/v1/tasks", headers=auth(key))
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def run_to_end(client: httpx.AsyncClient, key: str) -> tuple[dict[str, Any], list[Any]]:
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)
    assert events[-1].event == "task_completed", [e.event for e in events]
    return created, events


async def get_ticket(client: httpx.AsyncClient, key: str, stream_id: str) -> str:
    response = await client.post(f"/api/stream/{stream_id}/ticket", headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stream_id"] == stream_id and body["expires_in"] > 0
    return str(body["ticket"])


async def events_with_ticket(client: httpx.AsyncClient, stream_id: str, ticket: str) -> Any:
    return await client.get(f"/api/stream/events/{stream_id}", params={"ticket": ticket})


@asynccontextmanager
async def connect(server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def bob(settings: Settings) -> str:
    return new_key(settings, "bob")


# --- 1. bad input creates nothing --------------------------------------------------------

BAD_BODIES = [
    pytest.param({}, 422, "invalid_request", id="missing-task"),
    pytest.param({"task": ""}, 422, "invalid_request", id="empty-task"),
    pytest.param({"task": "  \n\t  "}, 422, "invalid_request", id="blank-task"),
    pytest.param({"task": "x" * 20_001}, 413, "too_large", id="task-too-long"),
    pytest.param({"task": 42}, 422, "invalid_request", id="task-number"),
    pytest.param({"task": "t", "context": {"team_size": ""}}, 422, None, id="team-size-empty"),
    pytest.param({"task": "t", "context": {"team_size": 0}}, 422, None, id="team-size-zero"),
    pytest.param({"task": "t", "context": {"team_size": 2.5}}, 422, None, id="team-size-float"),
    pytest.param({"task": "t", "context": {"team_size": ["s"]}}, 422, None, id="team-size-list"),
    pytest.param({"task": "t", "context": {"team_size": "x" * 33}}, 422, None, id="team-size-long"),
    pytest.param({"task": "t", "context": {"team_size": "\n;"}}, 422, None, id="team-size-junk"),
    pytest.param({"task": "t", "budget_usd": "ten dollars"}, 422, None, id="budget-str"),
    pytest.param({"task": "t", "budget_usd": "1.5"}, 422, None, id="budget-numeric-str"),
    pytest.param({"task": "t", "workflow": "parallel"}, 422, None, id="workflow-unknown"),
    pytest.param({"task": "t", "workflow": "nope"}, 422, None, id="workflow-nope"),
    pytest.param({"task": "t", "budget_usd": -1}, 422, None, id="budget-negative"),
    pytest.param({"task": "t", "budget_usd": 0}, 422, None, id="budget-zero"),
    pytest.param({"task": "t", "priority": "high"}, 422, None, id="unknown-field"),
    pytest.param({"task": "t", "models": {"hacker": "gpt-x"}}, 422, None, id="unknown-role"),
    pytest.param(["task"], 422, None, id="not-an-object"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_bad_input_is_refused_and_creates_no_task(
    client: httpx.AsyncClient,
    key: str,
    fake: FakeOpenAI,
    body: Any,
    status: int,
    code: str | None,
) -> None:
    response = await client.post("/api/stream/task", json=body, headers=auth(key))
    assert_error(response, status, code)
    await asyncio.sleep(0.05)  # a wrongly started run would have called the LLM by now
    assert await task_total(client, key) == 0
    assert fake.requests == []


async def test_malformed_json_is_400_invalid_json(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    headers = {**auth(key), "Content-Type": "application/json"}
    response = await client.post("/api/stream/task", content=b'{"task": "x",', headers=headers)
    assert_error(response, 400, "invalid_json")
    assert await task_total(client, key) == 0
    assert fake.requests == []


def big_body() -> bytes:
    return json.dumps({"task": "t", "context": {"notes": "x" * 1_100_000}}).encode()


async def test_body_over_one_megabyte_is_413(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    headers = {**auth(key), "Content-Type": "application/json"}
    response = await client.post("/api/stream/task", content=big_body(), headers=headers)
    assert_error(response, 413, "too_large")
    assert await task_total(client, key) == 0
    assert fake.requests == []


async def test_chunked_body_over_one_megabyte_is_413(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    """Without Content-Length (chunked transfer encoding) the limit must hold all the same."""
    body = big_body()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    headers = {**auth(key), "Content-Type": "application/json"}
    response = await client.post("/api/stream/task", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "too_large")
    assert await task_total(client, key) == 0


async def test_unknown_context_keys_are_accepted(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    body = {"task": "Build a cache", "context": {"team_size": 3, "favourite_colour": "teal"}}
    created = await start_task(client, key, body)
    assert created["stream_id"].startswith("str_")
    assert await task_total(client, key) == 1


# --- 2. auth and tenancy ------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, auth("fac_wrong"), auth("not-even-a-key")])
async def test_missing_or_wrong_key_is_401(
    client: httpx.AsyncClient, fake: FakeOpenAI, headers: dict[str, str]
) -> None:
    response = await client.post("/api/stream/task", json={"task": "t"}, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert_error(await client.get("/api/v1/tasks", headers=headers), 401, "unauthorized")
    assert fake.requests == []


async def test_revoked_key_is_401(client: httpx.AsyncClient, key: str, settings: Settings) -> None:
    assert (await client.get("/api/v1/tasks", headers=auth(key))).status_code == 200
    cli = Path(sys.executable).with_name("facilitair")
    env = {**os.environ, **service_env(settings)}
    done = await asyncio.to_thread(
        subprocess.run, [str(cli), "keys", "revoke", "alice"], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert_error(await client.get("/api/v1/tasks", headers=auth(key)), 401, "unauthorized")
    response = await client.post("/api/stream/task", json={"task": "t"}, headers=auth(key))
    assert_error(response, 401, "unauthorized")


async def test_another_tenant_gets_404_everywhere(
    client: httpx.AsyncClient, key: str, bob: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    created, _ = await run_to_end(client, key)
    sid, tid = created["stream_id"], created["task_id"]
    foreign = [
        client.get(f"/api/stream/events/{sid}", headers=auth(bob)),
        client.get(f"/api/stream/status/{sid}", headers=auth(bob)),
        client.post(f"/api/stream/{sid}/cancel", headers=auth(bob)),
        client.post(f"/api/stream/{sid}/ticket", headers=auth(bob)),
        client.get(f"/api/v1/tasks/{tid}", headers=auth(bob)),
    ]
    for response in await asyncio.gather(*foreign):
        error = assert_error(response, 404, "not_found")
        assert "alice" not in error["message"]
    listing = (await client.get("/api/v1/tasks", headers=auth(bob))).json()
    assert listing["total"] == 0 and listing["items"] == []


async def test_keys_of_one_tenant_share_its_tasks(
    client: httpx.AsyncClient, key: str, settings: Settings, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    created = await start_task(client, key)
    other = await asyncio.to_thread(new_key, settings, "alice2", "alice")
    listing = (await client.get("/api/v1/tasks", headers=auth(other))).json()
    assert [item["task_id"] for item in listing["items"]] == [created["task_id"]]
    status = await client.get(f"/api/stream/status/{created['stream_id']}", headers=auth(other))
    assert status.status_code == 200, status.text


# --- 3. tickets ---------------------------------------------------------------------------


async def test_ticket_streams_events_without_a_header(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    created = await start_task(client, key)
    ticket = await get_ticket(client, key, created["stream_id"])
    params = {"ticket": ticket}
    events = [e async for e in iter_events(client, created["stream_id"], params=params)]
    assert events[0].event == "task_started"
    assert events[-1].event == "task_completed"


async def test_ticket_for_one_stream_does_not_open_another(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    first, _ = await run_to_end(client, key)
    second, _ = await run_to_end(client, key)
    ticket = await get_ticket(client, key, first["stream_id"])
    assert_error(await events_with_ticket(client, second["stream_id"], ticket), 401)


async def test_garbage_ticket_is_401(client: httpx.AsyncClient, key: str, fake: FakeOpenAI) -> None:
    script_runs(fake)
    created, _ = await run_to_end(client, key)
    for garbage in ["garbage", "eyJzIjoiYSJ9.AAAA.BBBB"]:
        assert_error(await events_with_ticket(client, created["stream_id"], garbage), 401)


async def test_expired_ticket_is_401(make_server: MakeServer, fake: FakeOpenAI) -> None:
    script_runs(fake)
    server = make_server(ticket_ttl_s=1)
    key = new_key(server.settings, "alice")
    async with connect(server) as client:
        created, _ = await run_to_end(client, key)
        ticket = await get_ticket(client, key, created["stream_id"])
        await asyncio.sleep(2.1)
        error = assert_error(await events_with_ticket(client, created["stream_id"], ticket), 401)
        assert "expired" in error["message"]


async def test_alice_ticket_cannot_read_bob_stream(
    client: httpx.AsyncClient, key: str, bob: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    mine, _ = await run_to_end(client, key)
    theirs, _ = await run_to_end(client, bob)
    assert_error(
        await client.post(f"/api/stream/{theirs['stream_id']}/ticket", headers=auth(key)), 404
    )
    ticket = await get_ticket(client, key, mine["stream_id"])
    response = await events_with_ticket(client, theirs["stream_id"], ticket)
    assert response.status_code in (401, 404)
    assert_error(response, response.status_code)


# --- 4. rate limit ------------------------------------------------------------------------


async def test_rate_limit_is_per_key_with_retry_after(
    make_server: MakeServer, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    server = make_server(rate_limit_per_minute=2)
    first = new_key(server.settings, "alice")
    second = new_key(server.settings, "alice2", "alice")
    async with connect(server) as client:
        await start_task(client, first)
        await start_task(client, first)
        response = await client.post("/api/stream/task", json={"task": "t"}, headers=auth(first))
        assert_error(response, 429, "rate_limited")
        retry_after = response.headers["Retry-After"]
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
        assert await task_total(client, first) == 2
        await start_task(client, second)
        assert await task_total(client, second) == 3


# --- 5. status and cancel after completion ------------------------------------------------


async def test_status_after_completion_and_cancel_is_409(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    created, events = await run_to_end(client, key)
    response = await client.get(created["status_url"], headers=auth(key))
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["status"] == "completed"
    assert status["stream_id"] == created["stream_id"]
    assert status["last_event_id"] == len(events) == events[-1].seq
    assert status["completed_chunks"] == status["total_chunks"] > 0
    assert status["tokens"]["prompt"] > 0 and status["tokens"]["completion"] > 0
    assert status["tokens"]["total"] == status["tokens"]["prompt"] + status["tokens"]["completion"]
    assert status["cost_usd"] is not None and status["cost_usd"] > 0
    assert status["finished_at"] is not None
    cancel = await client.post(f"/api/stream/{created['stream_id']}/cancel", headers=auth(key))
    assert_error(cancel, 409, "conflict")


# --- 6. task history ----------------------------------------------------------------------


async def test_task_list_is_paginated_newest_first(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    ids = []
    for n in range(3):
        ids.append((await start_task(client, key, {"task": f"Task number {n}"}))["task_id"])
        await asyncio.sleep(0.01)  # distinct created_at, so "newest first" is well defined
    page1 = (await client.get("/api/v1/tasks?limit=2&offset=0", headers=auth(key))).json()
    page2 = (await client.get("/api/v1/tasks?limit=2&offset=2", headers=auth(key))).json()
    assert (page1["total"], page1["limit"], page1["offset"]) == (3, 2, 0)
    assert (page2["total"], page2["limit"], page2["offset"]) == (3, 2, 2)
    listed = [item["task_id"] for item in page1["items"] + page2["items"]]
    assert listed == ids[::-1]
    assert page1["items"][0]["task"] == "Task number 2"
    assert_error(await client.get("/api/v1/tasks?limit=0", headers=auth(key)), 422)


async def test_task_detail_has_result_and_artifacts(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    created, _ = await run_to_end(client, key)
    response = await client.get(f"/api/v1/tasks/{created['task_id']}", headers=auth(key))
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["status"] == "completed"
    assert detail["stream_id"] == created["stream_id"]
    assert detail["task"] == "Build a tiny key-value store"
    assert "pkg/c1.py" in detail["result"]["content"]
    paths = sorted(a["path"] for a in detail["result"]["artifacts"])
    assert paths == ["README.md", "pkg/c1.py", "pkg/c2.py"]
    assert detail["error"] is None
    missing = await client.get("/api/v1/tasks/task_doesnotexist", headers=auth(key))
    assert_error(missing, 404, "not_found")


# --- 7. collaborate -----------------------------------------------------------------------


async def test_collaborate_returns_the_whole_result(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    response = await client.post("/api/v1/collaborate", json={"task": "t"}, headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["error"] is None
    assert "pkg/c2.py" in body["result"]["content"]
    assert {a["path"] for a in body["result"]["artifacts"]} == {
        "README.md",
        "pkg/c1.py",
        "pkg/c2.py",
    }
    assert body["result"]["metrics"]["llm_calls"] == 5
    assert await task_total(client, key) == 1


async def test_collaborate_reports_a_failed_run(make_server: MakeServer, fake: FakeOpenAI) -> None:
    fake.set_default("*", Reply(status=500))
    server = make_server(llm_max_retries=1)
    key = new_key(server.settings, "alice")
    async with connect(server) as client:
        response = await client.post("/api/v1/collaborate", json={"task": "t"}, headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["result"] is None
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert body["error"]["error"]
    assert 1 <= len(fake.requests) <= 2 * 2  # one retry, maybe a fallback model


# --- 8. agents, health, metrics -----------------------------------------------------------


async def test_agents_lists_roles_with_models(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get("/api/v1/agents", headers=auth(key))
    assert response.status_code == 200, response.text
    agents = {a["role"]: a for a in response.json()["agents"]}
    sequential = {"architect", "coder", "reviewer", "documenter"}
    assert set(agents) == sequential | {"member", "judge", "chairman"}  # the council's roles
    for agent in agents.values():
        assert isinstance(agent["model"], str) and agent["model"]
        assert isinstance(agent["temperature"], int | float)
        assert isinstance(agent["max_tokens"], int) and agent["max_tokens"] > 0


async def test_health_is_ok_when_everything_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    for name in ("store", "bus", "llm:default"):
        assert body["checks"][name]["ok"] is True, body


async def test_health_is_503_when_the_llm_is_down(make_server: MakeServer) -> None:
    server = make_server(llm_base_url="http://127.0.0.1:9/v1")
    async with connect(server) as client:
        response = await client.get("/api/v1/health")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["llm:default"]["ok"] is False
    assert body["checks"]["llm:default"]["detail"]
    assert body["checks"]["store"]["ok"] is True
    assert "Traceback" not in response.text


async def test_metrics_count_started_tasks(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_runs(fake)
    await run_to_end(client, key)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "facilitair_tasks_started_total 1.0" in response.text


# --- 9. OpenAPI ---------------------------------------------------------------------------

ROUTES = {
    "/api/stream/task": {"post"},
    "/api/stream/events/{stream_id}": {"get"},
    "/api/stream/status/{stream_id}": {"get"},
    "/api/stream/{stream_id}/cancel": {"post"},
    "/api/stream/{stream_id}/ticket": {"post"},
    "/api/v1/collaborate": {"post"},
    "/api/v1/tasks": {"get"},
    "/api/v1/tasks/{task_id}": {"get"},
    "/api/v1/agents": {"get"},
    "/api/v1/health": {"get"},
    "/metrics": {"get"},
}


async def test_openapi_lists_every_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    for path, methods in ROUTES.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))
    task = schema["components"]["schemas"]["TaskRequest"]["properties"]["task"]
    assert task["maxLength"] == 20_000


async def test_docs_page_is_html(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text


# --- 10. unknown route --------------------------------------------------------------------


async def test_unknown_route_is_404_json(client: httpx.AsyncClient, key: str) -> None:
    assert_error(await client.get("/api/nope", headers=auth(key)), 404, "not_found")
    assert_error(await client.get("/nothing/here"), 404, "not_found")
