"""Retries and timeouts around any provider, so every backend fails the same way."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from facilitair.llm.base import (
    ChatRequest,
    Completion,
    LLMProvider,
    ProviderError,
    Retrying,
    StreamItem,
    TextDelta,
)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    first_token_timeout_s: float = 60.0
    total_timeout_s: float = 600.0

    def delay(self, attempt: int, error: ProviderError) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins when longer."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        backoff = random.uniform(ceiling / 2, ceiling)
        if error.retry_after_s is not None:
            return min(self.max_delay_s, max(backoff, error.retry_after_s))
        return backoff


class RetryingProvider:
    """Wraps a provider: retries failures before the first token with backoff, restarts a turn
    that broke mid-stream once, and enforces first-token and total timeouts."""

    def __init__(self, inner: LLMProvider, policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy

    async def check(self) -> str:
        return await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        policy = self.policy
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.total_timeout_s
        attempt = 0
        restarted = False
        while True:
            attempt += 1
            yielded_text = False
            try:
                async for item in self._attempt(request, deadline):
                    if isinstance(item, TextDelta):
                        yielded_text = True
                    yield item
                return
            except ProviderError as error:
                if yielded_text:
                    if restarted or not error.retryable:
                        raise
                    restarted = True
                    yield Retrying(attempt, 0.0, error.message, restart=True)
                    continue
                if not error.retryable or attempt > policy.max_retries:
                    raise
                delay = policy.delay(attempt, error)
                if loop.time() + delay >= deadline:
                    raise
                yield Retrying(attempt, delay, error.message)
                await asyncio.sleep(delay)

    async def _attempt(
        self, request: ChatRequest, deadline: float
    ) -> AsyncGenerator[StreamItem, None]:
        loop = asyncio.get_running_loop()
        watchdog = _Watchdog(loop)
        watchdog.arm(min(deadline, loop.time() + self.policy.first_token_timeout_s))
        waiting_for_first = True
        items = self.inner.stream(request)
        try:
            while True:
                try:
                    item = await watchdog.pull(items)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timeout_error(request, waiting_for_first) from None
                if waiting_for_first and isinstance(item, TextDelta | Completion):
                    waiting_for_first = False
                    watchdog.arm(deadline)
                yield item
        finally:
            watchdog.disarm()
            await items.aclose()

    def _timeout_error(self, request: ChatRequest, waiting_for_first: bool) -> ProviderError:
        if waiting_for_first:
            return ProviderError(
                f"no answer from {request.model} within {self.policy.first_token_timeout_s:g} s",
                code="timeout",
                retryable=True,
            )
        return ProviderError(
            f"{request.model} did not finish within {self.policy.total_timeout_s:g} s",
            code="timeout",
        )


class _Watchdog:
    """A deadline over every pull from a stream, but never over the consumer's code between
    pulls: when it expires during a pull, that pull raises TimeoutError; when it expires
    between pulls, the next pull does.

    `asyncio.timeout` around each pull does the same at about 5 µs per pull (a context
    manager, the current task's lookup and a timer rescheduled every time), which profiling
    showed among the larger costs per token. Here a pull costs two attribute writes, and the
    timer is set once per deadline.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._pulling = False
        self._cancelled_pull = False
        self._expired = False

    def arm(self, when: float) -> None:
        self.disarm()
        self._expired = False
        self._timer = self._loop.call_at(when, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._expired = True
        if self._pulling and self._task is not None:
            self._cancelled_pull = True
            self._task.cancel()

    async def pull(self, items: AsyncIterator[T]) -> T:
        if self._expired:
            raise TimeoutError
        if self._task is None:
            self._task = asyncio.current_task()
        self._pulling = True
        try:
            return await anext(items)
        except asyncio.CancelledError:
            if self._cancelled_pull and self._task is not None and self._task.uncancel() == 0:
                raise TimeoutError from None  # our cancel, and nobody else's
            raise
        finally:
            self._pulling = False
            self._cancelled_pull = False
