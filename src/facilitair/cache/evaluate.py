"""Measure the real matcher on labelled pairs: how many should-hits it serves, how many traps
it answers wrongly, and how long a lookup takes.

Each line of a file is `{"a": …, "b": …, "same_answer": true|false}`, optionally with
`context_a` / `context_b` and `category`. Every `a` is stored in a cache of its own (a real
SemanticCache on a throw-away SQLite store) and its `b` is looked up there.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facilitair.cache.embeddings import Embedder
from facilitair.cache.index import MemoryVectorIndex
from facilitair.cache.semantic import CachePolicy, SemanticCache, Verifier
from facilitair.cache.verifier import Verdict
from facilitair.store.sqlite import SQLiteStore

MODELS = {"all": "eval"}


@dataclass
class Report:
    should_hit: int = 0
    served: int = 0
    traps: int = 0
    wrong: int = 0
    lookup_ms: list[float] = field(default_factory=list)
    wrong_by_category: Counter[str] = field(default_factory=Counter)
    missed_by_category: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def served_rate(self) -> float:
        return self.served / self.should_hit if self.should_hit else 0.0

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.traps if self.traps else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.lookup_ms, q)) if self.lookup_ms else 0.0

    def lines(self, threshold: float) -> list[str]:
        lines = [
            f"pairs: {self.should_hit + self.traps} ({self.should_hit} should hit, "
            f"{self.traps} traps) · threshold {threshold:.3f} + guard",
            f"served should-hits: {self.served}/{self.should_hit} = {self.served_rate:.1%}",
            f"answered traps (wrong): {self.wrong}/{self.traps} = {self.wrong_rate:.1%}",
            f"lookup latency (embedding included): p50 {self.percentile(50):.2f} ms, "
            f"p99 {self.percentile(99):.2f} ms",
        ]
        if self.wrong_by_category:
            lines.append("wrong, by category: " + _counts(self.wrong_by_category))
        if self.missed_by_category:
            lines.append("should-hits missed, by category: " + _counts(self.missed_by_category))
        if self.refusals:
            lines.append("misses, by reason: " + _counts(self.refusals))
        if self.verdicts:
            lines.append(self._verifier_line())
        return lines

    def _verifier_line(self) -> str:
        said_no = sum(not v.same for v in self.verdicts)
        seconds = sorted(v.latency_s for v in self.verdicts)
        priced = [v.cost_usd for v in self.verdicts if v.cost_usd is not None]
        cost = f"${sum(priced):.6f} in all" if priced else "cost unknown (no price or usage)"
        return (
            f"verifier ({self.verdicts[0].model}): asked {len(self.verdicts)} times, said no "
            f"{said_no}; p50 {seconds[len(seconds) // 2] * 1000:.0f} ms per call; {cost}"
        )


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common())


def default_pair_files() -> list[Path]:
    """The coding-task pairs shipped with Facilitair (the tuning half, the frozen test half, a
    fresh set by another author that was never tuned on, and a hard set of reworded traps that
    was), then fow-cache's pairs when that package is installed."""
    shipped = resources.files("facilitair.cache").joinpath("pairs")
    names = ("tune", "test", "fresh", "hard")
    files = [Path(str(shipped.joinpath(f"coding-{name}.jsonl"))) for name in names]
    spec = importlib.util.find_spec("fow_cache")
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    found = [Path(place) / "data" / "pairs.jsonl" for place in locations]
    return files + [path for path in found if path.is_file()][:1]


def read_pairs(path: Path) -> list[dict[str, Any]]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        if not {"a", "b", "same_answer"} <= item.keys():
            raise ValueError(f"line {number}: needs a, b and same_answer")
        pairs.append(item)
    return pairs


async def evaluate(
    pairs: list[dict[str, Any]],
    embedder: Embedder,
    policy: CachePolicy,
    verifier: Verifier | None = None,
) -> Report:
    """Every pair through a real SemanticCache; with a verifier, matches in the policy's
    verify band are asked as in the server, and its verdicts are reported."""
    report = Report()
    with tempfile.TemporaryDirectory(prefix="facilitair-eval-") as folder:
        store = SQLiteStore(Path(folder) / "eval.sqlite3")
        await store.open()
        try:
            cache = SemanticCache(
                store, MemoryVectorIndex(store), embedder, policy, verifier=verifier
            )
            # Storing is not what is measured: embed every `a` in one batch.
            vectors = await embedder.embed([str(p["a"]) for p in pairs])
            for number, (pair, vector) in enumerate(zip(pairs, vectors, strict=True)):
                await cache.remember(
                    tenant_id=f"pair-{number}",
                    partition=cache.partition_for(
                        f"pair-{number}", "sequential", pair.get("context_a") or {}, MODELS
                    ),
                    task=str(pair["a"]),
                    vector=vector,
                    result={},
                    turns=[],
                    plan=[],
                    cost_usd=0.0,
                    duration_s=0.0,
                    source_task_id="",
                    replace=False,
                )
            for number, pair in enumerate(pairs):
                began = time.perf_counter()
                lookup = await cache.lookup(
                    f"pair-{number}",
                    "sequential",
                    pair.get("context_b") or {},
                    MODELS,
                    str(pair["b"]),
                )
                report.lookup_ms.append((time.perf_counter() - began) * 1000)
                if lookup.decision.verdict is not None:
                    report.verdicts.append(lookup.decision.verdict)
                hit = lookup.entry is not None
                category = str(pair.get("category", "all"))
                if pair["same_answer"]:
                    report.should_hit += 1
                    report.served += hit
                    if not hit:
                        report.missed_by_category[category] += 1
                else:
                    report.traps += 1
                    report.wrong += hit
                    if hit:
                        report.wrong_by_category[category] += 1
                if not hit:
                    report.refusals[lookup.decision.rule or "?"] += 1
        finally:
            await store.close()
    return report
