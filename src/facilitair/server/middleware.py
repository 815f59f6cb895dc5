"""Pure ASGI middleware (no response wrapping, so event streams pass through untouched)."""

from __future__ import annotations

import json

import anyio
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class RequestGuard:
    """Refuses request bodies over `max_bytes` with 413 — whether or not Content-Length is sent —
    and paths with a NUL character with 400 (no id has one, and PostgreSQL cannot compare one),
    before the app sees them; counts error responses by status."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, errors: Counter) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.errors.labels(str(message["status"])).inc()
            await send(message)

        if "\x00" in scope["path"]:
            await _error(counting_send, 400, "bad_request", "the path must not contain NUL")
            return
        if scope["method"] in BODYLESS:
            await self.app(scope, receive, counting_send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body.extend(message.get("body", b""))
            if len(body) > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive)
                await self._too_large(counting_send)
                return
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, counting_send)

    async def _drain(self, receive: Receive) -> None:
        """Read (and drop) the rest of an oversized upload, within bounds: closing a socket with
        unread data makes the kernel reset it, and the client would never see the 413."""
        budget = 10 * self.max_bytes
        with anyio.move_on_after(5.0):
            while budget > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return

    async def _too_large(self, send: Send) -> None:
        await _error(send, 413, "too_large", f"request body over {self.max_bytes} bytes")


async def _error(send: Send, status: int, code: str, message: str) -> None:
    payload = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
