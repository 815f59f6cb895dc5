"""Streaming routes: create a task, read its events (SSE), status, cancel, tickets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.types import Message, Send

from facilitair.protocol.api import (
    FINISHED_STATUSES,
    ErrorBody,
    StreamStatus,
    TaskCreated,
    TaskRequest,
    Ticket,
)
from facilitair.protocol.encoding import sse_frame
from facilitair.server.auth import Principal, TicketError
from facilitair.server.container import Container
from facilitair.server.deps import ContainerDep, PrincipalDep, principal_from_key
from facilitair.server.errors import ApiError
from facilitair.server.tasks import cancel_task, start_task, stream_status, tenant_stream

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 409, 413, 422, 429)
}

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
        try:
            ticket_stream, tenant_id = container.tickets.verify(ticket)
        except TicketError as exc:
            raise ApiError(401, str(exc)) from None
        if ticket_stream != stream_id:
            raise ApiError(401, "this ticket is for another stream")
        return Principal(tenant_id=tenant_id, key_id="ticket")
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
    last_event_id_header: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
    ticket: Annotated[str | None, Query(description="From POST /api/stream/{id}/ticket")] = None,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    principal = await _stream_principal(container, stream_id, x_api_key, ticket)
    record = await tenant_stream(container, stream_id, principal.tenant_id)
    after = last_event_id_header if last_event_id_header is not None else last_event_id or 0
    log = container.events
    last = await log.last_seq(stream_id)
    if last == 0 and record.status in FINISHED_STATUSES:
        raise ApiError(404, f"stream {stream_id} has expired; its result is kept in the history")
    # No events yet (last == 0) means not finished: skip that store round trip.
    if after >= last and last > 0 and await log.is_finished(stream_id):
        return Response(status_code=204)
    settings = container.settings

    async def events() -> AsyncIterator[bytes]:
        container.metrics.subscribers.inc()
        try:
            retry_ms: int | None = settings.sse_retry_ms
            async for event in container.events.read(
                stream_id, after, heartbeat_s=settings.heartbeat_s
            ):
                yield sse_frame(event, retry_ms=retry_ms)
                retry_ms = None
        finally:
            container.metrics.subscribers.dec()

    return _EventStream(
        events(),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ping=3600,  # heartbeats are our own `heartbeat` events
    )


class _EventStream(EventSourceResponse):
    """sse-starlette's response, minus the anyio cancel scope it opens around every send when
    no send timeout is set (a measurable share of the server's time per token)."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


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
        ticket=container.tickets.issue(stream_id, principal.tenant_id),
        expires_in=container.settings.ticket_ttl_s,
        stream_id=stream_id,
    )
