"""Any OpenAI-compatible chat-completions endpoint: OpenAI, OpenRouter, Ollama, vLLM,
llama.cpp server. Built on the official `openai` SDK; retries are RetryingProvider's job."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import openai

from facilitair.llm.base import ChatRequest, Completion, ProviderError, StreamItem, TextDelta


class OpenAICompatibleProvider:
    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 600.0) -> None:
        self.base_url = base_url
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            # Local servers (Ollama, llama.cpp) accept any key; the SDK insists on one.
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout_s,
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
        usage: Any = None
        answered = False
        try:
            response = await self._client.chat.completions.create(**params)
            answered = True
            async with response as chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield TextDelta(choice.delta.content)
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
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
        except Exception as exc:  # the SDK lets transport errors through while streaming
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
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
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
