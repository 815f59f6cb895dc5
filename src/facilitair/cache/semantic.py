"""The context-aware semantic cache (SPEC §7): an exact partition, then a semantic match of the
task text inside it, then a guard against near-misses that change the answer."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from facilitair.cache.context import Granularity, partition_key
from facilitair.cache.embeddings import Embedder
from facilitair.cache.entry import CacheEntry, CacheStats
from facilitair.cache.guard import Guard
from facilitair.cache.index import VectorIndex
from facilitair.cache.verifier import Verdict
from facilitair.protocol.events import iso_utc, utc_now
from facilitair.store.base import CacheStore

CANDIDATES = 5
RECENT_VECTORS = 1024  # texts whose embedding is kept: a repeated task skips the model


class Verifier(Protocol):
    async def verify(self, cached: str, query: str) -> Verdict: ...


@dataclass(frozen=True)
class CachePolicy:
    threshold: float
    granularity: Granularity = "medium"
    ttl_s: int = 7 * 24 * 3600
    max_entries: int = 100_000
    verify_band: float = 0.0  # similarities in [threshold, threshold + band) ask the verifier


@dataclass(frozen=True)
class Decision:
    """Why a lookup hit or missed: the best similarity seen, on a miss what refused, and the
    verifier's verdict when it was asked."""

    hit: bool
    similarity: float | None
    entry_id: str | None = None
    rule: str | None = None
    detail: str = ""
    verdict: Verdict | None = None


@dataclass(frozen=True)
class Lookup:
    decision: Decision
    entry: CacheEntry | None
    partition: str
    vector: npt.NDArray[np.float32]


