"""What the HTTP and WebSocket routes share: creating a task and finding a tenant's stream."""

from __future__ import annotations

import uuid

from facilitair.protocol.api import StreamStatus, TaskRecord, TaskRequest
from facilitair.protocol.events import utc_now
from facilitair.server.auth import Principal
from facilitair.server.container import Container
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
    wait = container.rate_limiter.check(principal.key_id)
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
