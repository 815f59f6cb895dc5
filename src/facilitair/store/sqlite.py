"""The embedded store: one SQLite file, accessed through aiosqlite's worker thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np

from facilitair.cache.entry import CacheEntry, CacheStats
from facilitair.protocol.api import TaskRecord
from facilitair.protocol.events import StoredEvent, utc_now
from facilitair.store.base import ApiKey, StoreUnavailable
from facilitair.store.migrations import CREATE_TABLE, pending

KEY_COLUMNS = "key_id, name, tenant_id, prefix, created_at, revoked_at"
# In CacheEntry.from_row's order.
CACHE_COLUMNS = (
    "entry_id, tenant_id, partition, task, vector, body, cost_usd, duration_s, created_at,"
    " last_hit_at, hit_count"
)


def _entry_row(entry: CacheEntry) -> tuple[object, ...]:
    return (
        entry.entry_id,
        entry.tenant_id,
        entry.partition,
        entry.task,
        entry.vector.astype(np.float32).tobytes(),
        entry.body_json(),
        entry.cost_usd,
        entry.duration_s,
        entry.created_at,
        entry.last_hit_at,
        entry.hit_count,
    )


def _entry(row: Any) -> CacheEntry:
    return CacheEntry.from_row(row, np.frombuffer(row[4], dtype=np.float32))


UNFINISHED = ("queued", "running")
EVENT_PAGE = 500  # rows per INSERT: 4 parameters each, well under SQLite's 32,766


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        await self.migrate()

    async def _connect(self) -> aiosqlite.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit: each statement is its own transaction, one trip to aiosqlite's
                # thread instead of two (the statement, then COMMIT), so no method commits.
                # What must be atomic is one statement, or a script with its own BEGIN.
                db = await aiosqlite.connect(self.path, isolation_level=None)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=NORMAL")
                await db.execute("PRAGMA busy_timeout=5000")
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailable(
                    f"cannot open the SQLite database {self.path}: {exc}"
                ) from None
            self._db = db
        return self._db

    async def migrate(self) -> list[int]:
        await self._connect()
        await self.db.execute(CREATE_TABLE)
        async with self.db.execute("SELECT version FROM schema_migrations") as cur:
            applied = {int(row[0]) for row in await cur.fetchall()}
        done = []
        for migration in pending("sqlite", applied):
            # One script, one transaction; BEGIN IMMEDIATE takes the write lock first, so two
            # processes starting on one file apply each migration once.
            script = (
                f"BEGIN IMMEDIATE;\n{migration.sql}\n"
                "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES "
                f"({migration.version}, '{migration.name}', '{utc_now()}');\nCOMMIT;"
            )
            await self.db.executescript(script)
            done.append(migration.version)
        return done

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        await self.db.execute("SELECT 1")

    async def secret(self, name: str, factory: str) -> str:
        await self.db.execute(
            "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, factory)
        )
        async with self.db.execute("SELECT value FROM secrets WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def add_key(self, key: ApiKey, key_hash: str) -> None:
        await self.db.execute(
            "INSERT INTO api_keys (key_id, name, tenant_id, prefix, key_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key.key_id, key.name, key.tenant_id, key.prefix, key_hash, key.created_at),
        )

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self.db.execute(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?",
            (key_hash,),
        ) as cur:
            row = await cur.fetchone()
        return ApiKey(*row) if row else None

    async def list_keys(self) -> list[ApiKey]:
        async with self.db.execute(
            f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at"
        ) as cur:
            return [ApiKey(*row) for row in await cur.fetchall()]

    async def key_by_id(self, key_id: str) -> ApiKey | None:
        async with self.db.execute(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?",
            (key_id,),
        ) as cur:
            row = await cur.fetchone()
        return ApiKey(*row) if row else None

    async def revoke_key(self, match: str, key_hash: str, when: str) -> int:
        cur = await self.db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL"
            " AND (key_id = ? OR name = ? OR prefix = ? OR key_hash = ?)",
            (when, match, match, match, key_hash),
        )
        return cur.rowcount

    async def add_task(
        self, record: TaskRecord, owner: str | None = None, lease_until: str | None = None
    ) -> None:
        await self.db.execute(
            "INSERT INTO tasks (task_id, stream_id, tenant_id, status, created_at, finished_at,"
            " record, owner, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.task_id,
                record.stream_id,
                record.tenant_id,
                record.status,
                record.created_at,
                record.finished_at,
                record.model_dump_json(),
                owner,
                lease_until,
            ),
        )

    async def _one(self, where: str, value: str) -> TaskRecord | None:
        async with self.db.execute(f"SELECT record FROM tasks WHERE {where} = ?", (value,)) as cur:
            row = await cur.fetchone()
        return TaskRecord.model_validate_json(row[0]) if row else None

    async def task(self, task_id: str) -> TaskRecord | None:
        return await self._one("task_id", task_id)

    async def task_by_stream(self, stream_id: str) -> TaskRecord | None:
        return await self._one("stream_id", stream_id)

    async def save_task(self, record: TaskRecord) -> None:
        await self.db.execute(
            "UPDATE tasks SET status = ?, finished_at = ?, record = ? WHERE task_id = ?",
            (record.status, record.finished_at, record.model_dump_json(), record.task_id),
        )

    async def list_tasks(
        self, tenant_id: str, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]:
        async with self.db.execute(
            "SELECT record FROM tasks WHERE tenant_id = ? ORDER BY created_at DESC, task_id"
            " LIMIT ? OFFSET ?",
            (tenant_id, limit, offset),
        ) as cur:
            rows = await cur.fetchall()
        async with self.db.execute(
            "SELECT COUNT(*) FROM tasks WHERE tenant_id = ?", (tenant_id,)
        ) as cur:
            total_row = await cur.fetchone()
        total = int(total_row[0]) if total_row else 0
        return [TaskRecord.model_validate_json(row[0]) for row in rows], total

    async def take_task(
        self, owner: str, lease_until: str, stream_id: str | None = None
    ) -> TaskRecord | None:
        only = " AND stream_id = ?" if stream_id else ""
        async with self.db.execute(
            "UPDATE tasks SET owner = ?, lease_expires_at = ? WHERE task_id = (SELECT task_id"
            f" FROM tasks WHERE status = 'queued' AND owner IS NULL{only}"
            " ORDER BY created_at LIMIT 1) AND owner IS NULL RETURNING record",
            (owner, lease_until, *([stream_id] if stream_id else [])),
        ) as cur:
            row = await cur.fetchone()
        return TaskRecord.model_validate_json(row[0]) if row else None

    async def renew_leases(self, owner: str, until: str) -> int:
        cur = await self.db.execute(
            "UPDATE tasks SET lease_expires_at = ? WHERE owner = ? AND status IN (?, ?)",
            (until, owner, *UNFINISHED),
        )
        return cur.rowcount

    async def claim_expired_tasks(self, owner: str, now: str, until: str) -> list[TaskRecord]:
        async with self.db.execute(
            "UPDATE tasks SET owner = ?, lease_expires_at = ? WHERE status IN (?, ?)"
            " AND owner IS NOT NULL AND lease_expires_at < ? RETURNING record",
            (owner, until, *UNFINISHED, now),
        ) as cur:
            rows = await cur.fetchall()
        return [TaskRecord.model_validate_json(row[0]) for row in rows]

    async def add_events(self, events: list[StoredEvent]) -> None:
        # One multi-row INSERT per page: one statement, so one transaction and one trip.
        for start in range(0, len(events), EVENT_PAGE):
            page = events[start : start + EVENT_PAGE]
            values = ", ".join(["(?, ?, ?, ?)"] * len(page))
            await self.db.execute(
                f"INSERT OR IGNORE INTO events (stream_id, seq, event, data) VALUES {values}",
                [field for e in page for field in (e.stream_id, e.seq, e.event, e.data_json)],
            )

    async def events(self, stream_id: str, after: int, limit: int) -> list[StoredEvent]:
        async with self.db.execute(
            "SELECT seq, event, data FROM events WHERE stream_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (stream_id, after, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [StoredEvent.from_json(stream_id, seq, name, data) for seq, name, data in rows]

    async def last_seq(self, stream_id: str) -> int:
        async with self.db.execute(
            "SELECT MAX(seq) FROM events WHERE stream_id = ?", (stream_id,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def reserve_seq(self, stream_id: str, upto: int) -> None:
        await self.db.execute(
            "INSERT INTO seq_reservations (stream_id, reserved) VALUES (?, ?) ON CONFLICT"
            " (stream_id) DO UPDATE SET reserved = excluded.reserved",
            (stream_id, upto),
        )

    async def reserved_seq(self, stream_id: str) -> int:
        async with self.db.execute(
            "SELECT reserved FROM seq_reservations WHERE stream_id = ?", (stream_id,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def expire_events(self, finished_before: str) -> int:
        finished = "SELECT stream_id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ?"
        await self.db.execute(
            f"DELETE FROM seq_reservations WHERE stream_id IN ({finished})", (finished_before,)
        )
        cur = await self.db.execute(
            f"DELETE FROM events WHERE stream_id IN ({finished})", (finished_before,)
        )
        return cur.rowcount

    # --- semantic cache ---

    async def add_cache_entries(self, entries: list[CacheEntry]) -> None:
        await self.db.executemany(
            f"INSERT OR REPLACE INTO cache_entries ({CACHE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_entry_row(entry) for entry in entries],
        )

    async def cache_entries(self, created_after: str) -> list[CacheEntry]:
        async with self.db.execute(
            f"SELECT {CACHE_COLUMNS} FROM cache_entries WHERE created_at > ? ORDER BY created_at",
            (created_after,),
        ) as cur:
            return [_entry(row) for row in await cur.fetchall()]

    async def cache_entry(self, entry_id: str) -> CacheEntry | None:
        async with self.db.execute(
            f"SELECT {CACHE_COLUMNS} FROM cache_entries WHERE entry_id = ?", (entry_id,)
        ) as cur:
            row = await cur.fetchone()
        return _entry(row) if row else None

    async def delete_cache_entries(self, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        cur = await self.db.executemany(
            "DELETE FROM cache_entries WHERE entry_id = ?", [(i,) for i in entry_ids]
        )
        return cur.rowcount

    async def cache_entry_ids(self, tenant_id: str) -> list[str]:
        async with self.db.execute(
            "SELECT entry_id FROM cache_entries WHERE tenant_id = ?", (tenant_id,)
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def cache_eviction_candidates(self, created_before: str, keep: int) -> list[str]:
        async with self.db.execute(
            "SELECT entry_id FROM cache_entries WHERE created_at < ?"
            " UNION SELECT entry_id FROM (SELECT entry_id FROM cache_entries"
            " ORDER BY COALESCE(last_hit_at, created_at) DESC LIMIT -1 OFFSET ?)",
            (created_before, keep),
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def record_cache_lookup(
        self,
        tenant_id: str,
        *,
        hit_entry: str | None,
        when: str,
        saved_usd: float = 0.0,
        saved_s: float = 0.0,
    ) -> None:
        hit = hit_entry is not None
        if hit:
            await self.db.execute(
                "UPDATE cache_entries SET last_hit_at = ?, hit_count = hit_count + 1"
                " WHERE entry_id = ?",
                (when, hit_entry),
            )
        await self.db.execute(
            "INSERT INTO cache_counters (tenant_id, hits, misses, saved_usd, saved_s)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET"
            " hits = hits + excluded.hits, misses = misses + excluded.misses,"
            " saved_usd = saved_usd + excluded.saved_usd, saved_s = saved_s + excluded.saved_s",
            (tenant_id, int(hit), int(not hit), saved_usd, saved_s),
        )

    async def cache_stats(self, tenant_id: str) -> CacheStats:
        async with self.db.execute(
            "SELECT COUNT(*) FROM cache_entries WHERE tenant_id = ?", (tenant_id,)
        ) as cur:
            count_row = await cur.fetchone()
        async with self.db.execute(
            "SELECT hits, misses, saved_usd, saved_s FROM cache_counters WHERE tenant_id = ?",
            (tenant_id,),
        ) as cur:
            row = await cur.fetchone()
        hits, misses, saved_usd, saved_s = row if row else (0, 0, 0.0, 0.0)
        return CacheStats(
            entries=int(count_row[0]) if count_row else 0,
            hits=hits,
            misses=misses,
            saved_usd=saved_usd,
            saved_s=saved_s,
        )
