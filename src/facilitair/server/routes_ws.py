"""`WS /api/stream/ws`: the same events as JSON `{id, event, data}`, several streams per socket.

Client messages: `{"action": "start", ...TaskRequest}`, `{"action": "subscribe", "stream_id",
"last_event_id"?}`, `{"action": "cancel", "stream_id"}`. Replies that are not stream events:
`{"event": "task_created", "data": TaskCreated}` and `{"event": "error", "data": {"error"}}`.
A message the server cannot use (not JSON, not an object, unknown action, wrong types, too
large, binary) gets an error reply and changes nothing else. Authentication is the X-API-Key
header or a stream ticket (`?ticket=`), never a key in the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from facilitair.protocol.api import TaskRecord, TaskRequest
from facilitair.protocol.encoding import to_ws
from facilitair.protocol.events import MAX_SEQ
from facilitair.server.auth import Principal
from facilitair.server.container import Container
from facilitair.server.deps import (
    KEY_REVOKED,
    KeyWatch,
    principal_from_key,
    principal_from_ticket,
)
from facilitair.server.errors import CODES, ApiError
from facilitair.server.tasks import (
    KeyRevoked,
    cancel_task,
    follow,
    resume_point,
    start_task,
    tenant_stream,
)

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_REVOKED = 4401
CLOSE_STALLED = 4408


class _Revoked(Exception):
    pass


class _Session:
    def __init__(self, socket: WebSocket, container: Container, principal: Principal) -> None:
        self.socket = socket
        self.container = container
        self.principal = principal
        self.only_stream: str | None = None  # a ticket opens one stream and nothing else
        self.send_lock = asyncio.Lock()
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.watch = KeyWatch(container, principal)
        self.closed = asyncio.Event()  # set when the server ends the session

    async def send(self, message: dict[str, Any]) -> None:
        """Send, or end the session when the client has not taken a message for
        send_timeout_s (it stopped reading; what it would have missed stays in the log)."""
        try:
            async with self.send_lock, asyncio.timeout(self.container.settings.send_timeout_s):
                await self.socket.send_json(message)
        except TimeoutError:
            log.info("dropped a WebSocket client that read nothing for a while")
            await self.end(CLOSE_STALLED, "the client stopped reading")
            raise

    async def end(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(Exception):
                await self.socket.close(code=code, reason=reason)

    async def revoked(self) -> None:
        with contextlib.suppress(Exception):
            await self.error(401, KEY_REVOKED, code="key_revoked")
        await self.end(CLOSE_REVOKED, "API key revoked")

    async def error(
        self, status: int, message: str, stream_id: str | None = None, code: str | None = None
    ) -> None:
        data: dict[str, Any] = {
            "error": {"code": code or CODES.get(status, "error"), "message": message}
        }
        if stream_id:
            data["stream_id"] = stream_id
        await self.send({"event": "error", "data": data})

    async def handle(self, message: dict[str, Any]) -> None:
        if await self.watch.revoked(now=True):
            raise _Revoked
        action = message.get("action")
        if action == "start":
            if self.only_stream is not None:
                raise ApiError(403, "a stream ticket cannot start tasks")
            body = {k: v for k, v in message.items() if k != "action"}
            request = TaskRequest.model_validate(body)
            record = await start_task(self.container, self.principal, request)
            await self.send(
                {
                    "event": "task_created",
                    "data": {
                        "stream_id": record.stream_id,
                        "task_id": record.task_id,
                        "events_url": f"/api/stream/events/{record.stream_id}",
                        "status_url": f"/api/stream/status/{record.stream_id}",
                    },
                }
            )
            self.subscribe(record.stream_id, 0)
        elif action == "subscribe":
            stream_id = _stream_id(message)
            after = message.get("last_event_id") or 0
            if type(after) is not int or not 0 <= after <= MAX_SEQ:
                raise ApiError(422, "last_event_id must be a non-negative integer")
            record = await self._own(stream_id)
            start = await resume_point(self.container, record, after)
            if start is not None:
                self.subscribe(record.stream_id, start)
        elif action == "cancel":
            record = await self._own(_stream_id(message))
            await cancel_task(self.container, record)
        else:
            raise ApiError(422, "action must be one of start, subscribe, cancel")

    async def _own(self, stream_id: str) -> TaskRecord:
        if self.only_stream is not None and stream_id != self.only_stream:
            raise ApiError(404, f"no stream {stream_id}")
        return await tenant_stream(self.container, stream_id, self.principal.tenant_id)

    def subscribe(self, stream_id: str, after: int) -> None:
        previous = self.readers.pop(stream_id, None)
        if previous is not None:
            previous.cancel()
        self.readers[stream_id] = asyncio.create_task(self._forward(stream_id, after))

    async def _forward(self, stream_id: str, after: int) -> None:
        self.container.metrics.subscribers.inc()
        try:
            async for event in follow(self.container, self.principal, stream_id, after):
                await self.send(to_ws(event))
        except KeyRevoked:
            await self.revoked()
        except TimeoutError:
            return  # the client stopped reading; the session is over
        finally:
            self.container.metrics.subscribers.dec()

    async def close(self) -> None:
        for task in self.readers.values():
            task.cancel()
        for task in self.readers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _stream_id(message: dict[str, Any]) -> str:
    stream_id = message.get("stream_id")
    if not isinstance(stream_id, str) or not stream_id:
        raise ApiError(422, "stream_id must be a non-empty string")
    return stream_id


async def _authenticate(socket: WebSocket, container: Container) -> tuple[Principal, str | None]:
    ticket = socket.query_params.get("ticket")
    key = socket.headers.get("x-api-key")
    if ticket and not key and not container.settings.no_auth:
        stream_id, principal = await principal_from_ticket(container, ticket)
        return principal, stream_id
    return await principal_from_key(container, key), None


@router.websocket("/api/stream/ws")
async def stream_socket(socket: WebSocket) -> None:
    container: Container = socket.app.state.container
    try:
        principal, only_stream = await _authenticate(socket, container)
    except ApiError as exc:
        await socket.close(code=4401, reason=exc.message)
        return
    await socket.accept()
    session = _Session(socket, container, principal)
    session.only_stream = only_stream
    limit = container.settings.max_body_bytes
    try:
        while not session.closed.is_set():
            received = await socket.receive()
            if received["type"] == "websocket.disconnect":
                break
            raw = received.get("text")
            if raw is None:
                await session.error(400, "messages must be JSON text, not binary")
                continue
            if len(raw) > limit:
                await session.error(413, f"message over {limit} bytes")
                continue
            message: Any = None
            try:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ApiError(400, "each message must be a JSON object")
                await session.handle(message)
            except json.JSONDecodeError:
                await session.error(400, "message is not valid JSON")
            except ValidationError as exc:
                await session.error(422, _first_error(exc))
            except ApiError as exc:
                stream_id = message.get("stream_id") if isinstance(message, dict) else None
                await session.error(
                    exc.status,
                    exc.message,
                    stream_id if isinstance(stream_id, str) else None,
                    code=exc.code,
                )
            except _Revoked:
                await session.revoked()
            except (WebSocketDisconnect, TimeoutError):
                raise
            except Exception:
                log.exception("WebSocket message failed")
                await session.error(500, "the server could not handle this message")
    except (WebSocketDisconnect, TimeoutError, RuntimeError):
        pass  # the client left, or stopped reading (RuntimeError: the socket closed under us)
    finally:
        await session.close()
        if socket.client_state == WebSocketState.CONNECTED and not session.closed.is_set():
            with contextlib.suppress(Exception):
                await socket.close()


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid request"))
    return f"{where}: {message}" if where else message
