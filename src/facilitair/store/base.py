"""Durable state — API keys, tasks, their events and the cache's rows — behind small interfaces.

`Store` is the whole of it, as the app container holds it; each part of the server depends
only on the focused protocol it uses (the event log on `EventStore`, the cache on
`CacheStore`, …). Implementations: `SQLiteStore` (embedded) and `PostgresStore` (scale-out),
side by side, passing one conformance suite (tests/test_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from facilitair.cache.entry import CacheEntry, CacheStats
from facilitair.protocol.api import TaskRecord
from facilitair.protocol.events import StoredEvent


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or used as configured; the message says what to do."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    tenant_id: str
    prefix: str
    created_at: str
    revoked_at: str | None = None


class Lifecycle(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date (raise StoreUnavailable if that fails)."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the store cannot answer."""
        ...

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied."""
        ...


class KeyStore(Protocol):
    async def secret(self, name: str, factory: str) -> str:
        """The stored secret `name`, set to `factory` first if there is none."""
        ...

    async def add_key(self, key: ApiKey, key_hash: str) -> None: ...

    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, match: str, key_hash: str, when: str) -> int:
        """Revoke the active keys whose id, name or prefix is `match`, or whose hash is
        `key_hash` (the full key, hashed); how many were revoked."""
        ...

    async def key_by_id(self, key_id: str) -> ApiKey | None: ...


class TaskStore(Protocol):
    async def add_task(
        self, record: TaskRecord, owner: str | None = None, lease_until: str | None = None
    ) -> None:
        """Store a new task: held by `owner` until `lease_until` unless renewed, or, without
        an owner, waiting in the queue for a process to take it."""
        ...

    async def take_task(
        self, owner: str, lease_until: str, stream_id: str | None = None
    ) -> TaskRecord | None:
        """Take the oldest waiting task (or that stream's, if it still waits) for `owner`.
        Atomic: of several processes taking at once, each task goes to one."""
        ...

    async def task(self, task_id: str) -> TaskRecord | None: ...

    async def task_by_stream(self, stream_id: str) -> TaskRecord | None: ...

    async def save_task(self, record: TaskRecord) -> None:
        """Replace the stored task with this version of it."""
        ...

    async def list_tasks(
        self, tenant_id: str, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]: ...

    async def renew_leases(self, owner: str, until: str) -> int:
        """Extend the leases of the owner's unfinished tasks; return how many."""
        ...

    async def claim_expired_tasks(self, owner: str, now: str, until: str) -> list[TaskRecord]:
        """Take over the unfinished tasks whose lease ran out before `now` (their process is
        gone). Atomic: of several processes claiming at once, each task goes to one."""
        ...


class EventStore(Protocol):
    async def add_events(self, events: list[StoredEvent]) -> None:
        """Store events; ones already stored (same stream and seq) are left as they are."""
        ...

    async def events(self, stream_id: str, after: int, limit: int) -> list[StoredEvent]: ...

    async def last_seq(self, stream_id: str) -> int: ...

    async def reserve_seq(self, stream_id: str, upto: int) -> None:
        """Record that seqs up to `upto` may have been shown to readers of the stream (its
        one writer sets it; a lower value releases what was reserved beyond it)."""
        ...

    async def reserved_seq(self, stream_id: str) -> int:
        """The highest seq reserved for the stream (0: none)."""
        ...

    async def expire_events(self, finished_before: str) -> int:
        """Delete the events of tasks finished before then (the tasks stay in the history);
        return how many events were deleted."""
        ...


class CacheStore(Protocol):
    async def add_cache_entries(self, entries: list[CacheEntry]) -> None: ...

    async def cache_entries(self, created_after: str) -> list[CacheEntry]:
        """Every entry made after then, oldest first (to rebuild an in-memory index)."""
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


class Store(Lifecycle, KeyStore, TaskStore, EventStore, CacheStore, Protocol):
    """Everything durable, in one place."""
