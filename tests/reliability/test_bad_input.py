"""Bad input, as clients really send it: a clear 4xx, the socket kept, nothing changed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from fakes.openai_server import FakeOpenAI
from support import ServerThread, collect, script_happy_path, start_task

BACKENDS = ("embedded", "scaleout")

MALFORMED = [
    pytest.param("null", 400, id="null"),
    pytest.param("[1, 2]", 400, id="array"),
    pytest.param('"x"', 400, id="string"),
    pytest.param("42", 400, id="number"),
    pytest.param("{not json", 400, id="not-json"),
    pytest.param('{"action": "dance"}', 422, id="unknown-action"),
    pytest.param('{"action": ["start"]}', 422, id="action-not-a-string"),
    pytest.param('{"action": "subscribe", "stream_id": 7}', 422, id="stream-id-number"),
    pytest.param('{"action": "subscribe", "stream_id": "s", "last_event_id": "3"}', 422, id="lei"),
    pytest.param('{"action": "cancel"}', 422, id="cancel-without-id"),
    pytest.param('{"action": "start", "task": 5}', 422, id="start-task-number"),
    pytest.param('{"action": "start", "task": "t", "context": []}', 422, id="start-context"),
    pytest.param(json.dumps({"action": "start", "task": "x" * 2_000_000}), 413, id="oversized"),
]


def ws_url(server: ServerThread) -> str:
    return server.base_url.replace("http", "ws") + "/api/stream/ws"


async def test_every_malformed_websocket_message_gets_an_error_and_the_socket_lives_on(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    """One socket: a task is started and streaming on it, then every kind of bad message is
    sent; each gets its error reply, and the stream keeps coming to its end."""
    script_happy_path(fake, chunks=1, coder_delay_s=0.05)
    headers = {"X-API-Key": key}
    async with websockets.connect(ws_url(server), additional_headers=headers, max_size=None) as ws:
        await ws.send(json.dumps({"action": "start", "task": "Build a tiny key-value store"}))
        created = await receive(ws, lambda m: m["event"] == "task_created")
        stream_id = created["data"]["stream_id"]
        for param in MALFORMED:
            raw, status = param.values
            await ws.send(raw)
            reply = await receive(ws, lambda m: m["event"] == "error")
            error = reply["data"]["error"]
            assert (
                error["code"]
                in {400: ("bad_request",), 413: ("too_large",), 422: ("invalid_request",)}[status]
            ), (param.id, error)
            assert error["message"] and "Traceback" not in error["message"]
        await ws.send(b"\x00\x01binary")
        binary = await receive(ws, lambda m: m["event"] == "error")
        assert "binary" in binary["data"]["error"]["message"]
        terminal = await receive(ws, lambda m: m["event"] == "task_completed")
        assert terminal["data"]["stream_id"] == stream_id
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        listed = (await client.get("/api/v1/tasks", headers=headers)).json()
        assert listed["total"] == 1  # no bad "start" created anything


async def receive(ws: Any, wanted: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads(await ws.recv())
            if wanted(message):
                return dict(message)


@pytest.mark.parametrize(
    "query",
    [
        "offset=10000000000000000000",
        "offset=-1",
        "limit=0",
        "limit=100000000000000000000",
        "limit=abc",
    ],
)
async def test_out_of_range_query_parameters_are_422(
    client: httpx.AsyncClient, key: str, query: str
) -> None:
    response = await client.get(f"/api/v1/tasks?{query}", headers={"X-API-Key": key})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_team_size_as_a_word_or_a_number_shares_one_cache_partition(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    """`small` (the plan's default) is accepted, and a head count in the same band (3) is the
    same cache partition: the second task is served from the cache."""
    script_happy_path(fake, chunks=1)
    task = "Build a tiny key-value store with get and set"
    first = await start_task(client, key, {"task": task, "context": {"team_size": "small"}})
    events = await collect(client, first["stream_id"], key)
    assert events[-1].event == "task_completed"
    assert events[-1].data["metrics"]["cached"] is False
    calls = len(fake.requests)
    second = await start_task(client, key, {"task": task, "context": {"team_size": 3}})
    again = await collect(client, second["stream_id"], key)
    assert again[-1].event == "task_completed" and again[-1].data["metrics"]["cached"] is True
    assert len(fake.requests) == calls
    third = await start_task(client, key, {"task": task, "context": {"team_size": 50}})
    other = await collect(client, third["stream_id"], key)
    assert other[-1].data["metrics"]["cached"] is False  # "large" is another partition


async def test_resume_beyond_the_end_is_a_clear_400(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    created = await start_task(client, key)
    events = await collect(client, created["stream_id"], key)
    last = events[-1].seq
    headers = {"X-API-Key": key}
    at_end = await client.get(
        created["events_url"], headers={**headers, "Last-Event-ID": str(last)}
    )
    assert at_end.status_code == 204
    for ahead in (
        {"headers": {**headers, "Last-Event-ID": str(last + 1)}},
        {"headers": headers, "params": {"last_event_id": last + 50}},
    ):
        response = await client.get(created["events_url"], **ahead)  # type: ignore[arg-type]
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "last_event_id_ahead"
    huge = await client.get(
        created["events_url"], headers={**headers, "Last-Event-ID": "1" + "0" * 30}
    )
    assert huge.status_code == 422


async def test_nul_characters_are_refused_alike_on_every_backend(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    """PostgreSQL cannot store or compare NUL in text; the API refuses it before any backend
    sees it, found by tests/reliability/test_fuzz.py."""
    headers = {"X-API-Key": key}
    for body in (
        {"task": "build\x00it"},
        {"task": "t", "context": {"notes\x00": "x"}},
        {"task": "t", "context": {"stack": [["deep\x00"]]}},
    ):
        response = await client.post("/api/stream/task", json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["error"]["message"]
    for method, path in (
        ("GET", "/api/v1/tasks/%00"),
        ("GET", "/api/stream/status/str_%00"),
        ("GET", "/api/stream/events/%00"),
        ("DELETE", "/api/v1/cache/%00x"),
    ):
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 400, (path, response.text)
    assert (await client.get("/api/v1/tasks", headers=headers)).json()["total"] == 0
    assert fake.requests == []
