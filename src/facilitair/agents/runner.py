"""Runs tasks as asyncio tasks in this process: start, cancel, and the end of every stream."""

from __future__ import annotations

import asyncio
import logging
import time

from facilitair.agents.sequential import SequentialWorkflow
from facilitair.agents.turns import BudgetExceeded, RunTotals, TurnFailed, TurnRunner
from facilitair.bus.base import EventLog
from facilitair.config import AgentConfig
from facilitair.llm import ProviderSet
from facilitair.observability import Metrics
from facilitair.protocol.api import TaskError, TaskRecord, TaskResult
from facilitair.protocol.events import (
    ChunkCompleted,
    Payload,
    StoredEvent,
    TaskCancelled,
    TaskCompleted,
    TaskMetrics,
    TaskProgress,
    TaskStarted,
    utc_now,
)
from facilitair.protocol.events import TaskError as TaskErrorEvent
from facilitair.store.base import Store

log = logging.getLogger(__name__)

INTERRUPTED = TaskError(
    error="The server stopped while this task was running; submit it again.",
    code="interrupted",
    retryable=True,
)


class TaskRunner:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        providers: ProviderSet,
        config: AgentConfig,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.events = events
        self.providers = providers
        self.config = config
        self.metrics = metrics
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._stopping = False

    async def recover(self) -> int:
        """End the streams of tasks that were running when the server last stopped."""
        unfinished = await self.store.unfinished_tasks()
        for record in unfinished:
            await self.events.open(record.stream_id)
            await self._fail(record, INTERRUPTED)
        return len(unfinished)

    async def submit(self, record: TaskRecord) -> None:
        await self.store.add_task(record)
        await self.events.open(record.stream_id)
        self.metrics.tasks_started.inc()
        task = asyncio.create_task(self._run(record), name=f"task-{record.task_id}")
        self._running[record.stream_id] = task
        task.add_done_callback(lambda _: self._running.pop(record.stream_id, None))

    def is_running(self, stream_id: str) -> bool:
        return stream_id in self._running

    async def cancel(self, stream_id: str, reason: str = "cancelled by the user") -> bool:
        task = self._running.get(stream_id)
        if task is None:
            return False
        self._cancel_reasons[stream_id] = reason
        task.cancel()
        await asyncio.wait({task})
        return True

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, record: TaskRecord) -> None:
        request = record.request
        totals = RunTotals(budget_usd=request.budget_usd)
        stream_id = record.stream_id

        async def emit(payload: Payload) -> StoredEvent:
            event = await self.events.append(stream_id, payload)
            self.metrics.events.labels(payload.event).inc()
            if isinstance(payload, TaskProgress | ChunkCompleted):
                await self.store.update_task(record.task_id, **_progress_fields(totals))
            return event

        turns = TurnRunner(
            emit=emit,
            providers=self.providers,
            config=self.config,
            totals=totals,
            verbosity=request.verbosity,
            model_overrides=request.models,
        )
        began = time.monotonic()
        try:
            await self.store.update_task(record.task_id, status="running")
            await emit(
                TaskStarted(
                    task=request.task,
                    context=request.context.model_dump(exclude_none=True),
                    workflow=request.workflow,
                    task_id=record.task_id,
                )
            )
            outcome = await SequentialWorkflow(turns, self.config, emit).run(request)
            metrics = TaskMetrics(
                duration_s=round(time.monotonic() - began, 3),
                cost_usd=_round_cost(totals.cost_usd),
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                llm_calls=totals.llm_calls,
                iterations=outcome.iterations,
            )
            result = TaskResult(
                content=outcome.content, artifacts=outcome.artifacts, metrics=metrics
            )
            # The record is final before the stream ends, so a client that has just read the
            # terminal event always finds the task's final status and result.
            await self._finish(record, totals, status="completed", result=result)
            await emit(TaskCompleted(**result.model_dump()))
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            if self._stopping:
                await self._fail(record, INTERRUPTED, totals)
            else:
                reason = self._cancel_reasons.pop(stream_id, "cancelled")
                await self._finish(record, totals, status="cancelled")
                await emit(TaskCancelled(reason=reason))
        except BudgetExceeded as exc:
            await self._fail(
                record,
                TaskError(
                    error=f"Stopped: {exc}.",
                    code="budget_exceeded",
                    details={"budget_usd": exc.budget, "spent_usd": round(exc.spent, 6)},
                ),
                totals,
            )
        except TurnFailed as exc:
            error = exc.error
            await self._fail(
                record,
                TaskError(
                    error=f"The {exc.chunk_id} step failed: {error.message}",
                    code=error.code,
                    retryable=error.retryable,
                    details={"chunk_id": exc.chunk_id, "provider_status": error.status},
                ),
                totals,
            )
        except Exception:
            log.exception("task %s crashed", record.task_id)
            await self._fail(
                record,
                TaskError(error="Internal error while running the task.", code="internal"),
                totals,
            )

    async def _fail(
        self, record: TaskRecord, error: TaskError, totals: RunTotals | None = None
    ) -> None:
        await self._finish(record, totals, status="failed", error=error)
        await self.events.append(record.stream_id, TaskErrorEvent(**error.model_dump()))

    async def _finish(
        self,
        record: TaskRecord,
        totals: RunTotals | None,
        *,
        status: str,
        result: TaskResult | None = None,
        error: TaskError | None = None,
    ) -> None:
        fields = _progress_fields(totals) if totals else {}
        if totals and status != "completed":
            fields["partial"] = totals.kept_output() or None
        await self.store.update_task(
            record.task_id,
            status=status,
            finished_at=utc_now(),
            result=result,
            error=error,
            **fields,
        )
        self.metrics.tasks_finished.labels(status).inc()
        if totals:
            self.metrics.llm_tokens.labels("prompt").inc(totals.prompt_tokens)
            self.metrics.llm_tokens.labels("completion").inc(totals.completion_tokens)


def _round_cost(cost: float | None) -> float | None:
    return round(cost, 8) if cost is not None else None


def _progress_fields(totals: RunTotals) -> dict[str, object]:
    return {
        "total_chunks": totals.total_chunks,
        "completed_chunks": totals.completed_chunks,
        "cost_usd": _round_cost(totals.cost_usd),
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
    }
