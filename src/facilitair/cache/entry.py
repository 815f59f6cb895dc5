"""One remembered result: what the cache stores and replays."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass
class CacheEntry:
    entry_id: str
    tenant_id: str
    partition: str
    task: str
    vector: npt.NDArray[np.float32]
    result: dict[str, Any]  # the original task_completed: content, artifacts, metrics
    turns: list[dict[str, Any]]  # each turn's chunk_started fields plus content, as run
    plan: list[dict[str, Any]]
    cost_usd: float | None
    duration_s: float
    created_at: str
    last_hit_at: str | None = None
    hit_count: int = 0
    source_task_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # context and models, for inspection

    def body_json(self) -> str:
        """What the stores keep as one JSON text: the result, turns, plan and provenance."""
        return json.dumps(
            {
                "result": self.result,
                "turns": self.turns,
                "plan": self.plan,
                "source_task_id": self.source_task_id,
                "meta": self.meta,
            }
        )

    @classmethod
    def from_row(cls, row: Sequence[Any], vector: npt.NDArray[np.float32]) -> CacheEntry:
        """An entry from a store's row: entry_id, tenant_id, partition, task, (the vector, as
        the store encodes it, decoded into `vector`), body, cost_usd, duration_s, created_at,
        last_hit_at, hit_count."""
        body = json.loads(row[5])
        return cls(
            entry_id=row[0],
            tenant_id=row[1],
            partition=row[2],
            task=row[3],
            vector=vector,
            result=body["result"],
            turns=body["turns"],
            plan=body["plan"],
            cost_usd=row[6],
            duration_s=row[7],
            created_at=row[8],
            last_hit_at=row[9],
            hit_count=row[10],
            source_task_id=body.get("source_task_id", ""),
            meta=body.get("meta", {}),
        )


@dataclass(frozen=True)
class CacheStats:
    entries: int
    hits: int
    misses: int
    saved_usd: float
    saved_s: float

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0
