"""Durable state — API keys, tasks and their events — behind one interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from facilitair.cache.entry import CacheEntry, CacheStats
from facilitair.protocol.api import TaskRecord
from facilitair.protocol.events import StoredEvent


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    tenant_id: str
    prefix: str
    created_at: str
    revoked_at: str | None = None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the store cannot answer."""
        ...

    async def secret(self, name: str, factory: str) -> str:
        """The stored secret `name`, set to `factory` first if there is none."""
        ...

    async def add_key(self, key: ApiKey, key_hash: str) -> None: ...

    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, key_id_or_name: str, when: str) -> int: ...

    async def add_task(self, record: TaskRecord) -> None: ...

    async def task(self, task_id: str) -> TaskRecord | None: ...

    async def task_by_stream(self, stream_id: str) -> TaskRecord | None: ...

    async def save_task(self, record: TaskRecord) -> None:
        """Replace the stored task with this version of it."""
        ...

    async def list_tasks(
        self, tenant_id: str, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]: ...

    async def unfinished_tasks(self) -> list[TaskRecord]: ...

    async def add_events(self, events: list[StoredEvent]) -> None: ...

    async def events(self, stream_id: str, after: int, limit: int) -> list[StoredEvent]: ...

    async def last_seq(self, stream_id: str) -> int: ...

    async def expire_events(self, finished_before: str) -> int:
        """Delete the events of tasks finished before then (the tasks stay in the history);
        return how many streams expired."""
        ...

    # --- semantic cache ---

    async def add_cache_entries(self, entries: list[CacheEntry]) -> None: ...

    async def cache_entries(self, created_after: str) -> list[CacheEntry]:
        """Every entry made after then, oldest first (to rebuild the in-memory index)."""
        ...

    async def cache_entry(self, entry_id: str) -> CacheEntry | None: ...

    async def delete_cache_entries(self, entry_ids: list[str]) -> int: ...

    async def cache_entry_ids(self, tenant_id: str) -> list[str]: ...

    async def cache_eviction_candidates(self, created_before: str, keep: int) -> list[str]:
        """Entries made before then, plus the least recently hit beyond the newest `keep`."""
        ...

    async def record_cache_lookup(
        self,
        tenant_id: str,
        *,
        hit_entry: str | None,
        when: str,
        saved_usd: float = 0.0,
        saved_s: float = 0.0,
    ) -> None:
        """Count a lookup for the tenant; on a hit, also the entry's hit count and last use."""
        ...

    async def cache_stats(self, tenant_id: str) -> CacheStats: ...
