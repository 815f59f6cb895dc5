"""Any OpenAI-compatible chat-completions endpoint: OpenAI, OpenRouter, Ollama, vLLM,
llama.cpp server. Retries and timeouts are RetryingProvider's job.

It speaks the protocol with aiohttp directly rather than through the `openai` SDK. Profiled
under 100 concurrent streams, the SDK's request path (options, httpx-over-aiohttp adapter,
header validation) cost about 3 ms of CPU per request and its body wrapper a few µs per
token; the protocol used here is one POST and an SSE body, so the SDK bought nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from facilitair.llm.base import ChatRequest, Completion, ProviderError, StreamItem, TextDelta

DRAIN_TIMEOUT_S = 0.1  # after [DONE], how long the rest of the body is read (connection reuse)
ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error response read for its message
CHECK_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class SSEDataDecoder:
    """Incremental Server-Sent Events parser that keeps only each event's `data` field.

    Lines end with LF, CRLF or CR; an event ends at a blank line; an unfinished event at the
    end of the body is dropped (as the SSE spec says).
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
    """`structured_output`: send a request's JSON schema as `response_format`. A provider that
    answers 400 to it is asked again without, and not sent schemas again.
    `extra_body`: fields added to every request (e.g. llama.cpp's sampling settings).
    `keep_alive=False` opens a connection per request: for servers that drop idle keep-alive
    connections without notice (llama.cpp's), where a reused one fails on first write."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 600.0,
        structured_output: bool = False,
        extra_body: dict[str, Any] | None = None,
        keep_alive: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.structured_output = structured_output
        self._extra_body = extra_body or {}
        self._keep_alive = keep_alive
        self._headers = {
            # Local servers (Ollama, llama.cpp) accept any key; some insist on the header.
            "Authorization": f"Bearer {api_key or 'not-needed'}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        # No read timeout here: RetryingProvider bounds the wait for the first token and the
        # whole answer, for every provider alike.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made on.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # No pool limit: the number of turns running at once is bounded upstream
                # (FAC_TASK_CONCURRENCY), and a limit here would queue a task's turn behind
                # other tasks' open streams.
                connector=aiohttp.TCPConnector(limit=0, force_close=not self._keep_alive),
                timeout=self._timeout,
                headers=self._headers,
            )
        return self._session

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        params: dict[str, Any] = {
            **self._extra_body,
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            params["stop"] = request.stop
        if request.seed is not None:
            params["seed"] = request.seed
        schema = request.response_schema if self.structured_output else None
        if schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.name, "schema": schema.schema, "strict": True},
            }
        response = await self._post(params)
        if response.status == 400 and schema is not None:
            error = await _status_error(request.model, response)
            response.close()
            if not _about_schemas(error.message):
                raise error  # a bad request for another reason (too long a prompt…)
            self.structured_output = False
            log.warning(
                "%s refused a JSON schema (%s); sending none from now on",
                self.base_url,
                error.message,
            )
            del params["response_format"]
            response = await self._post(params)
        reusable = False
        try:
            if response.status >= 400:
                raise await _status_error(request.model, response)
            finish_reason: str | None = None
            usage: dict[str, Any] | None = None
            decoder = SSEDataDecoder()
            done = False
            try:
                async for chunk in response.content.iter_any():
                    for data in decoder.feed(chunk):
                        if data.startswith(b"[DONE]"):
                            done = True
                            break
                        parsed = orjson.loads(data)
                        if not isinstance(parsed, dict):
                            continue
                        if parsed.get("error"):
                            raise ProviderError(
                                f"{request.model} stream broke: "
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
                        reusable = await _drain(response)
                        break
            except ProviderError:
                raise
            except Exception as exc:  # transport errors while reading the body, malformed JSON
                raise ProviderError(
                    f"{request.model} stream broke: {_describe(exc)}",
                    code="stream_interrupted",
                    retryable=True,
                ) from exc
        finally:
            # A connection with unread body is closed at once (also when the consumer is
            # cancelled, so the provider sees the disconnect and stops generating).
            if reusable:
                response.release()
            else:
                response.close()
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

    async def _post(self, params: dict[str, Any]) -> aiohttp.ClientResponse:
        try:
            return await self._client().post(
                f"{self.base_url}/chat/completions", data=orjson.dumps(params)
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ProviderError(
                f"cannot reach {self.base_url}: {_describe(exc)}",
                code="connection_error",
                retryable=True,
            ) from exc

    async def check(self) -> str:
        try:
            async with self._client().get(
                f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
            ) as response:
                # Any answer means reachable (some servers have no /models route).
                if response.status in (401, 403):
                    raise ProviderError(f"{self.base_url} rejected the API key")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ProviderError(f"cannot reach {self.base_url}: {_describe(exc)}") from exc
        return self.base_url

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _drain(response: aiohttp.ClientResponse) -> bool:
    """Read what follows [DONE] (usually just the body's end) so HTTP/1.1 can reuse the
    connection; True when the body ended within DRAIN_TIMEOUT_S."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in response.content.iter_any():
                pass
            return True
    return False


def _about_schemas(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in ("response_format", "json_schema", "schema"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _count(usage: dict[str, Any] | None, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) else None


def _stream_error_message(error: Any) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "An error occurred during streaming"


async def _status_error(model: str, response: aiohttp.ClientResponse) -> ProviderError:
    status = response.status
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    retryable = status in (408, 409, 429) or status >= 500
    code = {401: "provider_auth", 403: "provider_auth", 404: "model_not_found", 429: "rate_limited"}
    message = f"{model}: provider answered {status}: {await _error_message(response)}"
    return ProviderError(
        message,
        code=code.get(status, "provider_error"),
        retryable=retryable,
        status=status,
        retry_after_s=retry_after,
    )


async def _error_message(response: aiohttp.ClientResponse) -> str:
    """The `error.message` of an OpenAI-style error body, else the body's start, else the
    status line's reason."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            raw = await response.content.read(ERROR_BODY_LIMIT)
        text = raw.decode("utf-8", "replace").strip()
        with contextlib.suppress(ValueError):
            body = json.loads(text)
            inner = body.get("error", body) if isinstance(body, dict) else None
            if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                return str(inner["message"])
            if isinstance(inner, str) and inner:
                return inner
        if text:
            return text[:300]
    return response.reason or "no reason given"
