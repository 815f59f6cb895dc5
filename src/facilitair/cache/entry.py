"""One remembered result: what the cache stores and replays."""

from __future__ import annotations

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
