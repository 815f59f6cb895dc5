"""Request/response routes: collaborate (wait for the result), history, agents, health."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from facilitair.llm.base import ProviderError
from facilitair.protocol.api import (
    AgentInfo,
    AgentList,
    CacheCleared,
    CacheStatsBody,
    CheckResult,
    CollaborateResponse,
    ErrorBody,
    Health,
    TaskDetail,
    TaskList,
    TaskRecord,
    TaskRequest,
    TaskSummary,
)
from facilitair.server.container import Container
from facilitair.server.deps import ContainerDep, PrincipalDep
from facilitair.server.errors import ApiError
from facilitair.server.tasks import start_task

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 413, 422, 429)
}

router = APIRouter(prefix="/api/v1", tags=["v1"], responses=ERRORS)
metrics_router = APIRouter(tags=["operations"])


@router.post(
    "/collaborate",
    response_model=CollaborateResponse,
    summary="Run a task and wait for its whole result",
)
async def collaborate(
    body: TaskRequest, container: ContainerDep, principal: PrincipalDep
) -> CollaborateResponse:
    record = await start_task(container, principal, body)
    async for _ in container.events.read(record.stream_id):
        pass  # the read ends with the stream's terminal event
    finished = await container.store.task(record.task_id)
    assert finished is not None
    return CollaborateResponse(
        task_id=finished.task_id,
        stream_id=finished.stream_id,
        status=finished.status,
        result=finished.result,
        error=finished.error,
    )


def _summary(record: TaskRecord) -> dict[str, object]:
    return {
        "task_id": record.task_id,
        "stream_id": record.stream_id,
        "status": record.status,
        "task": record.request.task,
        "workflow": record.request.workflow,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "cost_usd": record.cost_usd,
    }


@router.get("/tasks", response_model=TaskList, summary="This tenant's tasks, newest first")
async def list_tasks(
    container: ContainerDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> TaskList:
    records, total = await container.store.list_tasks(principal.tenant_id, limit, offset)
    items = [TaskSummary.model_validate(_summary(r)) for r in records]
    return TaskList(items=items, total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}", response_model=TaskDetail, summary="One task with its result")
async def get_task(task_id: str, container: ContainerDep, principal: PrincipalDep) -> TaskDetail:
    record = await container.store.task(task_id)
    if record is None or record.tenant_id != principal.tenant_id:
        raise ApiError(404, f"no task {task_id}")
    return TaskDetail.model_validate(
        {
            **_summary(record),
            "context": record.request.context.model_dump(exclude_none=True),
            "total_chunks": record.total_chunks,
            "completed_chunks": record.completed_chunks,
            "tokens": {"prompt": record.prompt_tokens, "completion": record.completion_tokens},
            "result": record.result,
            "error": record.error,
            "partial": record.partial,
        }
    )


@router.get("/agents", response_model=AgentList, summary="Roles and their configured models")
async def agents(container: ContainerDep, principal: PrincipalDep) -> AgentList:
    local = container.agents.uses_local_model(container.settings)
    return AgentList(
        agents=[
            AgentInfo(
                role=key,
                name=role.name,
                model=role.model,
                temperature=role.temperature,
                max_tokens=role.max_tokens,
                fallbacks=role.fallbacks,
                offline=local and role.provider == "default",
            )
            for key, role in container.agents.roles.items()
        ]
    )


@router.get("/cache/stats", response_model=CacheStatsBody, summary="This tenant's cache figures")
async def cache_stats(container: ContainerDep, principal: PrincipalDep) -> CacheStatsBody:
    cache = container.cache
    if cache is None:
        return CacheStatsBody(
            enabled=False, entries=0, hits=0, misses=0, hit_rate=0.0, saved_usd=0.0, saved_s=0.0
        )
    stats = await cache.stats(principal.tenant_id)
    return CacheStatsBody(
        enabled=True,
        entries=stats.entries,
        hits=stats.hits,
        misses=stats.misses,
        hit_rate=round(stats.hit_rate, 4),
        saved_usd=round(stats.saved_usd, 6),
        saved_s=round(stats.saved_s, 3),
        threshold=cache.policy.threshold,
        embedder=cache.embedder.id,
    )


@router.delete("/cache/{entry_id}", response_model=CacheCleared, summary="Forget one cached result")
async def cache_delete(
    entry_id: str, container: ContainerDep, principal: PrincipalDep
) -> CacheCleared:
    if container.cache is None or not await container.cache.delete(principal.tenant_id, entry_id):
        raise ApiError(404, f"no cache entry {entry_id}")
    return CacheCleared(deleted=1)


@router.delete("/cache", response_model=CacheCleared, summary="Forget this tenant's cache")
async def cache_clear(container: ContainerDep, principal: PrincipalDep) -> CacheCleared:
    deleted = await container.cache.clear(principal.tenant_id) if container.cache else 0
    return CacheCleared(deleted=deleted)


async def _check(container: Container) -> dict[str, CheckResult]:
    checks: dict[str, CheckResult] = {}
    try:
        await asyncio.wait_for(container.store.ping(), 2.0)
        checks["store"] = CheckResult(ok=True, detail=type(container.store).__name__)
    except Exception as exc:
        checks["store"] = CheckResult(ok=False, detail=str(exc) or type(exc).__name__)
    try:
        await asyncio.wait_for(container.bus.ping(), 2.0)
        checks["bus"] = CheckResult(ok=True, detail=type(container.events).__name__)
    except Exception as exc:
        checks["bus"] = CheckResult(ok=False, detail=str(exc) or type(exc).__name__)
    if container.cache is not None:
        checks["cache"] = CheckResult(ok=True, detail=container.cache.embedder.id)
    for name, provider in container.providers.items():
        try:
            detail = await asyncio.wait_for(provider.check(), 6.0)
            checks[f"llm:{name}"] = CheckResult(ok=True, detail=detail)
        except (ProviderError, TimeoutError) as exc:
            checks[f"llm:{name}"] = CheckResult(ok=False, detail=str(exc) or "timed out")
    return checks


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down"}},
    summary="Liveness and readiness of the store, the event bus and the LLM providers",
)
async def health(container: ContainerDep) -> Response:
    checks = await _check(container)
    ok = all(check.ok for check in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
    summary="Prometheus metrics",
)
async def metrics(container: ContainerDep) -> Response:
    return Response(container.metrics.render(), media_type="text/plain; version=0.0.4")
