"""One agent turn: a streamed LLM call that becomes chunk_started → token_stream… →
chunk_completed, with retries, fallbacks, usage, cost and the budget accounted for."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from facilitair.config import AgentConfig, RoleConfig
from facilitair.llm import ProviderSet
from facilitair.llm.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    ProviderError,
    ResponseSchema,
    Retrying,
)
from facilitair.protocol.events import (
    ChunkCompleted,
    ChunkStarted,
    Payload,
    StoredEvent,
    SystemMessage,
    TokenStream,
    Usage,
)

Emit = Callable[[Payload], Awaitable[StoredEvent]]

FULL_INTERVAL_S = 0.02


class BudgetExceeded(Exception):
    def __init__(self, spent: float, budget: float) -> None:
        super().__init__(f"budget of ${budget:.4f} reached (spent ${spent:.4f})")
        self.spent = spent
        self.budget = budget


class TurnFailed(Exception):
    def __init__(self, chunk_id: str, error: ProviderError) -> None:
        super().__init__(f"{chunk_id}: {error.message}")
        self.chunk_id = chunk_id
        self.error = error


@dataclass
class RunTotals:
    """What a run has used so far, from the providers' reported usage."""

    budget_usd: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    llm_calls: int = 0
    completed_chunks: int = 0
    total_chunks: int = 0
    chunk_counter: int = 0
    finished: dict[str, str] = field(default_factory=dict)  # chunk_id → latest full text
    partial: dict[str, str] = field(default_factory=dict)  # chunk_id → text of a turn in flight
    unpriced_models: set[str] = field(default_factory=set)
    turns: list[dict[str, Any]] = field(default_factory=list)  # every finished turn, for the cache

    def next_chunk_number(self) -> int:
        self.chunk_counter += 1
        return self.chunk_counter

    def add_usage(self, prompt: int, completion: int, cost: float | None) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.llm_calls += 1
        if cost is None:
            self.cost_usd = None
        elif self.cost_usd is not None:
            self.cost_usd += cost

    def kept_output(self) -> dict[str, str]:
        """Everything written so far, the unfinished turns' text included."""
        return {**self.finished, **{k: v for k, v in self.partial.items() if v}}

    def check_budget(self) -> None:
        budget, spent = self.budget_usd, self.cost_usd
        if budget is not None and spent is not None and spent >= budget:
            raise BudgetExceeded(spent, budget)


@dataclass(frozen=True)
class Lane:
    """A council member's turn: its own model, provider and sampling, and where it shows."""

    phase: str
    member: str  # the label shown: "Member 1" until the review ends, then the model
    model: str | None = None
    provider: str | None = None
    temperature: float | None = None
    seed: int | None = None
    schema: dict[str, Any] | None = None  # instead of the role's (a judge's, for its labels)


@dataclass(frozen=True)
class FinishedTurn:
    chunk_id: str
    chunk_number: int
    role: str
    agent: str
    model: str
    description: str
    iteration: int
    content: str
    duration_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    phase: str | None = None
    member: str | None = None
    tests: dict[str, float] | None = None


@dataclass(frozen=True)
class TurnResult:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


