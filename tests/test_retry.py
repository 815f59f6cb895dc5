"""RetryingProvider around the OpenAI-compatible provider, against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from facilitair.llm.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    ProviderError,
    Retrying,
    StreamItem,
    TextDelta,
)
from facilitair.llm.openai_compat import OpenAICompatibleProvider
from facilitair.llm.retry import RetryingProvider, RetryPolicy
from fakes.openai_server import FakeOpenAI, Reply

TEXT = "def add(a, b):\n    return a + b\n"
REQUEST = ChatRequest(
    model="fake-model",
    messages=[ChatMessage("system", "You are the Coder."), ChatMessage("user", "add()")],
)

MakeProvider = Callable[..., RetryingProvider]


@pytest.fixture
async def make_provider(fake: FakeOpenAI) -> AsyncIterator[MakeProvider]:
    made: list[RetryingProvider] = []

    def make(base_url: str | None = None, **policy: Any) -> RetryingProvider:
        inner = OpenAICompatibleProvider(base_url or fake.base_url, "test-key")
        options = {"max_retries": 2, "base_delay_s": 0.01, **policy}
        provider = RetryingProvider(inner, RetryPolicy(**options))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def run(provider: RetryingProvider) -> tuple[list[StreamItem], ProviderError | None]:
    """Every item streamed, and the error that ended the stream (None on success)."""
    items: list[StreamItem] = []
    try:
        async for item in provider.stream(REQUEST):
            items.append(item)
    except ProviderError as error:
        return items, error
    return items, None


def text_of(items: list[StreamItem]) -> str:
    return "".join(i.text for i in items if isinstance(i, TextDelta))


def retries(items: list[StreamItem]) -> list[Retrying]:
    return [i for i in items if isinstance(i, Retrying)]


async def test_streams_text_then_one_completion(fake: FakeOpenAI, make_provider: MakeProvider):
    fake.script("coder", Reply(TEXT, prompt_tokens=11, completion_tokens=7))
    items, error = await run(make_provider())
    assert error is None
    assert all(isinstance(i, TextDelta) for i in items[:-1])
    assert len(items) > 2
    assert text_of(items) == TEXT
    assert items[-1] == Completion(prompt_tokens=11, completion_tokens=7, finish_reason="stop")
    (request,) = fake.requests
    assert request.role == "coder"
    assert request.body["stream"] is True


async def test_rate_limit_is_retried(fake: FakeOpenAI, make_provider: MakeProvider) -> None:
    fake.script("coder", Reply(status=429), Reply(TEXT))
    items, error = await run(make_provider())
    assert error is None
    assert isinstance(items[0], Retrying)
    assert (items[0].attempt, items[0].restart) == (1, False)
    assert len(retries(items)) == 1
    assert text_of(items) == TEXT
    assert isinstance(items[-1], Completion)
    assert len(fake.requests) == 2


async def test_server_errors_exhaust_retries(fake: FakeOpenAI, make_provider: MakeProvider):
    fake.script("coder", *[Reply(status=500)] * 3, Reply(TEXT))
    items, error = await run(make_provider())
    assert error is not None
    assert (error.retryable, error.status) == (True, 500)
    assert [r.attempt for r in retries(items)] == [1, 2]
    assert len(fake.requests) == 3


@pytest.mark.parametrize(("status", "code"), [(400, "provider_error"), (401, "provider_auth")])
async def test_client_errors_are_not_retried(
    fake: FakeOpenAI, make_provider: MakeProvider, status: int, code: str
) -> None:
    fake.script("coder", Reply(status=status), Reply(TEXT))
    items, error = await run(make_provider())
    assert items == []
    assert error is not None
    assert (error.retryable, error.status, error.code) == (False, status, code)
    assert len(fake.requests) == 1


async def test_stream_dropped_once_is_restarted(fake: FakeOpenAI, make_provider: MakeProvider):
    fake.script("coder", Reply(TEXT, drop_after=2), Reply(TEXT))
    items, error = await run(make_provider())
    assert error is None
    (retry,) = retries(items)
    assert retry.restart is True
    after = items[items.index(retry) + 1 :]
    assert text_of(after) == TEXT
    assert isinstance(items[-1], Completion)
    assert len(fake.requests) == 2


async def test_stream_dropped_twice_fails(fake: FakeOpenAI, make_provider: MakeProvider):
    fake.script("coder", Reply(TEXT, drop_after=2), Reply(TEXT, drop_after=2), Reply(TEXT))
    items, error = await run(make_provider())
    assert error is not None
    assert error.code == "stream_interrupted"
    assert [r.restart for r in retries(items)] == [True]
    assert not any(isinstance(i, Completion) for i in items)
    assert len(fake.requests) == 2


async def test_hang_times_out_and_is_retried(fake: FakeOpenAI, make_provider: MakeProvider):
    fake.script("coder", *[Reply(hang=True)] * 3, Reply(TEXT))
    started = time.monotonic()
    items, error = await run(make_provider(first_token_timeout_s=0.3))
    elapsed = time.monotonic() - started
    assert error is not None
    assert (error.code, error.retryable) == ("timeout", True)
    assert len(retries(items)) == 2
    assert len(fake.requests) == 3
    assert 0.9 <= elapsed < 3
    # Every timed-out request was abandoned, not left hanging on the server.
    assert await fake.wait_for_async(lambda: all(r.disconnected_at for r in fake.requests), 2)


async def test_total_timeout_mid_stream(fake: FakeOpenAI, make_provider: MakeProvider) -> None:
    fake.script("coder", Reply("a b c d e f g h", delay_s=0.2), Reply(TEXT))
    items, error = await run(make_provider(total_timeout_s=0.5))
    assert error is not None
    assert (error.code, error.retryable) == ("timeout", False)
    assert text_of(items).startswith("a ")
    assert len(fake.requests) == 1


async def test_cancel_mid_stream_disconnects(fake: FakeOpenAI, make_provider: MakeProvider):
    fake.script("coder", Reply("one two three four five six seven eight", delay_s=0.2))
    provider = make_provider()
    first_token = asyncio.Event()

    async def consume() -> None:
        async for item in provider.stream(REQUEST):
            if isinstance(item, TextDelta):
                first_token.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_token.wait(), 5)
    task.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    (request,) = fake.requests
    assert await fake.wait_for_async(lambda: request.disconnected_at is not None, 2)
    assert request.disconnected_at is not None
    assert request.disconnected_at - cancelled_at < 1.0
    assert request.finished_at is None


async def test_connection_refused(make_provider: MakeProvider) -> None:
    items, error = await run(make_provider(base_url="http://127.0.0.1:9/v1"))
    assert error is not None
    assert (error.code, error.retryable) == ("connection_error", True)
    assert len(retries(items)) == 2
