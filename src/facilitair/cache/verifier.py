"""An optional second opinion for borderline matches: ask the configured LLM."""

from __future__ import annotations

from facilitair.llm.base import ChatMessage, ChatRequest, LLMProvider, TextDelta

QUESTION = (
    "Two users asked a coding assistant for something. Would one correct answer serve both "
    "requests exactly, with no change to the code? Answer only YES or NO.\n\n"
    "Request A: {a}\n\nRequest B: {b}"
)


class LLMVerifier:
    def __init__(self, provider: LLMProvider, model: str) -> None:
        self.provider = provider
        self.model = model

    async def same_answer(self, cached: str, query: str) -> bool:
        request = ChatRequest(
            model=self.model,
            messages=[ChatMessage("user", QUESTION.format(a=cached, b=query))],
            temperature=0.0,
            max_tokens=3,
        )
        answer = ""
        async for item in self.provider.stream(request):
            if isinstance(item, TextDelta):
                answer += item.text
        return answer.strip().upper().startswith("YES")
