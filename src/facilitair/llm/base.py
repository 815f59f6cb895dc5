"""The one interface every LLM backend implements, and the items its stream yields."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class ResponseSchema:
    """A JSON schema the answer must follow, for providers that can enforce one."""

    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[ChatMessage]
    temperature: float = 0.2
    max_tokens: int = 2000
    stop: list[str] = field(default_factory=list)
    response_schema: ResponseSchema | None = None
    seed: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Retrying:
    """A failed attempt is being retried. `restart` means text already yielded is void."""

    attempt: int
    delay_s: float
    reason: str
    restart: bool = False


@dataclass(frozen=True)
class Completion:
    """The end of a turn. `usage` is None when the provider did not report it."""

    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None = None


StreamItem = TextDelta | Retrying | Completion


class ProviderError(Exception):
    """A request that failed. `retryable` says whether trying again later may succeed."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "provider_error",
        retryable: bool = False,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class LLMProvider(Protocol):
    """Streams one chat completion: TextDelta items, then exactly one Completion.

    Raises ProviderError on failure. Cancelling the consumer must abort the request at once.
    """

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]: ...

    async def check(self) -> str:
        """Raise ProviderError when the backend is unreachable; return a short description."""
        ...

    async def aclose(self) -> None: ...
