"""An optional second opinion for borderline matches: ask the configured LLM whether one answer
serves both requests. Its verdict says what it cost, so the saving a hit shows is honest."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from facilitair.llm.base import ChatMessage, ChatRequest, Completion, LLMProvider, TextDelta

QUESTION = (
    "Two users asked a coding assistant for something. Would one correct answer serve both "
    "requests exactly, with no change to the code? Answer only YES or NO.\n\n"
    "Request A: {a}\n\nRequest B: {b}"
)

Pricer = Callable[[str, int, int], float | None]  # (model, prompt, completion tokens) -> USD


@dataclass(frozen=True)
class Verdict:
    same: bool
    model: str
    answer: str  # what the model said, trimmed
    latency_s: float
    cost_usd: float | None  # None when the model has no price or reported no usage

    def describe(self) -> str:
        """ "gpt-4o-mini said YES (0.41 s, $0.000021)" """
        cost = "cost unknown" if self.cost_usd is None else f"${self.cost_usd:.6f}"
        said = self.answer or "nothing"
        return f"{self.model} said {said} ({self.latency_s:.2f} s, {cost})"


class LLMVerifier:
    def __init__(self, provider: LLMProvider, model: str, pricer: Pricer | None = None) -> None:
        self.provider = provider
        self.model = model
        self.pricer = pricer

    async def verify(self, cached: str, query: str) -> Verdict:
        request = ChatRequest(
            model=self.model,
            messages=[ChatMessage("user", QUESTION.format(a=cached, b=query))],
            temperature=0.0,
            max_tokens=3,
        )
        began = time.perf_counter()
        answer = ""
        cost: float | None = None
        async for item in self.provider.stream(request):
            if isinstance(item, TextDelta):
                answer += item.text
            elif isinstance(item, Completion):
                cost = self._cost(item)
        answer = answer.strip()
        return Verdict(
            same=answer.upper().startswith("YES"),
            model=self.model,
            answer=answer[:40],
            latency_s=time.perf_counter() - began,
            cost_usd=cost,
        )

    def _cost(self, completion: Completion) -> float | None:
        prompt, answer = completion.prompt_tokens, completion.completion_tokens
        if self.pricer is None or prompt is None or answer is None:
            return None
        return self.pricer(self.model, prompt, answer)
