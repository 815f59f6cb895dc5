"""Any OpenAI-compatible chat-completions endpoint: OpenAI, OpenRouter, Ollama, vLLM,
llama.cpp server. Built on the official `openai` SDK; retries are RetryingProvider's job.

The SDK sends the request (auth, base URL, timeouts, status errors). The streamed body is read
raw and each SSE `data:` line parsed with `json.loads`: building the SDK's pydantic chunk
models for every token cost several times more than everything else a token goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from facilitair.llm.base import ChatRequest, Completion, ProviderError, StreamItem, TextDelta

if TYPE_CHECKING:
    import httpx2

DRAIN_TIMEOUT_S = 0.1  # after [DONE], how long the rest of the body is read (connection reuse)


class SSEDataDecoder:
    """Incremental Server-Sent Events parser that keeps only each event's `data` field.

    Lines end with LF, CRLF or CR; an event ends at a blank line; an unfinished event at the
    end of the body is dropped (as the SSE spec and the SDK do).
    """

    def __init__(self) -> None:
        self._tail = b""
        self._skip_lf = False
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")  # maybe the first half of a CRLF
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._tail:
            chunk = self._tail + chunk
        lines = chunk.split(b"\n")
        self._tail = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(b"\n".join(data))
                    data = self._data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        return events


class OpenAICompatibleProvider:
    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 600.0) -> None:
        self.base_url = base_url
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            # Local servers (Ollama, llama.cpp) accept any key; the SDK insists on one.
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout_s,
            http_client=_aiohttp_client(),
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            params["stop"] = request.stop
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        answered = False
        try:
            # What `chat.completions.create(**params)` does, minus the SDK's type-driven
            # transform of the params (about 0.6 ms of CPU per request; for these plain
            # params it returns them unchanged). Auth, base URL, timeouts and status errors
            # are the SDK's as before.
            chunks = await self._client.post(
                "/chat/completions",
                body=params,
                cast_to=ChatCompletion,
                options={"security": {"bearer_auth": True}},
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            answered = True
            body = chunks.response.aiter_bytes()
            try:
                decoder = SSEDataDecoder()
                done = False
                async for chunk in body:
                    for data in decoder.feed(chunk):
                        if data.startswith(b"[DONE]"):
                            done = True
                            break
                        parsed = json.loads(data)
                        if not isinstance(parsed, dict):
                            continue
                        if parsed.get("error"):
                            raise ProviderError(
                                f"{request.model} stream broke: APIError: "
                                f"{_stream_error_message(parsed['error'])}",
                                code="stream_interrupted",
                                retryable=True,
                            )
                        if parsed.get("usage") is not None:
                            usage = parsed["usage"]
                        for choice in parsed.get("choices") or ():
                            delta = choice.get("delta")
                            if delta:
                                content = delta.get("content")
                                if content:
                                    yield TextDelta(content)
                            if choice.get("finish_reason"):
                                finish_reason = choice["finish_reason"]
                    if done:
                        await _drain(body)
                        break
            finally:
                # At once, also when the consumer is cancelled: the server sees the disconnect.
                await body.aclose()
                await chunks.close()
        except ProviderError:
            raise
        except openai.APIStatusError as exc:
            raise _status_error(request.model, exc) from exc
        except openai.APIConnectionError as exc:
            if answered:  # the SDK wraps transport errors that break an open stream
                raise ProviderError(
                    f"{request.model} stream broke: {exc.__cause__ or exc}",
                    code="stream_interrupted",
                    retryable=True,
                ) from exc
            raise ProviderError(
                f"cannot reach {self.base_url}: {exc}", code="connection_error", retryable=True
            ) from exc
        except Exception as exc:  # transport errors while reading the body, malformed JSON
            raise ProviderError(
                f"{request.model} stream broke: {type(exc).__name__}: {exc}",
                code="stream_interrupted",
                retryable=True,
            ) from exc
        if finish_reason is None:
            raise ProviderError(
                f"{request.model} stream ended before the answer finished",
                code="stream_interrupted",
                retryable=True,
            )
        yield Completion(
            prompt_tokens=_count(usage, "prompt_tokens"),
            completion_tokens=_count(usage, "completion_tokens"),
            finish_reason=finish_reason,
        )

    async def check(self) -> str:
        try:
            await self._client.models.list(timeout=5.0)
        except openai.APIStatusError as exc:
            # The server answered: reachable. Some servers have no /models route.
            if exc.status_code in (401, 403):
                raise ProviderError(f"{self.base_url} rejected the API key") from exc
        except openai.APIError as exc:
            raise ProviderError(f"cannot reach {self.base_url}: {exc}") from exc
        return self.base_url

    async def aclose(self) -> None:
        await self._client.close()


def _aiohttp_client() -> httpx2.AsyncClient | None:
    """The SDK's aiohttp transport when aiohttp is installed (the `openai[aiohttp]` extra), else
    None: the SDK's default httpx2 client. aiohttp's C parser reads a streamed body at about
    half the CPU per chunk of httpx2's pure-Python HTTP/1.1 stack."""
    try:
        return openai.DefaultAioHttpClient()
    except RuntimeError:  # aiohttp is not installed
        return None


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] (usually just the body's end) so HTTP/1.1 can reuse the
    connection; give up quietly after DRAIN_TIMEOUT_S or on a transport error."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in body:
                pass


def _count(usage: dict[str, Any] | None, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) else None


def _stream_error_message(error: Any) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "An error occurred during streaming"


def _status_error(model: str, exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    retry_after: float | None = None
    header = exc.response.headers.get("retry-after")
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    retryable = status in (408, 409, 429) or status >= 500
    code = {401: "provider_auth", 403: "provider_auth", 404: "model_not_found", 429: "rate_limited"}
    message = f"{model}: provider answered {status}: {_error_message(exc)}"
    return ProviderError(
        message,
        code=code.get(status, "provider_error"),
        retryable=retryable,
        status=status,
        retry_after_s=retry_after,
    )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return exc.message
