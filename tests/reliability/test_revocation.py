"""A revoked key is cut off: new requests, actions on sockets it opened, streams it opened,
tickets it obtained. And `facilitair keys revoke` takes the key as the README shows it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from facilitair.config import Settings
from facilitair.protocol.events import utc_now
from facilitair.server.auth import hash_key
from facilitair.store import build_store
from fakes.openai_server import FakeOpenAI, Reply
from support import ServerThread, new_key, script_happy_path, service_env, start_task

BACKENDS = ("embedded", "scaleout")
CHECK_S = 0.5  # the servers here look keys up this often; streams must end within a few


async def revoke(settings: Settings, key: str) -> None:
    store = build_store(settings)
    await store.open()
    try:
        assert await store.revoke_key(key, hash_key(key), utc_now()) == 1
    finally:
        await store.close()


def slow_coder(fake: FakeOpenAI) -> None:
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(text="x = 1\n" * 400, delay_s=0.02))


async def test_revoking_a_key_ends_its_open_streams_and_tickets(
    make_server: Any, fake: FakeOpenAI
) -> None:
    server: ServerThread = make_server(key_check_s=CHECK_S)
    key = new_key(server.settings, "alice")
    other = new_key(server.settings, "bob")
    slow_coder(fake)
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        created = await start_task(client, key)
        mine = await start_task(client, other)
        ticket = (
            await client.post(f"/api/stream/{created['stream_id']}/ticket", headers=headers)
        ).json()["ticket"]
        ws = await websockets.connect(
            server.base_url.replace("http", "ws") + "/api/stream/ws", additional_headers=headers
        )
        await ws.send(json.dumps({"action": "subscribe", "stream_id": created["stream_id"]}))
        sse_seen: list[str] = []

        async def read_sse() -> float:
            async with client.stream("GET", created["events_url"], headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        sse_seen.append(line[7:])
            return time.monotonic()

        reader = asyncio.create_task(read_sse())
        await asyncio.sleep(0.5)
        revoked_at = time.monotonic()
        await revoke(server.settings, key)

        ended_at = await asyncio.wait_for(reader, 10)
        assert ended_at - revoked_at < CHECK_S * 4 + 1
        assert sse_seen[-1] == "stream_closed"
        assert "task_completed" not in sse_seen  # the task runs on; this reader was cut off

        closed: Any = None
        async with asyncio.timeout(10):
            try:
                while True:
                    await ws.recv()
            except websockets.exceptions.ConnectionClosed as exc:
                closed = exc
        assert closed.rcvd is not None and closed.rcvd.code == 4401

        refused = await client.get(f"/api/stream/status/{created['stream_id']}", headers=headers)
        assert refused.status_code == 401
        by_ticket = await client.get(created["events_url"], params={"ticket": ticket})
        assert by_ticket.status_code == 401
        assert "revoked" in by_ticket.json()["error"]["message"]
        # Another key's stream is untouched.
        status = await client.get(
            f"/api/stream/status/{mine['stream_id']}", headers={"X-API-Key": other}
        )
        assert status.status_code == 200


async def test_a_socket_opened_before_revocation_cannot_act_after_it(
    make_server: Any, fake: FakeOpenAI
) -> None:
    server: ServerThread = make_server(key_check_s=60)  # only the per-action check can stop it
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    async with websockets.connect(
        server.base_url.replace("http", "ws") + "/api/stream/ws",
        additional_headers={"X-API-Key": key},
    ) as ws:
        await revoke(server.settings, key)
        await ws.send(json.dumps({"action": "start", "task": "Build a tiny key-value store"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["event"] == "error" and reply["data"]["error"]["code"] == "key_revoked"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        fresh = new_key(server.settings, "carol", tenant="alice")
        listed = (await client.get("/api/v1/tasks", headers={"X-API-Key": fresh})).json()
        assert listed["total"] == 0
    assert fake.requests == []


def test_keys_revoke_takes_the_full_key_its_id_name_or_prefix(server: ServerThread) -> None:
    env = {**os.environ, **service_env(server.settings)}
    cli = [str(Path(sys.executable).with_name("facilitair"))]

    def revoke_with(value: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, "keys", "revoke", value], env=env, capture_output=True, text=True, timeout=60
        )

    full = new_key(server.settings, "full")
    done = revoke_with(full)
    assert done.returncode == 0, done.stderr
    assert "Revoked 1 key" in done.stderr
    again = revoke_with(full)
    assert again.returncode == 1 and "No active key matches" in again.stderr
    named = new_key(server.settings, "by-name")
    assert revoke_with("by-name").returncode == 0
    prefixed = new_key(server.settings, "by-prefix")
    assert revoke_with(prefixed[:10]).returncode == 0
    for secret in (full, named, prefixed):
        response = httpx.get(
            f"{server.base_url}/api/v1/tasks", headers={"X-API-Key": secret}, timeout=10
        )
        assert response.status_code == 401