class TokenBatcher:
    """Turns model deltas into token_stream events.

    `filtered` sends whole lines (a line end, so also a closing code fence, flushes);
    `full` sends deltas, coalesced to at most one event per FULL_INTERVAL_S.
    """

    def __init__(self, send: Callable[[str], Awaitable[None]], verbosity: str) -> None:
        self._send = send
        self._full = verbosity == "full"
        self._buffer = ""
        self._last_sent = 0.0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    async def add(self, text: str) -> None:
        self._buffer += text
        if self._full:
            wait = self._last_sent + FULL_INTERVAL_S - time.monotonic()
            if wait <= 0:
                await self._flush_all()
            elif self._timer is None:
                self._timer = asyncio.create_task(self._flush_later(wait))
        else:
            # No lock: in this mode nothing but the turn itself sends (no timer).
            cut = self._buffer.rfind("\n")
            if cut != -1:
                head, self._buffer = self._buffer[: cut + 1], self._buffer[cut + 1 :]
                await self._send(head)

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None
        await self._flush_all()

    async def _flush_all(self) -> None:
        async with self._lock:
            if self._buffer:
                text, self._buffer = self._buffer, ""
                self._last_sent = time.monotonic()
                await self._send(text)

    async def close(self) -> None:
        """Send what is left; the turn is over."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self._flush_all()

    def discard(self) -> None:
        self._buffer = ""


@dataclass
class TurnRunner:
    """Runs agent turns for one task and accounts for them in `totals`."""

    emit: Emit
    providers: ProviderSet
    config: AgentConfig
    totals: RunTotals
    verbosity: str
    model_overrides: dict[str, str]

    def model_for(self, role_key: str) -> str:
        return self.model_overrides.get(role_key) or self.config.roles[role_key].model

    async def finish(self, turn: FinishedTurn) -> None:
        """What every turn ends with, a model's or the Tester's: counted, kept for the cache,
        and announced as chunk_completed."""
        self.totals.completed_chunks += 1
        self.totals.finished[turn.chunk_id] = turn.content
        record: dict[str, Any] = {
            "chunk_id": turn.chunk_id,
            "chunk_number": turn.chunk_number,
            "role": turn.role,
            "agent": turn.agent,
            "model": turn.model,
            "description": turn.description,
            "iteration": turn.iteration,
            "content": turn.content,
            "usage": {
                "prompt_tokens": turn.prompt_tokens,
                "completion_tokens": turn.completion_tokens,
            },
            "cost_usd": turn.cost_usd,
        }
        extras = {"phase": turn.phase, "member": turn.member, "tests": turn.tests}
        self.totals.turns.append(record | {k: v for k, v in extras.items() if v is not None})
        await self.emit(
            ChunkCompleted(
                chunk_id=turn.chunk_id,
                chunk_number=turn.chunk_number,
                role=turn.role,
                agent=turn.agent,
                model=turn.model,
                content=turn.content,
                usage=Usage(
                    prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens
                ),
                cost_usd=turn.cost_usd,
                duration_s=turn.duration_s,
                phase=turn.phase,
                member=turn.member,
                tests=turn.tests,
            )
        )

    async def run(
        self,
        *,
        role_key: str,
        chunk_id: str,
        agent: str,
        description: str,
        messages: list[ChatMessage],
        iteration: int = 1,
        lane: Lane | None = None,
    ) -> TurnResult:
        role = self.config.roles[role_key]
        if lane is not None:
            updates: dict[str, Any] = {"fallbacks": []}
            if lane.provider is not None:
                updates["provider"] = lane.provider
            if lane.temperature is not None:
                updates["temperature"] = lane.temperature
            role = role.model_copy(update=updates)
        self.totals.check_budget()
        primary = (lane.model if lane and lane.model else None) or self.model_for(role_key)
        models = [primary, *[m for m in role.fallbacks if m != primary]]
        chunk_number = self.totals.next_chunk_number()
        for index, model in enumerate(models):
            try:
                return await self._attempt(
                    role_key,
                    role,
                    model,
                    chunk_id,
                    chunk_number,
                    agent,
                    description,
                    messages,
                    iteration,
                    lane,
                )
            except ProviderError as error:
                next_model = models[index + 1] if index + 1 < len(models) else None
                if next_model is None or not (error.retryable or error.code == "model_not_found"):
                    raise TurnFailed(chunk_id, error) from error
                await self.emit(
                    SystemMessage(
                        message=f"{agent}: {model} failed ({error.message}); "
                        f"falling back to {next_model}",
                        level="warning",
                        kind="fallback",
                    )
                )
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        role_key: str,
        role: RoleConfig,
        model: str,
        chunk_id: str,
        chunk_number: int,
        agent: str,
        description: str,
        messages: list[ChatMessage],
        iteration: int,
        lane: Lane | None,
    ) -> TurnResult:
        emit = self.emit
        phase = lane.phase if lane else None
        member = lane.member if lane else None

        async def started(attempt: int) -> None:
            await emit(
                ChunkStarted(
                    chunk_id=chunk_id,
                    chunk_number=chunk_number,
                    role=role_key,
                    agent=agent,
                    model=model,
                    description=description,
                    iteration=iteration,
                    attempt=attempt,
                    phase=phase,
                    member=member,
                )
            )

        async def send_tokens(text: str) -> None:
            # Unvalidated: every field is a str from this code, and this runs once per token.
            tokens = TokenStream.model_construct(
                chunk_id=chunk_id,
                tokens=text,
                role=role_key,
                agent=agent,
                phase=phase,
                member=member,
            )
            await emit(tokens)

        schema = (lane.schema if lane else None) or self.config.output_schema(role)
        request = ChatRequest(
            model=model,
            messages=messages,
            temperature=role.temperature,
            max_tokens=role.max_tokens,
            response_schema=ResponseSchema(role.output_schema, schema) if schema else None,
            seed=lane.seed if lane else None,
        )
        batcher = TokenBatcher(send_tokens, self.verbosity)
        began = time.monotonic()
        text = ""
        attempt = 1
        completion: Completion | None = None
        await started(attempt)
        self.totals.partial[chunk_id] = ""
        items = self.providers.get(role.provider).stream(request)
        try:
            async for item in items:
                if isinstance(item, Retrying):
                    await batcher.close()
                    await emit(_retry_message(agent, model, item))
                    if item.restart:
                        text = ""
                        self.totals.partial[chunk_id] = ""
                        attempt += 1
                        await started(attempt)
                elif isinstance(item, Completion):
                    completion = item
                else:
                    text += item.text
                    self.totals.partial[chunk_id] = text
                    await batcher.add(item.text)
        finally:
            await items.aclose()
            await batcher.close()
        assert completion is not None
        prompt = completion.prompt_tokens or 0
        produced = completion.completion_tokens or 0
        if completion.prompt_tokens is None or completion.completion_tokens is None:
            cost = None
        else:
            cost = self.config.price_usd(model, prompt, produced)
        if cost is None and model not in self.totals.unpriced_models:
            self.totals.unpriced_models.add(model)
            await emit(
                SystemMessage(
                    message=f"No price known for {model}: its cost is reported as unknown"
                    + (" and the budget cannot be enforced" if self.totals.budget_usd else ""),
                    level="warning",
                    kind="budget",
                )
            )
        self.totals.add_usage(prompt, produced, cost)
        del self.totals.partial[chunk_id]
        await self.finish(
            FinishedTurn(
                chunk_id=chunk_id,
                chunk_number=chunk_number,
                role=role_key,
                agent=agent,
                model=model,
                description=description,
                iteration=iteration,
                content=text,
                prompt_tokens=prompt,
                completion_tokens=produced,
                cost_usd=cost,
                duration_s=round(time.monotonic() - began, 3),
                phase=phase,
                member=member,
            )
        )
        self.totals.check_budget()
        return TurnResult(text, model, prompt, produced, cost)


def _retry_message(agent: str, model: str, item: Retrying) -> SystemMessage:
    if item.restart:
        message = f"{agent}: {model} stream broke ({item.reason}); restarting the turn"
    else:
        message = (
            f"{agent}: {model} attempt {item.attempt} failed ({item.reason}); "
            f"retrying in {item.delay_s:.1f} s"
        )
    return SystemMessage(message=message, level="warning", kind="retry")