class SemanticCache:
    def __init__(
        self,
        store: CacheStore,
        index: VectorIndex,
        embedder: Embedder,
        policy: CachePolicy,
        guard: Guard | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.policy = policy
        self.guard = guard or Guard()
        self.verifier = verifier
        self._lock = asyncio.Lock()
        self._recent: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    async def load(self) -> int:
        """Make the index ready (the in-memory one loads the entries within their TTL)."""
        return await self.index.load(self._cutoff())

    def _cutoff(self) -> str:
        """Entries made before this time are past their TTL."""
        return iso_utc(datetime.now(UTC) - timedelta(seconds=self.policy.ttl_s))

    def partition_for(
        self, tenant_id: str, workflow: str, context: dict[str, Any], models: dict[str, str]
    ) -> str:
        return partition_key(
            tenant_id=tenant_id,
            workflow=workflow,
            context=context,
            models=models,
            embedder_id=self.embedder.id,
            granularity=self.policy.granularity,
        )

    async def decide(self, partition: str, task: str, vector: npt.NDArray[np.float32]) -> Decision:
        """The matcher alone: threshold, then guard, then (in the borderline band) verifier."""
        candidates = await self.index.search(partition, vector, CANDIDATES)
        if not candidates:
            return Decision(False, None, rule="empty", detail="nothing cached in this context")
        best = candidates[0][0]
        refusal: Decision | None = None
        for similarity, entry_id, cached_task in candidates:
            if similarity < self.policy.threshold:
                break
            refused = self.guard.check(cached_task, task)
            if refused is not None:
                refusal = refusal or Decision(
                    False, similarity, entry_id, refused.rule, refused.detail
                )
                continue
            verdict = await self._verdict(similarity, cached_task, task)
            if verdict is not None and not verdict.same:
                refusal = refusal or Decision(
                    False,
                    similarity,
                    entry_id,
                    "verifier",
                    f"the verifier was asked and {verdict.describe()}",
                    verdict,
                )
                continue
            return Decision(True, similarity, entry_id, verdict=verdict)
        if refusal is not None:
            return refusal
        return Decision(
            False,
            best,
            rule="threshold",
            detail=f"best similarity {best:.3f} is under {self.policy.threshold:.3f}",
        )

    async def _verdict(self, similarity: float, cached: str, query: str) -> Verdict | None:
        """The verifier's verdict on a borderline match that the guard let through."""
        borderline = similarity < self.policy.threshold + self.policy.verify_band
        if self.verifier is None or not borderline:
            return None
        return await self.verifier.verify(cached, query)

    async def lookup(
        self,
        tenant_id: str,
        workflow: str,
        context: dict[str, Any],
        models: dict[str, str],
        task: str,
    ) -> Lookup:
        partition = self.partition_for(tenant_id, workflow, context, models)
        vector = await self._vector(task)
        decision = await self.decide(partition, task, vector)
        entry = None
        if decision.hit and decision.entry_id is not None:
            entry = await self.store.cache_entry(decision.entry_id)
            if entry is None:  # deleted meanwhile
                await self.index.remove([decision.entry_id])
                decision = Decision(False, decision.similarity, rule="deleted")
            elif entry.created_at < self._cutoff():
                await self._delete([entry.entry_id])
                entry = None
                decision = Decision(False, decision.similarity, rule="expired")
        if entry is not None:
            saved_usd = entry.cost_usd or 0.0
            await self.store.record_cache_lookup(
                tenant_id,
                hit_entry=entry.entry_id,
                when=utc_now(),
                saved_usd=saved_usd,
                saved_s=entry.duration_s,
            )
        else:
            await self.store.record_cache_lookup(tenant_id, hit_entry=None, when=utc_now())
        return Lookup(decision, entry, partition, vector)

    async def remember(
        self,
        *,
        tenant_id: str,
        partition: str,
        task: str,
        vector: npt.NDArray[np.float32] | None,
        result: dict[str, Any],
        turns: list[dict[str, Any]],
        plan: list[dict[str, Any]],
        cost_usd: float | None,
        duration_s: float,
        source_task_id: str,
        replace: bool,
        meta: dict[str, Any] | None = None,
    ) -> CacheEntry:
        """Store a completed, successful result. With `replace`, the entry this task would
        have hit is dropped first (cache="refresh")."""
        if vector is None:
            vector = await self._vector(task)
        async with self._lock:
            if replace:
                old = await self.decide(partition, task, vector)
                if old.hit and old.entry_id is not None:
                    await self._delete([old.entry_id])
            entry = CacheEntry(
                entry_id="cache_" + uuid.uuid4().hex,
                tenant_id=tenant_id,
                partition=partition,
                task=task,
                vector=vector,
                result=result,
                turns=turns,
                plan=plan,
                cost_usd=cost_usd,
                duration_s=duration_s,
                created_at=utc_now(),
                source_task_id=source_task_id,
                meta=meta or {},
            )
            await self.store.add_cache_entries([entry])
            await self.index.add([entry])
            if await self.index.count() > self.policy.max_entries:
                await self.evict()
        return entry

    async def _vector(self, task: str) -> npt.NDArray[np.float32]:
        """The task's embedding; the same text asked again (a re-run, a retry) is not embedded
        again, which is most of an exact repeat's lookup time (bench/cache_latency.py)."""
        vector = self._recent.get(task)
        if vector is None:
            vector = (await self.embedder.embed([task]))[0]
            self._recent[task] = vector
            if len(self._recent) > RECENT_VECTORS:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(task)
        return vector

    async def _delete(self, entry_ids: list[str]) -> int:
        deleted = await self.store.delete_cache_entries(entry_ids)
        await self.index.remove(entry_ids)
        return deleted

    async def delete(self, tenant_id: str, entry_id: str) -> bool:
        entry = await self.store.cache_entry(entry_id)
        if entry is None or entry.tenant_id != tenant_id:
            return False
        return await self._delete([entry_id]) > 0

    async def clear(self, tenant_id: str) -> int:
        return await self._delete(await self.store.cache_entry_ids(tenant_id))

    async def stats(self, tenant_id: str) -> CacheStats:
        return await self.store.cache_stats(tenant_id)

    async def evict(self) -> int:
        """Drop entries past their TTL, then the least recently hit beyond max_entries."""
        victims = await self.store.cache_eviction_candidates(
            self._cutoff(), self.policy.max_entries
        )
        return await self._delete(victims)

    async def aclose(self) -> None:
        await self.embedder.aclose()
