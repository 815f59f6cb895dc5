"""Queues tasks, and runs queued ones as asyncio tasks in this process: start, cancel, and the
end of every stream.

`submit` puts a task in the queue (`bus.queue`); a process that runs tasks (the embedded
server, or a `facilitair worker`) takes queued tasks in one loop, up to its concurrency. Each
task it runs is held through a lease it renews. Every process also looks for tasks whose lease
ran out — their process died — and ends them as `interrupted`, so no client waits forever on a
stream nobody writes, and starting a process never touches tasks that a live one holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from facilitair.agents.council import CouncilFailed, CouncilWorkflow
from facilitair.agents.sequential import SequentialWorkflow
from facilitair.agents.turns import BudgetExceeded, Emit, RunTotals, TurnFailed, TurnRunner
from facilitair.agents.workflow import Workflow
from facilitair.bus.base import EventLog
from facilitair.bus.queue import TaskQueue
from facilitair.cache.entry import CacheEntry
from facilitair.cache.semantic import Decision, Lookup, SemanticCache
from facilitair.config import AgentConfig
from facilitair.llm import ProviderSet
from facilitair.observability import Metrics
from facilitair.protocol.api import TaskError, TaskRecord, TaskResult
from facilitair.protocol.events import (
    ChunkCompleted,
    ChunkStarted,
    Payload,
    PlanItem,
    StoredEvent,
    SystemMessage,
    TaskCancelled,
    TaskCompleted,
    TaskMetrics,
    TaskProgress,
    TaskStarted,
    TokenStream,
    Usage,
    iso_utc,
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


def _in(seconds: float) -> str:
    return iso_utc(datetime.now(UTC) + timedelta(seconds=seconds))


class TaskRunner:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        providers: ProviderSet,
        config: AgentConfig,
        metrics: Metrics,
        cache: SemanticCache | None = None,
        *,
        queue: TaskQueue,
        lease_s: float = 30.0,
        runs_tasks: bool = True,
        concurrency: int = 100,
    ) -> None:
        self.cache = cache
        self.queue = queue
        self.lease_s = lease_s
        self.runs_tasks = runs_tasks
        self.concurrency = concurrency
        self._taker: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases: asyncio.Task[None] | None = None
        self.store = store
        self.events = events
        self.providers = providers
        self.config = config
        self.metrics = metrics
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._stopping = False

    async def start(self) -> int:
        """End the tasks whose process died, then keep this process's leases; return how
        many tasks were ended."""
        ended = await self.end_orphans()
        self._leases = asyncio.create_task(self._keep_leases(), name="task-leases")
        if self.runs_tasks:
            self._taker = asyncio.create_task(self._take_forever(), name="task-taker")
        return ended

    async def end_orphans(self) -> int:
        claimed = await self.store.claim_expired_tasks(
            self.instance_id, utc_now(), _in(self.lease_s)
        )
        for record in claimed:
            log.warning("task %s lost its process; ending it as interrupted", record.task_id)
            await self.events.open(record.stream_id)
            await self._fail(record, INTERRUPTED)
        return len(claimed)

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.store.renew_leases(self.instance_id, _in(self.lease_s))
                await self.end_orphans()
            except Exception:
                log.exception("could not renew task leases")

    async def submit(self, record: TaskRecord) -> None:
        """Queue a new task; its stream is readable at once."""
        await self.events.create(record.stream_id)
        await self.queue.put(record, self.instance_id, _in(self.lease_s))
        self.metrics.tasks_started.inc()

    async def _take_forever(self) -> None:
        while True:
            if len(self._running) >= self.concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                record = await self.queue.take(self.instance_id, _in(self.lease_s))
            except Exception:
                log.exception("could not take a queued task")
                await asyncio.sleep(1.0)
                continue
            if record is None:
                # Woken when something is queued; a wake-up lost with a Redis reconnect
                # delays a task by a second at most.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.queue.wait()
                continue
            try:
                await self.events.open(record.stream_id)
            except Exception:
                # Its lease will run out and any process will end it as interrupted.
                log.exception("could not open the stream of task %s", record.task_id)
                continue
            self._start(record)

    def _start(self, record: TaskRecord) -> None:
        task = asyncio.create_task(self._run(record), name=f"task-{record.task_id}")
        self._running[record.stream_id] = task

        def done(_: object) -> None:
            self._running.pop(record.stream_id, None)
            self._slot_freed.set()

        task.add_done_callback(done)

    async def cancel_queued(self, stream_id: str, reason: str) -> bool:
        """Cancel a task that no process has taken yet; False if it has been taken."""
        record = await self.queue.take(self.instance_id, _in(self.lease_s), stream_id)
        if record is None:
            return False
        await self.events.open(stream_id)
        await self._finish(record, None, status="cancelled")
        await self.events.append(stream_id, TaskCancelled(reason=reason))
        return True

    async def cancel(self, stream_id: str, reason: str = "cancelled by the user") -> bool:
        task = self._running.get(stream_id)
        if task is None:
            return False
        self._cancel_reasons[stream_id] = reason
        task.cancel()
        await asyncio.wait({task})
        return True

    async def stop(self) -> None:
        for background in (self._leases, self._taker):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
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
        plan: list[dict[str, Any]] = []
        # A replayed cache hit ends within milliseconds: its progress would be stale before
        # anyone read it, so only the final record is written (saves a store write per turn).
        replaying = False

        async def emit(payload: Payload) -> StoredEvent:
            event = await self.events.append(stream_id, payload)
            self.metrics.count_event(payload.event)
            if isinstance(payload, TaskProgress):
                plan[:] = [item.model_dump() for item in payload.plan]
            if isinstance(payload, TaskProgress | ChunkCompleted) and not replaying:
                progress = {"status": "running", **_progress_fields(totals)}
                await self.store.save_task(record.model_copy(update=progress))
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
            await self.store.save_task(record.model_copy(update={"status": "running"}))
            await emit(
                TaskStarted(
                    task=request.task,
                    context=request.context.model_dump(exclude_none=True),
                    workflow=request.workflow,
                    task_id=record.task_id,
                )
            )
            models = workflow_models(request.workflow, self.config, turns)
            lookup = await self._look_up(record, models, emit)
            if lookup is not None and lookup.entry is not None:
                replaying = True
                await self._serve_hit(record, lookup, lookup.entry, emit, began)
                return
            workflow = WORKFLOWS[request.workflow](turns, self.config, emit)
            outcome = await workflow.run(request)
            metrics = TaskMetrics(
                duration_s=round(time.monotonic() - began, 3),
                cost_usd=_round_cost(totals.cost_usd),
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                llm_calls=totals.llm_calls,
                iterations=outcome.iterations,
                consensus=outcome.consensus,
            )
            result = TaskResult(
                content=outcome.content, artifacts=outcome.artifacts, metrics=metrics
            )
            await self._remember(record, models, lookup, result, totals, plan)
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
        except CouncilFailed as exc:
            await self._fail(
                record,
                TaskError(
                    error=f"The council could not meet: {exc}.",
                    code="council_failed",
                    retryable=True,
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

    async def _look_up(
        self, record: TaskRecord, models: dict[str, str], emit: Emit
    ) -> Lookup | None:
        request = record.request
        if self.cache is None or request.cache != "use":
            return None
        try:
            lookup = await self.cache.lookup(
                record.tenant_id, request.workflow, _cache_context(record), models, request.task
            )
        except Exception as exc:  # a broken cache must never break a run
            log.warning("cache lookup failed: %s", exc)
            await emit(
                SystemMessage(
                    message=f"Cache unavailable: {exc}", level="warning", kind="cache_error"
                )
            )
            return None
        self.metrics.cache_lookups.labels("hit" if lookup.entry else "miss").inc()
        decision = lookup.decision
        if lookup.entry is None and decision.rule not in (None, "empty", "threshold"):
            # A close match was refused: say why, so a surprising miss is never a mystery.
            await emit(
                SystemMessage(
                    message=f"Not served from the cache: a similar task "
                    f"({decision.similarity or 0:.0%} match) differs: {decision.detail}",
                    kind="cache_miss",
                    details=_decision_details(decision),
                )
            )
        return lookup

    async def _remember(
        self,
        record: TaskRecord,
        models: dict[str, str],
        lookup: Lookup | None,
        result: TaskResult,
        totals: RunTotals,
        plan: list[dict[str, Any]],
    ) -> None:
        request = record.request
        if self.cache is None or request.cache == "off":
            return
        try:
            await self.cache.remember(
                tenant_id=record.tenant_id,
                partition=lookup.partition
                if lookup
                else self.cache.partition_for(
                    record.tenant_id, request.workflow, _cache_context(record), models
                ),
                task=request.task,
                vector=lookup.vector if lookup else None,
                result=result.model_dump(mode="json"),
                turns=totals.turns,
                plan=plan,
                cost_usd=result.metrics.cost_usd,
                duration_s=result.metrics.duration_s,
                source_task_id=record.task_id,
                replace=request.cache == "refresh",
                meta={"context": _cache_context(record), "models": models},
            )
        except Exception as exc:
            log.warning("could not store task %s in the cache: %s", record.task_id, exc)

    async def _serve_hit(
        self, record: TaskRecord, lookup: Lookup, entry: CacheEntry, emit: Emit, began: float
    ) -> None:
        """Replay a remembered result with the full event shape, at no cost."""
        similarity = lookup.decision.similarity or 1.0
        verdict = lookup.decision.verdict
        spent = (verdict.cost_usd or 0.0) if verdict else 0.0  # the verifier's call, if asked
        saved_usd = None if entry.cost_usd is None else max(0.0, entry.cost_usd - spent)
        saved = "an unknown cost" if saved_usd is None else _usd(saved_usd)
        match = f"{similarity:.0%} match"
        if verdict is not None:
            match += f", confirmed: {verdict.describe()}"
        await emit(
            SystemMessage(
                message=f"Cache hit ({match}) • saved {saved}, ~{entry.duration_s:.1f} s",
                kind="cache_hit",
                details=_decision_details(lookup.decision),
            )
        )
        await emit(
            TaskProgress(
                total_chunks=len(entry.turns),
                completed_chunks=0,
                estimated_time=0.0,
                estimated_cost=0.0,
                plan=[PlanItem.model_validate(p) for p in entry.plan],
            )
        )
        for number, turn in enumerate(entry.turns, start=1):
            await emit(
                ChunkStarted(
                    chunk_id=turn["chunk_id"],
                    chunk_number=number,
                    role=turn["role"],
                    agent=turn["agent"],
                    model=turn["model"],
                    description=turn["description"],
                    iteration=turn.get("iteration", 1),
                    phase=turn.get("phase"),
                    member=turn.get("member"),
                )
            )
            for line in turn["content"].splitlines(keepends=True):
                await emit(
                    TokenStream(
                        chunk_id=turn["chunk_id"],
                        tokens=line,
                        role=turn["role"],
                        agent=turn["agent"],
                        phase=turn.get("phase"),
                        member=turn.get("member"),
                    )
                )
            await emit(
                ChunkCompleted(
                    chunk_id=turn["chunk_id"],
                    chunk_number=number,
                    role=turn["role"],
                    agent=turn["agent"],
                    model=turn["model"],
                    content=turn["content"],
                    usage=Usage(),
                    cost_usd=0.0,
                    duration_s=0.0,
                    phase=turn.get("phase"),
                    member=turn.get("member"),
                    tests=turn.get("tests"),
                )
            )
        original = TaskResult.model_validate(entry.result)
        duration = round(time.monotonic() - began, 3)
        metrics = TaskMetrics(
            duration_s=duration,
            cost_usd=spent,
            prompt_tokens=0,
            completion_tokens=0,
            llm_calls=0 if verdict is None else 1,
            iterations=original.metrics.iterations,
            cached=True,
            similarity=round(similarity, 4),
            saved_usd=saved_usd,
            saved_s=round(max(0.0, entry.duration_s - duration), 3),
            consensus=original.metrics.consensus,
        )
        result = TaskResult(content=original.content, artifacts=original.artifacts, metrics=metrics)
        totals = RunTotals(total_chunks=len(entry.turns), completed_chunks=len(entry.turns))
        await self._finish(record, totals, status="completed", result=result)
        await emit(TaskCompleted(**result.model_dump()))

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
        final = {"status": status, "finished_at": utc_now(), "result": result, "error": error}
        await self.store.save_task(record.model_copy(update={**final, **fields}))
        self.metrics.tasks_finished.labels(status).inc()
        if totals:
            self.metrics.llm_tokens.labels("prompt").inc(totals.prompt_tokens)
            self.metrics.llm_tokens.labels("completion").inc(totals.completion_tokens)


def _decision_details(decision: Decision) -> dict[str, Any]:
    """What the matcher decided, for clients that show it: the rule that refused (or none),
    its explanation, and the verifier's verdict when it was asked."""
    details: dict[str, Any] = {
        "similarity": None if decision.similarity is None else round(decision.similarity, 4),
        "rule": decision.rule,
        "detail": decision.detail,
    }
    if decision.verdict is not None:
        details["verifier"] = dataclasses.asdict(decision.verdict)
    return details


def _usd(amount: float) -> str:
    """Cents for real money; sub-cent amounts keep enough digits not to read as $0.00."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


WORKFLOWS: dict[str, Callable[[TurnRunner, AgentConfig, Emit], Workflow]] = {
    "sequential": SequentialWorkflow,
    "council": CouncilWorkflow,
}


def workflow_models(workflow: str, config: AgentConfig, turns: TurnRunner) -> dict[str, str]:
    """The models whose answers a cached result holds: a cache partition per combination."""
    if workflow == "council":
        council = config.workflow.council
        models = {f"member{n}": m.model for n, m in enumerate(council.members, 1)}
        roles = ("judge", "chairman")
        chosen = {role: turns.model_for(role) for role in roles}
        return {**models, **chosen, "chair": council.chairman}
    return {role: turns.model_for(role) for role in SequentialWorkflow.ROLES}


def _cache_context(record: TaskRecord) -> dict[str, Any]:
    return record.request.context.model_dump(exclude_none=True)


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
