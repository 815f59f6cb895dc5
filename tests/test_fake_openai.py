"""Tests for the scripted fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from fakes.openai_server import FakeOpenAI, RecordedRequest, Reply


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def client(fake: FakeOpenAI, **kwargs: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0, **kwargs)


def msgs(system: str | None, user: str = "hi") -> list[Any]:
    out: list[Any] = [{"role": "system", "content": system}] if system is not None else []
    return [*out, {"role": "user", "content": user}]


async def stream_text(c: AsyncOpenAI, system: str | None, user: str = "hi") -> str:
    stream = await c.chat.completions.create(
        model="fake-model", messages=msgs(system, user), stream=True
    )
    parts = [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
    return "".join(parts)


@pytest.mark.asyncio
async def test_streaming_in_order_with_usage(fake: FakeOpenAI) -> None:
    fake.script("coder", "Hello there,  world!")
    async with client(fake) as c:
        stream = await c.chat.completions.create(
            model="m1",
            messages=msgs("You are the coder.", "x" * 40),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [ch async for ch in stream]
    content = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta]
    assert [t for t in content if t] == ["Hello ", "there,  ", "world!"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (14, 3, 17)
    (rec,) = fake.requests
    assert rec.role == "coder" and rec.model == "m1" and rec.status == 200
    assert rec.received_at <= (rec.first_token_at or 0) <= (rec.last_token_at or 0)
    assert rec.finished_at is not None and rec.disconnected_at is None


@pytest.mark.asyncio
async def test_roles_queues_and_defaults(fake: FakeOpenAI) -> None:
    fake.script("architect", "plan one", Reply(tokens=["plan", " two"]))
    fake.script("Coder", "code")
    fake.set_default("*", "fallback")
    fake.set_default("reviewer", lambda r: f"echo {r.messages[-1]['content']}")
    async with client(fake) as c:
        arch = "You are the ARCHITECT of this team."
        assert await stream_text(c, arch) == "plan one"
        assert await stream_text(c, arch) == "plan two"
        assert await stream_text(c, arch) == "fallback"
        assert await stream_text(c, "coder here") == "code"
        assert await stream_text(c, "As reviewer, check.", "abc") == "echo abc"
        assert await stream_text(c, None) == "fallback"
        assert await stream_text(c, "architecture astronaut") == "fallback"
    roles = [r.role for r in fake.requests]
    assert roles == [*["architect"] * 3, "coder", "reviewer", "default", "default"]
    assert len(fake.requests_for("architect")) == 3
    assert fake.requests_for("coder")[0].system == "coder here"
    assert fake.requests_for("default")[0].system == ""

    fake.reset()
    assert fake.requests == []
    async with client(fake) as c:
        assert await stream_text(c, arch) == "OK"


@pytest.mark.asyncio
async def test_custom_role_pattern_and_content_parts() -> None:
    with FakeOpenAI(role_pattern=r"role=(\w+)") as fake:
        fake.script("planner", "ok!")
        system = [{"type": "text", "text": "role=Planner"}]
        messages: list[Any] = [{"role": "system", "content": system}, *msgs(None)]
        async with client(fake) as c:
            stream = await c.chat.completions.create(model="m", messages=messages, stream=True)
            parts = [ch.choices[0].delta.content async for ch in stream if ch.choices]
        assert parts == ["ok!", None]
        assert fake.requests[0].role == "planner"


@pytest.mark.asyncio
async def test_error_statuses(fake: FakeOpenAI) -> None:
    fake.script("coder", Reply(status=429), Reply(status=500, text="boom"), Reply(status=401))
    async with client(fake) as c:
        with pytest.raises(openai.RateLimitError) as rate:
            await stream_text(c, "coder")
        with pytest.raises(openai.InternalServerError, match="boom"):
            await stream_text(c, "coder")
        with pytest.raises(openai.AuthenticationError):
            await stream_text(c, "coder")
    assert rate.value.response.headers["retry-after"] == "0"
    assert rate.value.code == "rate_limit_exceeded"
    assert [r.status for r in fake.requests] == [429, 500, 401]
    assert all(r.finished_at is not None for r in fake.requests)


@pytest.mark.asyncio
async def test_drop_after_breaks_stream(fake: FakeOpenAI) -> None:
    fake.script("coder", Reply(tokens=["a", "b", "c", "d"], drop_after=2))
    got: list[str] = []
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="m", messages=msgs("coder"), stream=True)
        with pytest.raises((httpx.HTTPError, openai.APIError)):
            async for ch in stream:
                got.append(ch.choices[0].delta.content or "")
    assert got == ["a", "b"]
    rec = fake.requests[0]
    assert rec.finished_at is None and rec.disconnected_at is None
    assert rec.last_token_at is not None


@pytest.mark.asyncio
async def test_drop_after_raw_httpx_incomplete_chunked(fake: FakeOpenAI) -> None:
    fake.set_default("*", Reply(text="one two three", drop_after=1))
    body = {"model": "m", "messages": msgs("coder"), "stream": True}
    lines: list[str] = []
    url = f"{fake.base_url}/chat/completions"
    async with httpx.AsyncClient() as h, h.stream("POST", url, json=body) as resp:
        assert resp.headers["transfer-encoding"] == "chunked"
        with pytest.raises(httpx.RemoteProtocolError):
            async for line in resp.aiter_lines():
                lines.append(line)
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [d["choices"][0]["delta"]["content"] for d in data] == ["one "]


@pytest.mark.asyncio
async def test_drop_non_streaming(fake: FakeOpenAI) -> None:
    fake.script("coder", Reply(text="x", drop_after=0))
    async with client(fake) as c:
        with pytest.raises(openai.APIConnectionError):
            await c.chat.completions.create(model="m", messages=msgs("coder"))


@pytest.mark.asyncio
async def test_hang_then_cancel_records_disconnect(fake: FakeOpenAI) -> None:
    fake.script("coder", Reply(text="never", hang=True))
    async with client(fake) as c:
        task = asyncio.create_task(
            c.chat.completions.create(model="m", messages=msgs("coder"), stream=True)
        )
        assert await fake.wait_for_async(lambda: len(fake.requests) == 1)
        await asyncio.sleep(0.05)
        assert not task.done()
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    rec = fake.requests[0]
    assert fake.wait_for(lambda: rec.disconnected_at is not None, timeout=1.0)
    assert rec.disconnected_at is not None
    assert rec.disconnected_at - cancelled_at < 1.0
    assert rec.first_token_at is None and rec.finished_at is None


@pytest.mark.asyncio
async def test_disconnect_detected_while_sleeping_between_tokens(fake: FakeOpenAI) -> None:
    fake.script("coder", Reply(tokens=["a", "b", "c"], delay_s=0.5))
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="m", messages=msgs("coder"), stream=True)
        first = await stream.__anext__()
        assert first.choices[0].delta.content == "a"
        closed_at = time.monotonic()
        await stream.close()
    rec = fake.requests[0]
    assert await fake.wait_for_async(lambda: rec.disconnected_at is not None, timeout=1.0)
    assert rec.disconnected_at is not None
    assert rec.disconnected_at - closed_at < 0.4
    assert rec.first_token_at == rec.last_token_at and rec.finished_at is None


@pytest.mark.asyncio
async def test_tokens_arrive_incrementally(fake: FakeOpenAI) -> None:
    fake.script("coder", Reply(tokens=["a", "b", "c", "d"], delay_s=0.1, first_token_delay_s=0.1))
    arrivals: list[float] = []
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="m", messages=msgs("coder"), stream=True)
        async for ch in stream:
            if ch.choices and ch.choices[0].delta.content:
                arrivals.append(time.monotonic())
    rec = fake.requests[0]
    assert len(arrivals) == 4
    assert rec.first_token_at is not None and rec.last_token_at is not None
    assert rec.first_token_at - rec.received_at >= 0.19
    assert arrivals[0] < rec.last_token_at
    assert arrivals[-1] - arrivals[0] >= 0.25


@pytest.mark.asyncio
async def test_non_streaming(fake: FakeOpenAI) -> None:
    fake.script(
        "documenter",
        Reply(text="Docs done.", prompt_tokens=7, completion_tokens=3, finish_reason="length"),
    )
    async with client(fake) as c:
        resp = await c.chat.completions.create(model="m2", messages=msgs("documenter"))
    assert resp.choices[0].message.content == "Docs done."
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "length"
    assert resp.model == "m2"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (7, 3)
    assert resp.usage.total_tokens == 10
    assert fake.requests[0].finished_at is not None


@pytest.mark.asyncio
async def test_concurrent_streams(fake: FakeOpenAI) -> None:
    def echo(r: RecordedRequest) -> Reply:
        return Reply(text=f"reply to {r.messages[-1]['content']} done", delay_s=0.05)

    fake.set_default("*", echo)
    started = time.monotonic()
    async with client(fake) as c:
        results = await asyncio.gather(*(stream_text(c, "coder", f"n{i}") for i in range(50)))
    assert results == [f"reply to n{i} done" for i in range(50)]
    assert time.monotonic() - started < 5.0
    assert len(fake.requests) == 50
    assert all(r.finished_at is not None for r in fake.requests)


@pytest.mark.asyncio
async def test_raw_http_endpoints(fake: FakeOpenAI) -> None:
    fake.set_default("*", "a b")
    body = {"model": "m", "messages": msgs("coder"), "stream": True}
    async with httpx.AsyncClient(base_url=fake.base_url) as h:
        models = await h.get("/models")
        missing = await h.post("/nope", json={})
        bad = await h.post("/chat/completions", content=b"{not json")
        sse = await h.post("/chat/completions", json=body)
    assert models.json() == {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
    assert missing.status_code == 404 and "error" in missing.json()
    assert bad.status_code == 400
    assert sse.headers["content-type"] == "text/event-stream"
    assert sse.headers["connection"] == "close"
    events = [e for e in sse.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert len(events) == 4
    assert "usage" not in sse.text


def test_stop_releases_port() -> None:
    fake = FakeOpenAI().start()
    url = fake.base_url
    assert httpx.get(f"{url}/models").status_code == 200
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models")
    with pytest.raises(RuntimeError):
        _ = fake.base_url
