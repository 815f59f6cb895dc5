"""What the HTTP and WebSocket routes share: creating a task, finding a tenant's stream,
cancelling it wherever it runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from facilitair.protocol.api import FINISHED_STATUSES, StreamStatus, TaskRecord, TaskRequest
from facilitair.protocol.events import EventName, StoredEvent, utc_now
from facilitair.server.auth import Principal
from facilitair.server.container import Container
from facilitair.server.deps import KeyWatch
from facilitair.server.errors import ApiError


async def start_task(
    container: Container, principal: Principal, request: TaskRequest
) -> TaskRecord:
    unknown = sorted(set(request.models) - set(container.agents.roles))
    if unknown:
        raise ApiError(
            422,
            f"unknown role(s) in models: {', '.join(unknown)}; "
            f"roles are {', '.join(container.agents.roles)}",
        )
    wait = await container.bus.limiter.check(principal.key_id)
    if wait is not None:
        container.metrics.rate_limited.inc()
        seconds = max(1, int(wait + 0.999))
        raise ApiError(
            429,
            f"rate limit of {container.settings.rate_limit_per_minute} tasks a minute reached; "
            f"retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    record = TaskRecord(
        task_id="task_" + uuid.uuid4().hex,
        stream_id="str_" + uuid.uuid4().hex,
        tenant_id=principal.tenant_id,
        status="queued",
        request=request,
        created_at=utc_now(),
    )
    await container.runner.submit(record)
    return record


async def tenant_stream(container: Container, stream_id: str, tenant_id: str) -> TaskRecord:
    """The stream's task, or 404 for an unknown id and for another tenant's id alike."""
    record = await container.store.task_by_stream(stream_id)
    if record is None or record.tenant_id != tenant_id:
        raise ApiError(404, f"no stream {stream_id}")
    return record


async def stream_status(container: Container, record: TaskRecord) -> StreamStatus:
    return StreamStatus(
        stream_id=record.stream_id,
        task_id=record.task_id,
        status=record.status,
        last_event_id=await container.events.last_seq(record.stream_id),
        completed_chunks=record.completed_chunks,
        total_chunks=record.total_chunks,
        cost_usd=record.cost_usd,
        tokens={
            "prompt": record.prompt_tokens,
            "completion": record.completion_tokens,
            "total": record.prompt_tokens + record.completion_tokens,
        },
        created_at=record.created_at,
        finished_at=record.finished_at,
    )


CANCEL_WAIT_S = 10.0


async def cancel_task(container: Container, record: TaskRecord) -> TaskRecord:
    """Ask whichever process runs the task to cancel it, and wait for its stream to end;
    409 if it has already ended. Returns the task as it is then."""
    if record.status in FINISHED_STATUSES:
        raise ApiError(409, f"stream {record.stream_id} has already ended ({record.status})")
    events = container.events
    stream_id = record.stream_id
    reason = "cancelled by the user"
    if record.status == "queued" and await container.runner.cancel_queued(stream_id, reason):
        cancelled = await container.store.task_by_stream(stream_id)
        assert cancelled is not None
        return cancelled
    after = await events.last_seq(stream_id)
    ended = asyncio.create_task(_terminal_after(container, stream_id, after))
    try:
        await container.bus.control.cancel(stream_id, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ended), CANCEL_WAIT_S)
    finally:
        ended.cancel()
    updated = await container.store.task_by_stream(stream_id)
    assert updated is not None
    if updated.status != "cancelled" and updated.status in FINISHED_STATUSES:
        raise ApiError(409, f"stream {stream_id} has already ended ({updated.status})")
    return updated


async def _terminal_after(container: Container, stream_id: str, after: int) -> None:
    async for event in container.events.read(stream_id, max(0, after - 1)):
        if event.is_terminal:
            return


async def resume_point(container: Container, record: TaskRecord, after: int) -> int | None:
    """Where a reader resuming after `after` starts: None when there is nothing more to read
    (a finished stream read to its end). Raises what a client must act on: 410 when the
    stream's events have expired (the result stays in the history), 400 when `after` is beyond
    the stream's last event."""
    log = container.events
    last = await log.last_seq(record.stream_id)
    if last == 0 and record.status in FINISHED_STATUSES:
        raise ApiError(
            410,
            f"stream {record.stream_id} has expired; its result is kept in the history at "
            f"/api/v1/tasks/{record.task_id}",
            code="stream_expired",
        )
    if after > last:
        raise ApiError(
            400,
            f"Last-Event-ID {after} is beyond the last event of stream {record.stream_id} "
            f"({last}); resume from {last} or read it from the start",
            code="last_event_id_ahead",
        )
    # No events yet (last == 0) means not finished: skip that store round trip.
    if after == last and last > 0 and await log.is_finished(record.stream_id):
        return None
    return after


class KeyRevoked(Exception):
    """The key a reader authenticated with has been revoked: its stream ends."""


async def follow(
    container: Container, principal: Principal, stream_id: str, after: int
) -> AsyncIterator[StoredEvent]:
    """A stream's events after `after`, for a reader of `principal`'s (SSE and WebSocket alike):
    a heartbeat after every `heartbeat_s` of silence, and KeyRevoked once the reader's key is
    revoked. The log wakes it at least every `key_check_s`, so that holds while idle too."""
    settings = container.settings
    watch = KeyWatch(container, principal)
    wake_s = min(settings.heartbeat_s, settings.key_check_s)
    next_heartbeat = time.monotonic() + settings.heartbeat_s
    async for event in container.events.read(stream_id, after, heartbeat_s=wake_s):
        if await watch.revoked():
            raise KeyRevoked
        if event.event == EventName.HEARTBEAT:
            if time.monotonic() < next_heartbeat:
                continue
            next_heartbeat = time.monotonic() + settings.heartbeat_s
        yield event
