"""Another tenant's ids, on every route that takes one (HTTP, SSE, WebSocket, tickets, history,
cache): 404 each time, and not one byte of the owner's data. Tickets that are forged, expired
or for another stream are refused."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from facilitair.store import build_store
from fakes.openai_server import FakeOpenAI
from support import ServerThread, collect, new_key, script_happy_path, start_task

BACKENDS = ("embedded", "scaleout")
SECRET_TASK = "Build the zebra-quartz ledger for alice only"


async def alice_cache_ids(server: ServerThread) -> list[str]:
    store = build_store(server.settings)
    await store.open()
    try:
        return await store.cache_entry_ids("alice")
    finally:
        await store.close()


async def test_another_tenants_ids_get_404_and_nothing_else_everywhere(
    make_server: Any, fake: FakeOpenAI
) -> None:
    server: ServerThread = make_server(ticket_ttl_s=1)
    alice = new_key(server.settings, "alice")
    bob = new_key(server.settings, "bob")
    script_happy_path(fake, chunks=1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        done = await start_task(client, alice, {"task": SECRET_TASK})
        events = await collect(client, done["stream_id"], alice)
        result = events[-1].data["content"]
        secrets = [SECRET_TASK, "zebra-quartz", result[:40]]
        sid, tid = done["stream_id"], done["task_id"]
        (entry_id,) = await alice_cache_ids(server)
        own = await start_task(client, bob, {"task": "Bob's own task"})
        alice_ticket = (
            await client.post(f"/api/stream/{sid}/ticket", headers={"X-API-Key": alice})
        ).json()["ticket"]
        as_bob = {"X-API-Key": bob}
        probes = [
            client.get(f"/api/stream/events/{sid}", headers=as_bob),
            client.get(f"/api/stream/events/{sid}", headers={**as_bob, "Last-Event-ID": "1"}),
            client.get(f"/api/stream/events/{sid}", headers=as_bob, params={"last_event_id": 1}),
            client.get(f"/api/stream/status/{sid}", headers=as_bob),
            client.post(f"/api/stream/{sid}/cancel", headers=as_bob),
            client.post(f"/api/stream/{sid}/ticket", headers=as_bob),
            client.get(f"/api/v1/tasks/{tid}", headers=as_bob),
            client.get(f"/api/v1/tasks/{sid}", headers=as_bob),
            client.delete(f"/api/v1/cache/{entry_id}", headers=as_bob),
        ]
        for response in await asyncio.gather(*probes):
            assert response.status_code == 404, (response.request.url, response.text)
            assert response.json()["error"]["code"] == "not_found"
            assert not any(secret in response.text for secret in secrets)
        listing = await client.get("/api/v1/tasks", headers=as_bob)
        assert [t["task_id"] for t in listing.json()["items"]] == [own["task_id"]]
        assert not any(secret in listing.text for secret in secrets)
        stats = (await client.get("/api/v1/cache/stats", headers=as_bob)).json()
        assert not any(secret in json.dumps(stats) for secret in secrets)

        # Tickets: forged, for another stream, expired.
        for ticket, stream in (
            ("forged." + alice_ticket[7:], sid),
            ("not-a-ticket", sid),
            (alice_ticket, own["stream_id"]),
        ):
            response = await client.get(f"/api/stream/events/{stream}", params={"ticket": ticket})
            assert response.status_code == 401, response.text
            assert not any(secret in response.text for secret in secrets)
        await asyncio.sleep(2.2)  # past ticket_ttl_s (itsdangerous counts whole seconds)
        expired = await client.get(f"/api/stream/events/{sid}", params={"ticket": alice_ticket})
        assert expired.status_code == 401 and "expired" in expired.text

    # The WebSocket: bob subscribes to and cancels alice's stream.
    url = server.base_url.replace("http", "ws") + "/api/stream/ws"
    async with websockets.connect(url, additional_headers={"X-API-Key": bob}) as ws:
        for action in ("subscribe", "cancel"):
            await ws.send(json.dumps({"action": action, "stream_id": sid}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["event"] == "error" and reply["data"]["error"]["code"] == "not_found"
            assert not any(secret in json.dumps(reply) for secret in secrets)
        # Nothing of alice's stream follows.
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            extra = None
        assert extra is None or not any(secret in str(extra) for secret in secrets)
    # A ticket for alice's stream opens nothing else on the socket.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        fresh = (
            await client.post(f"/api/stream/{sid}/ticket", headers={"X-API-Key": alice})
        ).json()["ticket"]
    async with websockets.connect(f"{url}?ticket={fresh}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "stream_id": own["stream_id"]}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["event"] == "error" and reply["data"]["error"]["code"] == "not_found"
        await ws.send(json.dumps({"action": "start", "task": "sneak"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["event"] == "error" and reply["data"]["error"]["code"] == "forbidden"
