"""Retries and timeouts around any provider, so every backend fails the same way."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from facilitair.llm.base import (
    ChatRequest,
    Completion,
    LLMProvider,
    ProviderError,
    Retrying,
    StreamItem,
    TextDelta,
)


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
        # The timeout wraps each pull from the inner stream, never a `yield`: a timeout that
        # spans a yield would fire inside the consumer's code instead of ours.
        loop = asyncio.get_running_loop()
        current_deadline = min(deadline, loop.time() + self.policy.first_token_timeout_s)
        waiting_for_first = True
        items = self.inner.stream(request)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(current_deadline):
                        item = await anext(items)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timeout_error(request, waiting_for_first) from None
                if waiting_for_first and isinstance(item, TextDelta | Completion):
                    waiting_for_first = False
                    current_deadline = deadline
                yield item
        finally:
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
