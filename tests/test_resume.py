"""Nothing lost, nothing repeated: Last-Event-ID resume, replay, restarts, several readers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
import websockets

from fakes.openai_server import FakeOpenAI, Reply
from support import (
    Received,
    ServerThread,
    collect,
    iter_events,
    new_key,
    script_happy_path,
    start_task,
)

# Every test here runs on the embedded backend and on PostgreSQL + Redis (conftest.py).
BACKENDS = ("embedded", "scaleout")


def seqs(events: list[Received]) -> list[int]:
    return [e.seq for e in events]


async def test_reconnect_with_last_event_id_resumes_exactly_once(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.02)
    stream_id = (await start_task(client, key))["stream_id"]

    head: list[Received] = []
    async for event in iter_events(client, stream_id, key=key):
        head.append(event)
        if event.event == "token_stream":
            break  # drop the connection mid-run
    assert head[-1].event == "token_stream"
    tail = await collect(client, stream_id, key, last_event_id=head[-1].seq)

    assert seqs(head + tail) == list(range(1, len(head) + len(tail) + 1))
    assert tail[-1].event == "task_completed"
    full = await collect(client, stream_id, key)
    assert [e.data for e in full] == [e.data for e in head + tail]


async def test_query_parameter_resume_and_finished_stream_replay(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    stream_id = (await start_task(client, key))["stream_id"]
    everything = await collect(client, stream_id, key)
    assert everything[-1].event == "task_completed"

    tail = await collect(client, stream_id, key, params={"last_event_id": 3})
    assert seqs(tail) == list(range(4, len(everything) + 1))
    # The first message of every connection tells the client how long to wait to reconnect.
    raw = await client.get(
        f"/api/stream/events/{stream_id}", headers={"X-API-Key": key, "Last-Event-ID": "3"}
    )
    assert raw.text.startswith("id: 4") or "retry: 500" in raw.text.split("\n\n")[0]
    assert raw.headers["cache-control"] == "no-cache"
    assert raw.headers["x-accel-buffering"] == "no"


async def test_reconnect_to_a_fully_read_finished_stream_gets_204(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    stream_id = (await start_task(client, key))["stream_id"]
    events = await collect(client, stream_id, key)

    response = await client.get(
        f"/api/stream/events/{stream_id}",
        headers={"X-API-Key": key, "Last-Event-ID": str(events[-1].seq)},
    )
    assert response.status_code == 204


async def test_two_subscribers_both_get_everything(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.02)
    stream_id = (await start_task(client, key))["stream_id"]
    first, second = await asyncio.gather(
        collect(client, stream_id, key), collect(client, stream_id, key)
    )
    assert [e.data for e in first] == [e.data for e in second]
    assert first[-1].event == "task_completed"


async def test_finished_stream_replays_after_a_server_restart(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server()
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=2)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        stream_id = (await start_task(client, key))["stream_id"]
        before = await collect(client, stream_id, key)
    server.restart()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        after = await collect(client, stream_id, key)
        tail = await collect(client, stream_id, key, last_event_id=5)
    assert [e.data for e in after] == [e.data for e in before]
    assert [e.data for e in tail] == [e.data for e in before[5:]]


async def test_a_task_running_at_shutdown_ends_with_interrupted_after_restart(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server()
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(text="x\n" * 200, delay_s=0.05))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        stream_id = (await start_task(client, key))["stream_id"]
        seen: list[Received] = []
        async for event in iter_events(client, stream_id, key=key):
            seen.append(event)
            if event.event == "token_stream":
                break
    server.restart()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        rest = await collect(client, stream_id, key, last_event_id=seen[-1].seq)
        status = (
            await client.get(f"/api/stream/status/{stream_id}", headers={"X-API-Key": key})
        ).json()
    assert rest[-1].event == "task_error"
    assert rest[-1].data["code"] == "interrupted"
    assert rest[-1].data["retryable"] is True
    assert seqs(rest)[0] == seen[-1].seq + 1
    assert status["status"] == "failed"


async def test_websocket_client_gets_the_same_events(
    server: ServerThread, client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2)
    url = server.base_url.replace("http", "ws") + "/api/stream/ws"
    received: list[dict] = []  # type: ignore[type-arg]
    async with websockets.connect(url, additional_headers={"X-API-Key": key}) as ws:
        await ws.send(json.dumps({"action": "start", "task": "Build a tiny key-value store"}))
        created = json.loads(await ws.recv())
        assert created["event"] == "task_created"
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            received.append(message)
            if message["event"] in ("task_completed", "task_error", "task_cancelled"):
                break
        stream_id = created["data"]["stream_id"]
        await ws.send(
            json.dumps({"action": "subscribe", "stream_id": stream_id, "last_event_id": 4})
        )
        replay = []
        while not replay or replay[-1]["event"] != "task_completed":
            replay.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await ws.send(json.dumps({"action": "subscribe", "stream_id": "str_nope"}))
        missing = json.loads(await asyncio.wait_for(ws.recv(), 10))

    over_sse = await collect(client, stream_id, key)
    assert [m["data"] for m in received] == [e.data for e in over_sse]
    assert [m["id"] for m in received] == [e.seq for e in over_sse]
    assert [m["id"] for m in replay] == list(range(5, len(over_sse) + 1))
    assert missing["event"] == "error" and missing["data"]["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        pytest.param("", {"X-API-Key": "fac_wrong"}, id="wrong-key-header"),
        pytest.param("?api_key={key}", {}, id="right-key-in-the-url-is-not-read"),
    ],
)
async def test_websocket_rejects_a_wrong_or_url_key(
    server: ServerThread, query: str, headers: dict[str, str]
) -> None:
    key = new_key(server.settings, "url-key")
    url = server.base_url.replace("http", "ws") + "/api/stream/ws" + query.format(key=key)
    try:
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.recv()
        raise AssertionError("connection should have been refused")
    except websockets.exceptions.InvalidStatus as exc:
        assert exc.response.status_code == 403
    except websockets.exceptions.ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 4401


async def test_finished_streams_expire_but_the_history_keeps_the_result(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(stream_ttl_s=1)
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        created = await start_task(client, key)
        events = await collect(client, created["stream_id"], key)
        assert events[-1].event == "task_completed"
        for _ in range(50):
            response = await client.get(created["events_url"], headers=headers)
            if response.status_code == 410:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 410
        assert response.json()["error"]["code"] == "stream_expired"
        assert created["task_id"] in response.json()["error"]["message"]
        detail = await client.get(f"/api/v1/tasks/{created['task_id']}", headers=headers)
        assert detail.json()["result"]["content"] == events[-1].data["content"]
