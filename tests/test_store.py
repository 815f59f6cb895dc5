"""The store's conformance suite: SQLiteStore and PostgresStore (a real server) pass the same
tests, so the server above them cannot tell them apart; plus the migrations and the cache's
`VectorIndex`, whose in-memory and pgvector implementations must hand the guard the same
candidates."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from facilitair.cache.entry import CacheEntry
from facilitair.cache.index import MemoryVectorIndex, VectorIndex
from facilitair.protocol.api import TaskRecord, TaskRequest
from facilitair.protocol.events import SystemMessage, envelope
from facilitair.store.base import ApiKey, Store
from facilitair.store.migrations import migrations
from facilitair.store.postgres import PgVectorIndex, PostgresStore
from facilitair.store.sqlite import SQLiteStore
from services import open_store

EARLY, NOW, LATER = (
    "2026-01-01T00:00:00.000Z",
    "2026-06-01T00:00:00.000Z",
    "2027-01-01T00:00:00.000Z",
)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    db = await open_store(request.param, tmp_path, request)
    yield db
    await db.close()


def record(n: int, tenant: str = "t1", status: str = "running") -> TaskRecord:
    return TaskRecord(
        task_id=f"task_{n}",
        stream_id=f"str_{n}",
        tenant_id=tenant,
        status=status,  # type: ignore[arg-type]
        request=TaskRequest(task=f"task number {n}"),
        created_at=f"2026-01-01T00:00:{n:02d}.000Z",
    )


def entry(
    n: int, partition: str = "p1", tenant: str = "t1", vector: list[float] | None = None
) -> CacheEntry:
    rng = np.random.default_rng(n)
    raw = (
        np.array(vector, dtype=np.float32) if vector else rng.standard_normal(8).astype(np.float32)
    )
    return CacheEntry(
        entry_id=f"cache_{n}",
        tenant_id=tenant,
        partition=partition,
        task=f"cached task {n}",
        vector=raw / np.linalg.norm(raw),
        result={"content": f"r{n}", "artifacts": [], "metrics": {}},
        turns=[{"chunk_id": "c1", "content": "é ✓"}],
        plan=[],
        cost_usd=0.01 * n,
        duration_s=1.5,
        created_at=f"2026-01-01T00:00:{n:02d}.000Z",
    )


async def test_migrating_twice_applies_nothing_the_second_time(store: Store) -> None:
    assert await store.migrate() == []
    dialect = "sqlite" if isinstance(store, SQLiteStore) else "postgres"
    assert [m.version for m in migrations(dialect)] == [1, 2, 3, 4]


async def test_the_secret_is_made_once(store: Store) -> None:
    first = await store.secret("s", "one")
    assert await store.secret("s", "two") == first == "one"


async def test_keys_are_found_by_hash_or_id_and_revoked_by_key_id_name_or_prefix(
    store: Store,
) -> None:
    await store.add_key(ApiKey("k1", "alice", "t1", "fac_abc", EARLY), "hash1")
    await store.add_key(ApiKey("k2", "bob", "t2", "fac_def", NOW), "hash2")
    await store.add_key(ApiKey("k3", "carol", "t3", "fac_ghi", NOW), "hash3")
    found = await store.key_by_hash("hash1")
    assert found is not None and found.tenant_id == "t1" and found.revoked_at is None
    assert await store.key_by_hash("nope") is None
    by_id = await store.key_by_id("k2")
    assert by_id is not None and by_id.name == "bob"
    assert await store.key_by_id("nope") is None
    assert [k.key_id for k in await store.list_keys()] == ["k1", "k2", "k3"]
    assert await store.revoke_key("alice", "no-such-hash", LATER) == 1  # by name
    assert await store.revoke_key("fac_def", "no-such-hash", LATER) == 1  # by prefix
    assert await store.revoke_key("fac_whole_secret", "hash3", LATER) == 1  # by the key itself
    assert await store.revoke_key("k1", "no-such-hash", LATER) == 0  # already revoked
    assert all(k.revoked_at == LATER for k in await store.list_keys())
    revoked = await store.key_by_id("k1")
    assert revoked is not None and revoked.revoked_at == LATER


async def test_tasks_are_saved_listed_newest_first_and_counted_per_tenant(store: Store) -> None:
    for n in range(1, 6):
        await store.add_task(record(n), "me", LATER)
    await store.add_task(record(9, tenant="t2"), "me", LATER)
    page, total = await store.list_tasks("t1", 2, 1)
    assert total == 5 and [r.task_id for r in page] == ["task_4", "task_3"]
    assert (await store.list_tasks("t1", 10, 50)) == ([], 5)
    done = record(2).model_copy(update={"status": "completed", "finished_at": NOW})
    await store.save_task(done)
    assert (await store.task("task_2")) == done
    assert (await store.task_by_stream("str_2")) == done
    assert await store.task("task_404") is None


async def test_queued_tasks_are_taken_oldest_first_each_by_one_taker(store: Store) -> None:
    for n in (3, 1, 2, 4):
        await store.add_task(record(n, status="queued"))
    await store.add_task(record(5, status="queued"), "someone", LATER)  # held: not waiting
    takes = await asyncio.gather(*(store.take_task(f"w{n}", LATER) for n in range(3)))
    assert sorted(r.task_id for r in takes if r) == ["task_1", "task_2", "task_3"]
    assert await store.take_task("w9", LATER, stream_id="str_3") is None  # taken already
    last = await store.take_task("w9", LATER, stream_id="str_4")
    assert last is not None and last.task_id == "task_4"
    assert await store.take_task("w9", LATER) is None
    # Taken tasks are held: their lease runs out like any other.
    assert {
        r.task_id for r in await store.claim_expired_tasks("x", "2028-01-01T00:00:00.000Z", LATER)
    } == {"task_1", "task_2", "task_3", "task_4", "task_5"}


async def test_expired_leases_are_claimed_once_and_renewed_ones_are_not(store: Store) -> None:
    await store.add_task(record(1), "alive", LATER)
    await store.add_task(record(2), "dead", EARLY)
    await store.add_task(record(3, status="completed"), "dead", EARLY)
    assert await store.renew_leases("alive", LATER) == 1
    claims = await asyncio.gather(
        *(store.claim_expired_tasks(f"p{n}", NOW, LATER) for n in range(4))
    )
    assert sorted(r.task_id for claim in claims for r in claim) == ["task_2"]
    assert await store.claim_expired_tasks("p9", NOW, LATER) == []


async def test_events_keep_their_bytes_ignore_duplicates_and_page(store: Store) -> None:
    events = [envelope("s1", n, SystemMessage(message=f"é {n}", kind="x")) for n in range(1, 8)]
    await store.add_events(events[:4])
    await store.add_events(events[2:])  # overlaps: stored once
    stored = await store.events("s1", 2, 3)
    assert [e.seq for e in stored] == [3, 4, 5]
    assert [e.data_json for e in stored] == [e.data_json for e in events[2:5]]
    assert await store.last_seq("s1") == 7
    assert await store.last_seq("s2") == 0
    assert await store.events("s2", 0, 10) == []


async def test_events_of_long_finished_tasks_expire_and_the_task_stays(store: Store) -> None:
    await store.add_task(record(1), "me", LATER)
    await store.save_task(
        record(1).model_copy(update={"status": "completed", "finished_at": EARLY})
    )
    await store.add_task(record(2), "me", LATER)
    await store.add_events(
        [envelope(f"str_{n}", 1, SystemMessage(message="m", kind="x")) for n in (1, 2)]
    )
    assert await store.expire_events(NOW) == 1
    assert await store.events("str_1", 0, 10) == [] and await store.task("task_1") is not None
    assert len(await store.events("str_2", 0, 10)) == 1


async def test_cache_rows_round_trip_count_hits_and_evict(store: Store) -> None:
    await store.add_cache_entries([entry(n) for n in range(1, 5)] + [entry(7, tenant="t2")])
    got = await store.cache_entry("cache_2")
    assert got is not None
    assert got.turns == [{"chunk_id": "c1", "content": "é ✓"}]
    assert np.allclose(got.vector, entry(2).vector, atol=1e-6)
    assert await store.cache_entry("cache_404") is None
    assert sorted(await store.cache_entry_ids("t1")) == [f"cache_{n}" for n in range(1, 5)]
    assert [e.entry_id for e in await store.cache_entries("2026-01-01T00:00:02.000Z")] == [
        "cache_3",
        "cache_4",
        "cache_7",
    ]
    await store.record_cache_lookup(
        "t1", hit_entry="cache_1", when=LATER, saved_usd=0.5, saved_s=2.0
    )
    await store.record_cache_lookup("t1", hit_entry=None, when=LATER)
    stats = await store.cache_stats("t1")
    assert (stats.entries, stats.hits, stats.misses, stats.saved_usd, stats.saved_s) == (
        4,
        1,
        1,
        0.5,
        2.0,
    )
    assert (await store.cache_stats("nobody")).entries == 0
    # Made before the cutoff (cache_1, though just hit), or beyond the 2 most recently used
    # (cache_1 and cache_7 are, so cache_4, cache_3 and cache_2 go).
    victims = await store.cache_eviction_candidates("2026-01-01T00:00:02.000Z", 2)
    assert sorted(victims) == ["cache_1", "cache_2", "cache_3", "cache_4"]
    assert await store.delete_cache_entries(["cache_2", "cache_3", "cache_404"]) == 2


def vector_index(store: Store) -> VectorIndex:
    return PgVectorIndex(store) if isinstance(store, PostgresStore) else MemoryVectorIndex(store)


async def test_vector_indexes_rank_candidates_alike(store: Store) -> None:
    """The guard sees the same candidates whichever index found them."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal(384).astype(np.float32)
    rows = []
    for n in range(300):
        noise = rng.standard_normal(384).astype(np.float32) * (0.2 + n / 100)
        rows.append(entry(n, partition="p1" if n % 3 else "p2", vector=list(base + noise)))
    await store.add_cache_entries(rows)
    index = vector_index(store)
    await index.load(EARLY)
    memory = MemoryVectorIndex(store)
    await memory.load(EARLY)
    query = base + rng.standard_normal(384).astype(np.float32) * 0.1
    query /= np.linalg.norm(query)
    found = await index.search("p1", query, 5)
    expected = await memory.search("p1", query, 5)
    assert [c.entry_id for c in found] == [c.entry_id for c in expected]
    assert [c.text for c in found] == [c.text for c in expected]
    assert np.allclose([c.similarity for c in found], [c.similarity for c in expected], atol=1e-4)
    assert all(c.entry_id in {r.entry_id for r in rows if r.partition == "p1"} for c in found)
    assert await index.search("nothing-here", query, 5) == []
    # Deleted from the store: gone from the index (pgvector at once; memory when told).
    await store.delete_cache_entries([found[0].entry_id])
    await index.remove([found[0].entry_id])
    assert found[0].entry_id not in [c.entry_id for c in await index.search("p1", query, 5)]


