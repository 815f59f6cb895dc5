"""The scale-out store: PostgreSQL through an asyncpg pool, cache vectors in pgvector.

Every API process and worker shares it, so nothing here may live only in this process: the
cache's nearest-neighbour search is a query (`PgVectorIndex`), not an in-memory index.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import numpy.typing as npt
from pgvector.asyncpg import register_vector

from facilitair.cache.entry import CacheEntry, CacheStats
from facilitair.cache.index import Candidate
from facilitair.protocol.api import TaskRecord
from facilitair.protocol.events import StoredEvent, utc_now
from facilitair.store.base import ApiKey, StoreUnavailable
from facilitair.store.migrations import CREATE_TABLE, pending

# Any fixed number: every process takes this lock before migrating, so they migrate one by one.
MIGRATION_LOCK = 7_462_143_011

KEY_COLUMNS = "key_id, name, tenant_id, prefix, created_at, revoked_at"
# In CacheEntry.from_row's order.
CACHE_COLUMNS = (
    "entry_id, tenant_id, partition, task, embedding, body, cost_usd, duration_s, created_at,"
    " last_hit_at, hit_count"
)


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _entry(row: asyncpg.Record) -> CacheEntry:
    return CacheEntry.from_row(row, row["embedding"].to_numpy().astype(np.float32))


def _entry_row(entry: CacheEntry) -> tuple[object, ...]:
    vector = entry.vector.astype(np.float32)
    return (
        entry.entry_id,
        entry.tenant_id,
        entry.partition,
        entry.task,
        len(vector),
        vector,
        entry.body_json(),
        entry.cost_usd,
        entry.duration_s,
        entry.created_at,
        entry.last_hit_at,
        entry.hit_count,
    )


class PostgresStore:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._indexed_dimensions: set[int] = set()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    def _connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"dsn": self.url, "timeout": 10}
        if "pgbouncer=true" in self.url:
            # Transaction-mode poolers (Supabase's port 6543) cannot keep prepared statements.
            options["dsn"] = self.url.replace("pgbouncer=true", "").rstrip("?&")
            options["statement_cache_size"] = 0
        return options

    async def open(self) -> None:
        where = describe(self.url)
        try:
            connection = await asyncpg.connect(**self._connect_options())
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            raise StoreUnavailable(f"cannot reach PostgreSQL at {where}: {exc}") from None
        except asyncpg.PostgresError as exc:
            raise StoreUnavailable(f"PostgreSQL at {where} refused the connection: {exc}") from None
        try:
            await self._migrate(connection)
        finally:
            await connection.close()

        async def setup(conn: asyncpg.Connection) -> None:
            await register_vector(conn)
            # pgvector 0.8: keep scanning the HNSW graph until enough rows pass the partition
            # filter, in exact distance order, instead of returning too few. (Older versions
            # lack the setting; they still work, with plain HNSW scans.)
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("SET hnsw.iterative_scan = strict_order")

        self._pool = await asyncpg.create_pool(
            **self._connect_options(), min_size=1, max_size=self.pool_size, init=setup
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def migrate(self) -> list[int]:
        connection = await asyncpg.connect(**self._connect_options())
        try:
            return await self._migrate(connection)
        finally:
            await connection.close()

    async def _migrate(self, connection: asyncpg.Connection) -> list[int]:
        done: list[int] = []
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await connection.execute(CREATE_TABLE)
                rows = await connection.fetch("SELECT version FROM schema_migrations")
                for migration in pending("postgres", {int(r["version"]) for r in rows}):
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        utc_now(),
                    )
                    done.append(migration.version)
        except asyncpg.PostgresError as exc:
            message = str(exc)
            if "vector" in message:
                raise StoreUnavailable(
                    f"PostgreSQL at {describe(self.url)} has no `vector` extension ({message}): "
                    "install pgvector on the server (scripts/services.sh does) and run "
                    "`CREATE EXTENSION vector;` as a superuser, or enable it in your provider's "
                    "dashboard (Supabase: Database → Extensions)"
                ) from None
            raise StoreUnavailable(
                f"could not migrate the schema at {describe(self.url)}: {message}"
            ) from None
        return done

    async def secret(self, name: str, factory: str) -> str:
        value = await self.pool.fetchval(
            "INSERT INTO secrets (name, value) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING value",
            name,
            factory,
        )
        return str(value)

    async def add_key(self, key: ApiKey, key_hash: str) -> None:
        await self.pool.execute(
            "INSERT INTO api_keys (key_id, name, tenant_id, prefix, key_hash, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            key.key_id,
            key.name,
            key.tenant_id,
            key.prefix,
            key_hash,
            key.created_at,
        )

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self.pool.fetchrow(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
        )
        return ApiKey(*row) if row else None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self.pool.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return [ApiKey(*row) for row in rows]

    async def key_by_id(self, key_id: str) -> ApiKey | None:
        row = await self.pool.fetchrow(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id
        )
        return ApiKey(*row) if row else None

    async def revoke_key(self, match: str, key_hash: str, when: str) -> int:
        status = await self.pool.execute(
            "UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL"
            " AND (key_id = $2 OR name = $2 OR prefix = $2 OR key_hash = $3)",
            when,
            match,
            key_hash,
        )
        return _count(status)

    async def add_task(
        self, record: TaskRecord, owner: str | None = None, lease_until: str | None = None
    ) -> None:
        await self.pool.execute(
            "INSERT INTO tasks (task_id, stream_id, tenant_id, status, created_at, finished_at,"
            " record, owner, lease_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            record.task_id,
            record.stream_id,
            record.tenant_id,
            record.status,
            record.created_at,
            record.finished_at,
            record.model_dump_json(),
            owner,
            lease_until,
        )

    async def task(self, task_id: str) -> TaskRecord | None:
        value = await self.pool.fetchval("SELECT record FROM tasks WHERE task_id = $1", task_id)
        return TaskRecord.model_validate_json(value) if value else None

    async def task_by_stream(self, stream_id: str) -> TaskRecord | None:
        value = await self.pool.fetchval("SELECT record FROM tasks WHERE stream_id = $1", stream_id)
        return TaskRecord.model_validate_json(value) if value else None

    async def save_task(self, record: TaskRecord) -> None:
        await self.pool.execute(
            "UPDATE tasks SET status = $1, finished_at = $2, record = $3 WHERE task_id = $4",
            record.status,
            record.finished_at,
            record.model_dump_json(),
            record.task_id,
        )

    async def list_tasks(
        self, tenant_id: str, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]:
        rows = await self.pool.fetch(
            "SELECT record, COUNT(*) OVER () AS total FROM tasks WHERE tenant_id = $1"
            " ORDER BY created_at DESC, task_id LIMIT $2 OFFSET $3",
            tenant_id,
            limit,
            offset,
        )
        if rows:
            total = int(rows[0]["total"])
        else:
            total = int(
                await self.pool.fetchval(
                    "SELECT COUNT(*) FROM tasks WHERE tenant_id = $1", tenant_id
                )
            )
        return [TaskRecord.model_validate_json(row["record"]) for row in rows], total

    async def take_task(
        self, owner: str, lease_until: str, stream_id: str | None = None
    ) -> TaskRecord | None:
        # SKIP LOCKED: concurrent takers each get a different task, nobody waits on a row.
        only = " AND stream_id = $3" if stream_id else ""
        value = await self.pool.fetchval(
            "UPDATE tasks SET owner = $1, lease_expires_at = $2 WHERE task_id = (SELECT task_id"
            f" FROM tasks WHERE status = 'queued' AND owner IS NULL{only}"
            " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING record",
            owner,
            lease_until,
            *([stream_id] if stream_id else []),
        )
        return TaskRecord.model_validate_json(value) if value else None

    async def renew_leases(self, owner: str, until: str) -> int:
        status = await self.pool.execute(
            "UPDATE tasks SET lease_expires_at = $1"
            " WHERE owner = $2 AND status IN ('queued', 'running')",
            until,
            owner,
        )
        return _count(status)

    async def claim_expired_tasks(self, owner: str, now: str, until: str) -> list[TaskRecord]:
        # Row locks make this atomic: a second claimer re-checks the lease after the first
        # commits, finds it renewed, and skips the row.
        rows = await self.pool.fetch(
            "UPDATE tasks SET owner = $1, lease_expires_at = $2"
            " WHERE status IN ('queued', 'running')"
            " AND owner IS NOT NULL AND lease_expires_at < $3 RETURNING record",
            owner,
            until,
            now,
        )
        return [TaskRecord.model_validate_json(row["record"]) for row in rows]

    async def add_events(self, events: list[StoredEvent]) -> None:
        if not events:
            return
        # One round trip for the whole batch.
        await self.pool.execute(
            "INSERT INTO events (stream_id, seq, event, data)"
            " SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[])"
            " ON CONFLICT DO NOTHING",
            [e.stream_id for e in events],
            [e.seq for e in events],
            [e.event for e in events],
            [e.data_json for e in events],
        )

    async def events(self, stream_id: str, after: int, limit: int) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            "SELECT seq, event, data FROM events WHERE stream_id = $1 AND seq > $2"
            " ORDER BY seq LIMIT $3",
            stream_id,
            after,
            limit,
        )
        return [StoredEvent.from_json(stream_id, seq, name, data) for seq, name, data in rows]

    async def last_seq(self, stream_id: str) -> int:
        value = await self.pool.fetchval(
            "SELECT MAX(seq) FROM events WHERE stream_id = $1", stream_id
        )
        return int(value) if value is not None else 0

    async def reserve_seq(self, stream_id: str, upto: int) -> None:
        await self.pool.execute(
            "INSERT INTO seq_reservations (stream_id, reserved) VALUES ($1, $2) ON CONFLICT"
            " (stream_id) DO UPDATE SET reserved = excluded.reserved",
            stream_id,
            upto,
        )

    async def reserved_seq(self, stream_id: str) -> int:
        value = await self.pool.fetchval(
            "SELECT reserved FROM seq_reservations WHERE stream_id = $1", stream_id
        )
        return int(value) if value is not None else 0

    async def expire_events(self, finished_before: str) -> int:
        finished = "SELECT stream_id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1"
        await self.pool.execute(
            f"DELETE FROM seq_reservations WHERE stream_id IN ({finished})", finished_before
        )
        status = await self.pool.execute(
            f"DELETE FROM events WHERE stream_id IN ({finished})", finished_before
        )
        return _count(status)

    # --- semantic cache ---

    async def add_cache_entries(self, entries: list[CacheEntry]) -> None:
        await self.pool.executemany(
            "INSERT INTO cache_entries (entry_id, tenant_id, partition, task, dimension,"
            " embedding, body, cost_usd, duration_s, created_at, last_hit_at, hit_count)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (entry_id) DO UPDATE SET body = excluded.body,"
            " embedding = excluded.embedding, dimension = excluded.dimension",
            [_entry_row(entry) for entry in entries],
        )

    async def cache_entries(self, created_after: str) -> list[CacheEntry]:
        rows = await self.pool.fetch(
            f"SELECT {CACHE_COLUMNS} FROM cache_entries WHERE created_at > $1 ORDER BY created_at",
            created_after,
        )
        return [_entry(row) for row in rows]

    async def cache_entry(self, entry_id: str) -> CacheEntry | None:
        row = await self.pool.fetchrow(
            f"SELECT {CACHE_COLUMNS} FROM cache_entries WHERE entry_id = $1", entry_id
        )
        return _entry(row) if row else None

    async def delete_cache_entries(self, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        status = await self.pool.execute(
            "DELETE FROM cache_entries WHERE entry_id = ANY($1::text[])", entry_ids
        )
        return _count(status)

    async def cache_entry_ids(self, tenant_id: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT entry_id FROM cache_entries WHERE tenant_id = $1", tenant_id
        )
        return [row[0] for row in rows]

    async def cache_eviction_candidates(self, created_before: str, keep: int) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT entry_id FROM cache_entries WHERE created_at < $1"
            " UNION SELECT entry_id FROM (SELECT entry_id FROM cache_entries"
            " ORDER BY COALESCE(last_hit_at, created_at) DESC OFFSET $2) AS beyond",
            created_before,
            keep,
        )
        return [row[0] for row in rows]

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
        async with self.pool.acquire() as conn, conn.transaction():
            if hit:
                await conn.execute(
                    "UPDATE cache_entries SET last_hit_at = $1, hit_count = hit_count + 1"
                    " WHERE entry_id = $2",
                    when,
                    hit_entry,
                )
            await conn.execute(
                "INSERT INTO cache_counters (tenant_id, hits, misses, saved_usd, saved_s)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET"
                " hits = cache_counters.hits + excluded.hits,"
                " misses = cache_counters.misses + excluded.misses,"
                " saved_usd = cache_counters.saved_usd + excluded.saved_usd,"
                " saved_s = cache_counters.saved_s + excluded.saved_s",
                tenant_id,
                int(hit),
                int(not hit),
                saved_usd,
                saved_s,
            )

    async def cache_stats(self, tenant_id: str) -> CacheStats:
        row = await self.pool.fetchrow(
            "SELECT (SELECT COUNT(*) FROM cache_entries WHERE tenant_id = $1) AS entries,"
            " c.hits, c.misses, c.saved_usd, c.saved_s"
            " FROM (SELECT 1) AS one LEFT JOIN cache_counters c ON c.tenant_id = $1",
            tenant_id,
        )
        assert row is not None
        return CacheStats(
            entries=int(row["entries"]),
            hits=int(row["hits"] or 0),
            misses=int(row["misses"] or 0),
            saved_usd=float(row["saved_usd"] or 0.0),
            saved_s=float(row["saved_s"] or 0.0),
        )

    async def nearest_cache_entries(
        self, partition: str, vector: npt.NDArray[np.float32], k: int
    ) -> list[Candidate]:
        dimension = len(vector)
        await self._ensure_vector_index(dimension)
        # The dimension is part of the SQL text (a type modifier cannot be a parameter); it is
        # an int, so it is safe to format in.
        rows = await self.pool.fetch(
            f"SELECT entry_id, task, embedding::vector({dimension}) <=> $2 AS distance"
            " FROM cache_entries WHERE partition = $1 AND dimension = $3"
            f" ORDER BY embedding::vector({dimension}) <=> $2 LIMIT $4",
            partition,
            vector.astype(np.float32),
            dimension,
            k,
        )
        return [Candidate(1.0 - float(r["distance"]), r["entry_id"], r["task"]) for r in rows]

    async def _ensure_vector_index(self, dimension: int) -> None:
        """Each embedding size gets its own HNSW index the first time it is searched (the
        migration made the 384-d one for the default embedder)."""
        if dimension in self._indexed_dimensions:
            return
        await self.pool.execute(
            f"CREATE INDEX IF NOT EXISTS cache_hnsw_{dimension} ON cache_entries"
            f" USING hnsw ((embedding::vector({dimension})) vector_cosine_ops)"
            f" WHERE dimension = {dimension}"
        )
        self._indexed_dimensions.add(dimension)

    async def count_cache_entries(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM cache_entries"))


class PgVectorIndex:
    """The cache's `VectorIndex` on pgvector: the table is the index, shared by every process,
    so adding and removing happen with the rows themselves and nothing is loaded at startup."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def load(self, created_after: str) -> int:
        return 0

    async def add(self, entries: list[CacheEntry]) -> None:
        pass  # written by CacheStore.add_cache_entries

    async def remove(self, entry_ids: list[str]) -> None:
        pass  # deleted by CacheStore.delete_cache_entries

    async def search(
        self, partition: str, vector: npt.NDArray[np.float32], k: int
    ) -> list[Candidate]:
        return await self.store.nearest_cache_entries(partition, vector, k)

    async def count(self) -> int:
        return await self.store.count_cache_entries()


def _count(status: str) -> int:
    """Rows affected, from asyncpg's command tag ("UPDATE 3", "DELETE 0")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
