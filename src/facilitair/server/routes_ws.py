"""`WS /api/stream/ws`: the same events as JSON `{id, event, data}`, several streams per socket.

Client messages: `{"action": "start", ...TaskRequest}`, `{"action": "subscribe", "stream_id",
"last_event_id"?}`, `{"action": "cancel", "stream_id"}`. Replies that are not stream events:
`{"event": "task_created", "data": TaskCreated}` and `{"event": "error", "data": {"error"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from facilitair.protocol.api import TaskRecord, TaskRequest
from facilitair.protocol.encoding import to_ws
from facilitair.server.auth import Principal, TicketError
from facilitair.server.container import Container
from facilitair.server.deps import principal_from_key
from facilitair.server.errors import CODES, ApiError
from facilitair.server.tasks import cancel_task, start_task, tenant_stream

router = APIRouter()


class _Session:
    def __init__(self, socket: WebSocket, container: Container, principal: Principal) -> None:
        self.socket = socket
        self.container = container
        self.principal = principal
        self.only_stream: str | None = None  # a ticket opens one stream and nothing else
        self.send_lock = asyncio.Lock()
        self.readers: dict[str, asyncio.Task[None]] = {}

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.socket.send_json(message)

    async def error(self, status: int, message: str, stream_id: str | None = None) -> None:
        data: dict[str, Any] = {"error": {"code": CODES.get(status, "error"), "message": message}}
        if stream_id:
            data["stream_id"] = stream_id
        await self.send({"event": "error", "data": data})

    async def handle(self, message: dict[str, Any]) -> None:
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
            stream_id = str(message.get("stream_id", ""))
            await self._own(stream_id)
            after = message.get("last_event_id") or 0
            if not isinstance(after, int) or after < 0:
                raise ApiError(422, "last_event_id must be a non-negative integer")
            self.subscribe(stream_id, after)
        elif action == "cancel":
            stream_id = str(message.get("stream_id", ""))
            record = await self._own(stream_id)
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
        heartbeat_s = self.container.settings.heartbeat_s
        self.container.metrics.subscribers.inc()
        try:
            async for event in self.container.events.read(
                stream_id, after, heartbeat_s=heartbeat_s
            ):
                await self.send(to_ws(event))
        finally:
            self.container.metrics.subscribers.dec()

    async def close(self) -> None:
        for task in self.readers.values():
            task.cancel()
        for task in self.readers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _authenticate(socket: WebSocket, container: Container) -> tuple[Principal, str | None]:
    ticket = socket.query_params.get("ticket")
    key = socket.headers.get("x-api-key") or socket.query_params.get("api_key")
    if ticket and not key and not container.settings.no_auth:
        try:
            stream_id, tenant_id = container.tickets.verify(ticket)
        except TicketError as exc:
            raise ApiError(401, str(exc)) from None
        return Principal(tenant_id=tenant_id, key_id="ticket"), stream_id
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
    try:
        while True:
            raw = await socket.receive_text()
            try:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ApiError(400, "each message must be a JSON object")
                await session.handle(message)
            except json.JSONDecodeError:
                await session.error(400, "message is not valid JSON")
            except ValidationError as exc:
                await session.error(422, exc.errors()[0].get("msg", "invalid request"))
            except ApiError as exc:
                await session.error(exc.status, exc.message, message.get("stream_id"))
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()