async def test_a_database_from_before_migrations_is_adopted_and_its_running_tasks_end(
    tmp_path: Path,
) -> None:
    """A data dir made by the first release (its schema, no migration table, a task that was
    running when that server died) opens, upgrades, and gives that task up as orphaned."""
    path = tmp_path / "old.sqlite3"
    first = next(m for m in migrations("sqlite") if m.version == 1)
    with sqlite3.connect(path) as db:
        db.executescript(first.sql)
        old = record(1)
        db.execute(
            "INSERT INTO tasks (task_id, stream_id, tenant_id, status, created_at, record)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                old.task_id,
                old.stream_id,
                old.tenant_id,
                old.status,
                old.created_at,
                old.model_dump_json(),
            ),
        )
    store = SQLiteStore(path)
    await store.open()
    try:
        claimed = await store.claim_expired_tasks("me", NOW, LATER)
        assert [r.task_id for r in claimed] == ["task_1"]
        assert await store.migrate() == []
        assert await store.take_task("me", LATER) is None  # not mistaken for a queued task
    finally:
        await store.close()


async def test_seq_reservations_are_set_and_read_per_stream(store: Store) -> None:
    assert await store.reserved_seq("s1") == 0
    await store.reserve_seq("s1", 1000)
    await store.reserve_seq("s2", 7)
    assert await store.reserved_seq("s1") == 1000
    await store.reserve_seq("s1", 12)  # its writer gives back what it did not use
    assert await store.reserved_seq("s1") == 12
    assert await store.reserved_seq("s2") == 7
