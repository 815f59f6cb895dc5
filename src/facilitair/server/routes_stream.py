"""Streaming routes: create a task, read its events (SSE), status, cancel, tickets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from facilitair.protocol.api import (
    ErrorBody,
    StreamStatus,
    TaskCreated,
    TaskRequest,
    Ticket,
)
from facilitair.protocol.encoding import sse_frame, sse_notice
from facilitair.protocol.events import MAX_SEQ
from facilitair.server.auth import Principal
from facilitair.server.container import Container
from facilitair.server.deps import (
    KEY_REVOKED,
    ContainerDep,
    PrincipalDep,
    principal_from_key,
    principal_from_ticket,
)
from facilitair.server.errors import ApiError
from facilitair.server.tasks import (
    KeyRevoked,
    cancel_task,
    follow,
    resume_point,
    start_task,
    stream_status,
    tenant_stream,
)

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 409, 410, 413, 422, 429)
}

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/stream", tags=["stream"], responses=ERRORS)


@router.post("/task", response_model=TaskCreated, summary="Start a task and get its stream")
async def create_task(
    body: TaskRequest,
    request: Request,
    container: ContainerDep,
    principal: PrincipalDep,
    verbosity: Annotated[Literal["filtered", "full"] | None, Query()] = None,
) -> TaskCreated:
    if verbosity is not None:
        body = body.model_copy(update={"verbosity": verbosity})
    record = await start_task(container, principal, body)
    return TaskCreated(
        stream_id=record.stream_id,
        task_id=record.task_id,
        events_url=str(request.url_for("stream_events", stream_id=record.stream_id).path),
        status_url=str(request.url_for("stream_status", stream_id=record.stream_id).path),
    )


async def _stream_principal(
    container: Container, stream_id: str, api_key: str | None, ticket: str | None
) -> Principal:
    if ticket and not api_key and not container.settings.no_auth:
        ticket_stream, principal = await principal_from_ticket(container, ticket)
        if ticket_stream != stream_id:
            raise ApiError(401, "this ticket is for another stream")
        return principal
    return await principal_from_key(container, api_key)


@router.get(
    "/events/{stream_id}",
    name="stream_events",
    summary="The stream's events as Server-Sent Events",
    response_class=Response,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        204: {"description": "Finished stream already read to its end: stop reconnecting"},
    },
)
async def stream_events(
    stream_id: str,
    container: ContainerDep,
    x_api_key: Annotated[str | None, Header()] = None,
    last_event_id_header: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_SEQ)
    ] = None,
    ticket: Annotated[
        str | None, Query(max_length=1000, description="From POST /api/stream/{id}/ticket")
    ] = None,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
) -> Response:
    principal = await _stream_principal(container, stream_id, x_api_key, ticket)
    record = await tenant_stream(container, stream_id, principal.tenant_id)
    after = last_event_id_header if last_event_id_header is not None else last_event_id or 0
    start = await resume_point(container, record, after)
    if start is None:
        return Response(status_code=204)
    settings = container.settings

    async def events() -> AsyncIterator[bytes]:
        container.metrics.subscribers.inc()
        try:
            retry_ms: int | None = settings.sse_retry_ms
            async for event in follow(container, principal, stream_id, start):
                yield sse_frame(event, retry_ms=retry_ms)
                retry_ms = None
        except KeyRevoked:
            yield sse_notice("stream_closed", "key_revoked", KEY_REVOKED)
        finally:
            container.metrics.subscribers.dec()

    return _EventStream(
        events(),
        stall_timeout_s=settings.send_timeout_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ping=3600,  # heartbeats are our own `heartbeat` events
    )


class _EventStream(EventSourceResponse):
    """sse-starlette's response, with its own way to drop a client that stopped reading.

    sse-starlette's `send_timeout` opens an anyio cancel scope around every send, a
    measurable share of the server's time per token. Here a send only notes when it began,
    and a watcher in the response's task group ends the response when one has been stuck for
    `stall_timeout_s` (its memory was bounded all along: a stalled send holds one event, and
    the log keeps only the reader's cursor)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        stall_timeout_s: float,
        headers: dict[str, str],
        ping: int,
    ) -> None:
        super().__init__(
            content, headers=headers, ping=ping, data_sender_callable=self._drop_when_stalled
        )
        self._stall_timeout_s = stall_timeout_s
        self._sending_since: float | None = None

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        self._sending_since = time.monotonic()
        await send(message)
        self._sending_since = None

    async def _drop_when_stalled(self) -> None:
        timeout = self._stall_timeout_s
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            since = self._sending_since
            if since is not None and time.monotonic() - since > timeout:
                raise SendTimeoutError()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("dropped a client that read nothing for %g s", self._stall_timeout_s)


@router.get(
    "/status/{stream_id}",
    name="stream_status",
    response_model=StreamStatus,
    summary="Where a task stands",
)
async def get_status(
    stream_id: str, container: ContainerDep, principal: PrincipalDep
) -> StreamStatus:
    record = await tenant_stream(container, stream_id, principal.tenant_id)
    return await stream_status(container, record)


@router.post(
    "/{stream_id}/cancel",
    response_model=StreamStatus,
    summary="Stop a running task; partial output is kept",
)
async def cancel(stream_id: str, container: ContainerDep, principal: PrincipalDep) -> StreamStatus:
    record = await tenant_stream(container, stream_id, principal.tenant_id)
    return await stream_status(container, await cancel_task(container, record))


@router.post(
    "/{stream_id}/ticket",
    response_model=Ticket,
    summary="A short-lived token to open this stream without headers (EventSource)",
)
async def issue_ticket(stream_id: str, container: ContainerDep, principal: PrincipalDep) -> Ticket:
    await tenant_stream(container, stream_id, principal.tenant_id)
    return Ticket(
        ticket=container.tickets.issue(stream_id, principal),
        expires_in=container.settings.ticket_ttl_s,
        stream_id=stream_id,
    )
