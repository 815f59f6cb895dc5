"""A client that stops reading is dropped after the send timeout; the task runs on."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import httpx

from fakes.openai_server import FakeOpenAI, Reply
from support import ServerThread, collect, new_key, script_happy_path, start_task

BACKENDS = ("embedded", "scaleout")
LINE = "y" * 2000 + "\n"  # one token, one event of about 2 KB


def stalled_reader(base_url: str, path: str, key: str) -> socket.socket:
    """Opens the stream and never reads it, with a tiny receive buffer so the server's
    sends back up quickly."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


async def subscribers(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(r"^facilitair_stream_subscribers (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


async def test_a_client_that_stops_reading_is_dropped_and_the_task_finishes(
    make_server: Any, fake: FakeOpenAI
) -> None:
    server: ServerThread = make_server(send_timeout_s=1.0)
    key = new_key(server.settings, "alice")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(tokens=[LINE] * 4000 + ["done\n"]))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        created = await start_task(client, key)
        stalled = [stalled_reader(server.base_url, created["events_url"], key) for _ in range(3)]
        try:
            assert await eventually(lambda: subscribers(client), lambda n: n >= 3)
            # Everything the stalled readers hold is dropped within the send timeout (+ checks).
            assert await eventually(lambda: subscribers(client), lambda n: n == 0, 30)
            events = await collect(client, created["stream_id"], key)
            assert events[-1].event == "task_completed"
            assert sum(e.event == "token_stream" for e in events) >= 4000
        finally:
            for sock in stalled:
                sock.close()


async def eventually(probe: Any, good: Any, timeout_s: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if good(await probe()):
            return True
        await asyncio.sleep(0.1)
    return False
