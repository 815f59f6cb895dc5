"""How fast is a semantic cache lookup at 100,000 entries, and a whole cached run?

    .venv/bin/python bench/cache_latency.py [--entries 100000] [--lookups 300]

1. Fills one partition with N entries: a few thousand real embeddings of generated task texts,
   the rest random unit vectors (only the matrix size matters for search time), and times
   lookups with the real matcher — embedding excluded (search + guard) and included.
2. Starts the real server on the same SQLite file (N entries to load) with the fake OpenAI
   provider, runs one task (a miss: the baseline), then times POST → task_completed for hits:
   the same text again (an exact repeat, whose embedding the cache keeps), and rewordings that
   are each new to the server (greetings, politeness, case), so every one is embedded: the hard
   case. Prints both against the miss.
3. With `--pgvector` (default on): the same N entries in PostgreSQL + pgvector (started by
   scripts/services.sh), the same lookups through the HNSW index, and how often it hands the
   guard the same candidates as exact search in memory (top-1 and top-5 agreement).
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from facilitair.cache.embeddings import LocalEmbedder  # noqa: E402
from facilitair.cache.entry import CacheEntry  # noqa: E402
from facilitair.cache.index import MemoryVectorIndex  # noqa: E402
from facilitair.cache.semantic import CachePolicy, SemanticCache  # noqa: E402
from facilitair.config import Settings  # noqa: E402
from facilitair.protocol.events import utc_now  # noqa: E402
from facilitair.server.auth import create_key  # noqa: E402
from facilitair.server.background import BackgroundServer  # noqa: E402
from facilitair.store.base import CacheStore  # noqa: E402
from facilitair.store.postgres import PgVectorIndex, PostgresStore  # noqa: E402
from facilitair.store.sqlite import SQLiteStore  # noqa: E402
from fakes.openai_server import FakeOpenAI, Reply  # noqa: E402
from services import new_folder, start_services, stop_services  # noqa: E402
from support import plan_reply, verdict_reply  # noqa: E402

SUBJECTS = [
    "a REST API",
    "a CLI tool",
    "a web scraper",
    "a chat server",
    "a todo app",
    "an ETL pipeline",
    "a rate limiter",
    "a URL shortener",
    "a blog engine",
    "a payment webhook handler",
]
FEATURES = [
    "JWT authentication",
    "PostgreSQL storage",
    "Redis caching",
    "unit tests",
    "Docker packaging",
    "OAuth login",
    "CSV export",
    "pagination",
    "retries",
    "structured logging",
]
VERBS = ["Build", "Write", "Create", "Implement"]
TASK = "Build a URL shortener with Redis caching"
GREETINGS = ["", "Hi! ", "Hey, ", "Hello team, ", "Morning! "]
ASKS = ["", "please ", "could you "]
ENDINGS = ["", ".", ", thanks", " please", "!"]
CONTEXT = {"preferred_language": "python", "frameworks": ["fastapi"]}


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def generated_tasks(count: int) -> list[str]:
    tasks = []
    for n in range(count):
        verb = VERBS[n % len(VERBS)]
        subject = SUBJECTS[(n // 4) % len(SUBJECTS)]
        feature = FEATURES[(n // 40) % len(FEATURES)]
        tasks.append(f"{verb} {subject} with {feature} for team {n}")
    return tasks


async def fill(store: CacheStore, cache: SemanticCache, entries: int, real: int) -> str:
    """Put `entries` entries in the partition a real run of TASK will look in."""
    models = {
        "architect": "gpt-4o-mini",
        "coder": "gpt-4o-mini",
        "documenter": "gpt-4o-mini",
        "reviewer": "gpt-4o-mini",
    }
    partition = cache.partition_for("bench", "sequential", CONTEXT, models)
    texts = generated_tasks(real)
    vectors = await cache.embedder.embed(texts)
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((entries - real, vectors.shape[1])).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    texts += [f"synthetic entry {n}" for n in range(entries - real)]
    matrix = np.vstack([vectors, noise])
    result = {
        "content": "# cached\n",
        "artifacts": [],
        "metrics": {
            "duration_s": 5.0,
            "cost_usd": 0.01,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "llm_calls": 1,
            "iterations": 1,
        },
    }
    now = utc_now()
    rows = [
        CacheEntry(
            entry_id=f"cache_bench_{n}",
            tenant_id="bench",
            partition=partition,
            task=text,
            vector=matrix[n],
            result=result,
            turns=[],
            plan=[],
            cost_usd=0.01,
            duration_s=5.0,
            created_at=now,
        )
        for n, text in enumerate(texts)
    ]
    for start in range(0, len(rows), 5000):
        await store.add_cache_entries(rows[start : start + 5000])
    began = time.perf_counter()
    loaded = await cache.load()
    print(
        f"loaded {loaded:,} entries from the store into this process's index "
        f"in {time.perf_counter() - began:.2f} s"
    )
    return partition


async def lookups(cache: SemanticCache, partition: str, count: int) -> None:
    queries = [t.replace("for team", "for our team") for t in generated_tasks(count)]
    vectors = await cache.embedder.embed(queries)
    search: list[float] = []
    for query, vector in zip(queries, vectors, strict=True):
        began = time.perf_counter()
        await cache.decide(partition, query, vector)
        search.append(time.perf_counter() - began)
    whole: list[float] = []
    for query in queries:
        began = time.perf_counter()
        vector = (await cache.embedder.embed([query]))[0]
        await cache.decide(partition, query, vector)
        whole.append(time.perf_counter() - began)
    print(f"lookup, embedding excluded: p50 {ms(search, 50):.2f} ms, p99 {ms(search, 99):.2f} ms")
    print(f"lookup, embedding included: p50 {ms(whole, 50):.2f} ms, p99 {ms(whole, 99):.2f} ms")
    target = "MET" if ms(whole, 99) < 10 else "NOT MET"
    print(f"target: lookup p99 < 10 ms at {await cache.index.count():,} entries: {target}")


def script(fake: FakeOpenAI) -> None:
    fake.set_default("architect", Reply(plan_reply(("c1", "shortener", [])), delay_s=0.01))
    fake.set_default(
        "coder", Reply("```python path=app.py\n" + "x = 1\n" * 40 + "```\n", delay_s=0.01)
    )
    fake.set_default("reviewer", Reply(verdict_reply(True), delay_s=0.01))
    fake.set_default("documenter", Reply("# Shortener\n" * 10, delay_s=0.01))


async def end_to_end(data_dir: Path, repeats: int) -> None:
    with FakeOpenAI() as fake:
        script(fake)
        settings = Settings(
            cache_max_entries=1_000_000,
            data_dir=data_dir,
            llm_base_url=fake.base_url,
            llm_api_key="x",
            rate_limit_per_minute=10_000,
        )
        store = SQLiteStore(settings.sqlite_path)
        await store.open()
        key = (await create_key(store, "bench", "bench"))[1]
        await store.close()
        began = time.perf_counter()
        server = await asyncio.to_thread(BackgroundServer(settings).start, 120)
        print(f"server start with the entries to load: {time.perf_counter() - began:.2f} s")
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                miss = await timed_run(client, key, TASK)
                repeated = [await timed_run(client, key, TASK) for _ in range(repeats)]
                reworded = [
                    await timed_run(client, key, text) for text in rewordings(TASK)[:repeats]
                ]
        finally:
            await asyncio.to_thread(server.stop)
    print(f"POST → task_completed, miss (full run, fake LLM): {miss[0] * 1000:.0f} ms")
    for label, runs in (("hit, same text", repeated), ("hit, reworded", reworded)):
        hits = [seconds for seconds, was_cached in runs if was_cached]
        if not hits:
            print(f"POST → task_completed, {label}: no hits")
            continue
        target = "MET" if ms(hits, 50) < 50 else "NOT MET"
        print(
            f"POST → task_completed, {label}: p50 {ms(hits, 50):.1f} ms, "
            f"p99 {ms(hits, 99):.1f} ms ({len(hits)}/{len(runs)} hits) · "
            f"{miss[0] / float(np.median(hits)):.0f}x faster than the miss · "
            f"target p50 < 50 ms: {target}"
        )


def rewordings(task: str) -> list[str]:
    """Distinct rewordings of `task` that the matcher serves (greetings, politeness, case)."""
    lowered = task[0].lower() + task[1:]
    return [
        f"{greeting}{ask}{lowered if greeting or ask else task}{ending}"
        for ending in ENDINGS
        for greeting in GREETINGS
        for ask in ASKS
    ][1:]  # the first is the task itself


async def timed_run(client: httpx.AsyncClient, key: str, task: str) -> tuple[float, bool]:
    headers = {"X-API-Key": key}
    began = time.perf_counter()
    created = (
        await client.post(
            "/api/stream/task", headers=headers, json={"task": task, "context": CONTEXT}
        )
    ).json()
    async with client.stream("GET", created["events_url"], headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:") and '"metrics"' in line:
                data = json.loads(line[5:])
                return time.perf_counter() - began, bool(data["metrics"]["cached"])
    raise RuntimeError("stream ended without task_completed")


async def pgvector(memory: SemanticCache, args: argparse.Namespace) -> None:
    """The same entries and lookups on PostgreSQL + pgvector, compared with exact search."""
    folder = new_folder()
    try:
        services = await asyncio.to_thread(start_services, folder)
        store = PostgresStore(await asyncio.to_thread(services.new_database))
        await store.open()
        cache = SemanticCache(store, PgVectorIndex(store), memory.embedder, memory.policy)
        began = time.perf_counter()
        partition = await fill(store, cache, args.entries, min(args.real, args.entries))
        print(
            f"pgvector: filled {args.entries:,} entries (HNSW kept up to date on insert) in "
            f"{time.perf_counter() - began:.1f} s"
        )
        await lookups(cache, partition, args.lookups)
        queries = [t.replace("for team", "for our team") for t in generated_tasks(args.lookups)]
        vectors = await memory.embedder.embed(queries)
        top1 = top5 = 0
        for vector in vectors:
            exact = [c.entry_id for c in await memory.index.search(partition, vector, 5)]
            found = [c.entry_id for c in await cache.index.search(partition, vector, 5)]
            top1 += bool(exact) and bool(found) and exact[0] == found[0]
            top5 += len(set(exact) & set(found))
        print(
            f"pgvector vs exact search: same best candidate {top1}/{len(vectors)}, "
            f"top-5 overlap {top5 / (5 * len(vectors)):.1%}"
        )
        await store.close()
    finally:
        await asyncio.to_thread(stop_services, folder)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=2_000, help="entries with real embeddings")
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--no-pgvector", dest="pgvector", action="store_false", help="skip the pgvector part"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facilitair-bench-") as folder:
        data_dir = Path(folder)
        settings = Settings(data_dir=data_dir)
        store = SQLiteStore(settings.sqlite_path)
        await store.open()
        cache = SemanticCache(
            store, MemoryVectorIndex(store), LocalEmbedder(), CachePolicy(settings.cache_threshold)
        )
        began = time.perf_counter()
        partition = await fill(store, cache, args.entries, min(args.real, args.entries))
        print(
            f"filled {args.entries:,} entries in one partition in "
            f"{time.perf_counter() - began:.1f} s (threshold {settings.cache_threshold})"
        )
        await lookups(cache, partition, args.lookups)
        await end_to_end(data_dir, args.repeats)
        if args.pgvector:
            await pgvector(cache, args)
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
