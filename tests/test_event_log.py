"""The event log's conformance suite: the embedded log (bus/memory.py) over SQLite and the Redis
Streams log (bus/redis.py) over PostgreSQL, against real services, pass the same tests; then
what only one of them has (the memory log's bounded buffer, Redis trimming and losses)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from facilitair.bus.base import EventLog
from facilitair.bus.memory import MemoryEventLog
from facilitair.bus.redis import RedisEventLog, stream_key
from facilitair.protocol.events import (
    StoredEvent,
    SystemMessage,
    TaskCancelled,
    TaskCompleted,
    TaskMetrics,
)
from facilitair.store.base import EventStore, Store
from fakes.tcp_proxy import TcpProxy
from services import Services, open_store

S = "stream-1"


def msg(i: int) -> SystemMessage:
    return SystemMessage(message=f"m{i}", kind="x")


def completed() -> TaskCompleted:
    metrics = TaskMetrics(
        duration_s=1.0,
        cost_usd=None,
        prompt_tokens=1,
        completion_tokens=2,
        llm_calls=1,
        iterations=1,
    )
    return TaskCompleted(content="done", artifacts=[], metrics=metrics)


async def read_all(log: EventLog, after: int = 0, slow_s: float = 0.0) -> list[StoredEvent]:
    events = []
    async for event in log.read(S, after):
        events.append(event)
        if slow_s:
            await asyncio.sleep(slow_s)
    return events


async def take(log: EventLog, count: int) -> list[StoredEvent]:
    events = []
    async for event in log.read(S):
        events.append(event)
        if len(events) == count:
            break
    return events


def seqs(events: list[StoredEvent]) -> list[int]:
    return [e.seq for e in events]


KINDS = ("memory", "redis")
MakeLog = Callable[..., EventLog]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    db = await open_store("sqlite" if kind == "memory" else "postgres", tmp_path, request)
    yield db
    await db.close()


@pytest.fixture
async def redis(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Redis | None]:
    if kind == "memory":
        yield None
        return
    live: Services = request.getfixturevalue("services")
    client = Redis.from_url(live.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_log(
    kind: str, store: Store, redis: Redis | None
) -> AsyncIterator[Callable[..., EventLog]]:
    """New logs over the same store (and Redis): each one is another process's view."""
    logs: list[EventLog] = []
    prefix = "t" + uuid.uuid4().hex[:8]

    def make(**options: Any) -> EventLog:
        log: EventLog
        if kind == "memory":
            log = MemoryEventLog(store, **options)
        else:
            assert redis is not None
            log = RedisEventLog(redis, store, prefix=prefix, **options)
        logs.append(log)
        return log

    yield make
    for log in logs:
        await log.stop()


@pytest.fixture
async def log(make_log: MakeLog) -> EventLog:
    event_log = make_log()
    await event_log.start()
    return event_log


async def test_append_numbers_events_from_one(log: EventLog) -> None:
    await log.open(S)
    events = [await log.append(S, msg(i)) for i in range(3)]
    assert seqs(events) == [1, 2, 3]
    assert [(e.data["seq"], e.data["stream_id"], e.data["message"]) for e in events] == [
        (1, S, "m0"),
        (2, S, "m1"),
        (3, S, "m2"),
    ]
    assert await log.last_seq(S) == 3


async def test_append_to_unopened_stream_raises(log: EventLog) -> None:
    with pytest.raises(RuntimeError):
        await log.append("never-opened", msg(0))


async def test_append_after_terminal_raises(log: EventLog) -> None:
    await log.open(S)
    await log.append(S, TaskCancelled(reason="r"))
    with pytest.raises(RuntimeError):
        await log.append(S, msg(1))


async def test_read_after_then_live_until_terminal(log: EventLog) -> None:
    await log.open(S)
    for i in range(5):
        await log.append(S, msg(i))
    reader = asyncio.create_task(read_all(log, after=2))
    await asyncio.sleep(0.05)
    for i in range(5, 8):
        await log.append(S, msg(i))
    await log.append(S, completed())
    events = await asyncio.wait_for(reader, 5)
    assert seqs(events) == [3, 4, 5, 6, 7, 8, 9]
    assert events[-1].event == "task_completed"
    assert events[-1].data["content"] == "done"


async def test_concurrent_readers_all_get_everything(log: EventLog) -> None:
    await log.open(S)
    await log.append(S, msg(0))
    readers = [asyncio.create_task(read_all(log)) for _ in range(5)]
    for i in range(1, 50):
        await log.append(S, msg(i))
        if i % 10 == 0:
            await asyncio.sleep(0.01)
    await log.append(S, TaskCancelled(reason="r"))
    results = await asyncio.wait_for(asyncio.gather(*readers), 5)
    for events in results:
        assert seqs(events) == list(range(1, 52))
        assert events[-1].event == "task_cancelled"


async def test_terminal_event_is_durable_when_append_returns(
    make_log: MakeLog, store: Store
) -> None:
    # A long flush interval: only append itself can have written the events.
    log = make_log(flush_interval_s=60)
    await log.start()
    await log.open(S)
    await log.append(S, msg(0))
    await log.append(S, TaskCancelled(reason="r"))
    stored = await store.events(S, 0, 100)
    assert [(e.seq, e.event) for e in stored] == [(1, "system_message"), (2, "task_cancelled")]
    assert stored[1].data["reason"] == "r"


async def test_restart_replays_and_continues_numbering(make_log: MakeLog) -> None:
    first = make_log()
    await first.start()
    await first.open(S)
    for i in range(4):
        await first.append(S, msg(i))
    await first.stop()

    second = make_log()
    await second.start()
    # (Not read to its end: unfinished, it may still be written by another process.)
    replay = await asyncio.wait_for(take(second, 4), 5)
    assert [e.data["message"] for e in replay] == ["m0", "m1", "m2", "m3"]
    await second.open(S)
    assert await second.last_seq(S) == 4
    assert (await second.append(S, msg(4))).seq == 5
    tail = asyncio.create_task(read_all(second, after=3))
    await second.append(S, TaskCancelled(reason="r"))
    assert seqs(await asyncio.wait_for(tail, 5)) == [4, 5, 6]
    assert seqs(await asyncio.wait_for(read_all(second), 5)) == [1, 2, 3, 4, 5, 6]


async def test_a_finished_stream_cannot_be_reopened(log: EventLog) -> None:
    await log.open(S)
    await log.append(S, TaskCancelled(reason="r"))
    await log.stop()
    with pytest.raises(RuntimeError):
        await log.open(S)
    assert await log.is_finished(S)


async def test_read_after_the_last_event_of_a_finished_stream_ends_at_once(log: EventLog) -> None:
    await log.open(S)
    await log.append(S, msg(0))
    await log.append(S, TaskCancelled(reason="r"))
    assert await asyncio.wait_for(read_all(log, after=2), 2) == []
    assert seqs(await asyncio.wait_for(read_all(log, after=1), 2)) == [2]


async def test_replay_carries_the_bytes_sent_live(log: EventLog, store: Store) -> None:
    await log.open(S)
    live = [await log.append(S, SystemMessage(message=f'é ✓ "{i}"', kind="x")) for i in range(3)]
    live.append(await log.append(S, completed()))
    replayed = await asyncio.wait_for(read_all(log), 5)
    assert [e.data_json for e in replayed] == [e.data_json for e in live]
    assert [e.data_json for e in await store.events(S, 0, 10)] == [e.data_json for e in live]


@pytest.mark.parametrize("kind", ["redis"])  # the in-process log serves its own process
async def test_a_reader_in_another_process_follows_live(make_log: MakeLog) -> None:
    writer, reader_side = make_log(), make_log()
    await writer.start()
    await reader_side.start()
    await writer.open(S)
    reader = asyncio.create_task(read_all(reader_side))
    await asyncio.sleep(0.05)
    for i in range(20):
        await writer.append(S, msg(i))
    await writer.append(S, completed())
    events = await asyncio.wait_for(reader, 5)
    assert seqs(events) == list(range(1, 22))


@pytest.mark.parametrize("kind", ["memory"])
async def test_bounded_buffer_and_slow_reader_falls_back_to_store(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_reads = 0
    real_events = store.events

    async def counting_events(stream_id: str, after: int, limit: int) -> list[StoredEvent]:
        nonlocal store_reads
        store_reads += 1
        return await real_events(stream_id, after, limit)

    monkeypatch.setattr(store, "events", counting_events)
    log = MemoryEventLog(store, buffer_size=16)
    await log.start()
    try:
        await log.open(S)
        await log.append(S, msg(0))
        reader = asyncio.create_task(read_all(log, slow_s=0.001))
        largest = 0
        for i in range(1, 999):
            await log.append(S, msg(i))
            if i % 50 == 0:  # bursts of 50, much faster than the reader takes them
                await log.flush()
                await asyncio.sleep(0.01)
            live = log._live[S]
            assert len(live.buffer) <= log.buffer_size + len(live.unstored)
            largest = max(largest, len(live.buffer))
        reads_while_writing = store_reads
        await log.append(S, completed())
        events = await asyncio.wait_for(reader, 30)
    finally:
        await log.stop()
    assert seqs(events) == list(range(1, 1001))
    assert events[-1].event == "task_completed"
    assert largest <= 2 * log.buffer_size
    assert reads_while_writing > 0


async def test_heartbeat_carries_the_last_seq(log: EventLog) -> None:
    await log.open(S)
    await log.append(S, msg(0))
    await log.append(S, msg(1))
    events = log.read(S, after=0, heartbeat_s=0.05)
    got = [await asyncio.wait_for(anext(events), 1) for _ in range(3)]
    await events.aclose()
    assert [e.event for e in got] == ["system_message", "system_message", "heartbeat"]
    assert got[2].seq == got[2].data["seq"] == 2
    assert got[2].data["stream_id"] == S


async def test_heartbeat_on_an_empty_stream(log: EventLog) -> None:
    await log.open(S)
    events = log.read(S, heartbeat_s=0.05)
    beat = await asyncio.wait_for(anext(events), 1)
    await events.aclose()
    assert beat.event == "heartbeat"
    assert beat.data["seq"] == await log.last_seq(S) == 0


async def test_read_of_unknown_stream_ends_at_once(log: EventLog) -> None:
    assert await asyncio.wait_for(read_all(log), 1) == []


# --- Redis only: what it keeps, and what happens when it loses things ----------------------


@pytest.mark.parametrize("kind", ["redis"])
async def test_redis_keeps_only_a_tail_and_finished_streams_expire(
    make_log: MakeLog, redis: Redis, store: Store
) -> None:
    log = make_log(keep=20, finished_ttl_s=30, flush_interval_s=0.01)
    # 600 events: well past what one approximate trim may leave behind.
    await log.start()
    await log.open(S)
    reader = asyncio.create_task(read_all(log, slow_s=0.002))  # slow: falls behind the trim
    for i in range(600):
        await log.append(S, msg(i))
    assert isinstance(log, RedisEventLog)
    key = stream_key(log.prefix, S)
    await log.flush()
    # Trimming is approximate (whole nodes of up to 100 entries, as Redis advises): bounded.
    assert await redis.xlen(key) <= 20 + 100
    await log.append(S, completed())
    events = await asyncio.wait_for(reader, 10)
    assert seqs(events) == list(range(1, 602))
    assert 0 < await redis.ttl(key) <= 30
    assert len(await store.events(S, 0, 1000)) == 601


@pytest.mark.parametrize("kind", ["redis"])
async def test_readers_lose_nothing_when_redis_is_flushed_mid_stream(
    make_log: MakeLog, redis: Redis
) -> None:
    log = make_log(flush_interval_s=0.01)
    await log.start()
    await log.open(S)
    readers = [asyncio.create_task(read_all(log)) for _ in range(3)]
    for i in range(50):
        await log.append(S, msg(i))
        if i == 25:
            await asyncio.sleep(0.05)  # persisted by now
            await redis.flushall()
    await log.append(S, completed())
    for events in await asyncio.wait_for(asyncio.gather(*readers), 10):
        assert seqs(events) == list(range(1, 52))
    assert seqs(await asyncio.wait_for(read_all(log, after=40), 5)) == list(range(41, 52))


@pytest.mark.parametrize("kind", ["redis"])
async def test_a_stream_taken_over_from_a_dead_writer_keeps_what_only_redis_had(
    make_log: MakeLog, store: Store
) -> None:
    dead = make_log(flush_interval_s=60)  # never flushes on its own, and never stops
    await dead.open(S)
    for i in range(5):
        await dead.append(S, msg(i))
    assert await store.last_seq(S) == 0
    heir = make_log()
    await heir.start()
    await heir.open(S)
    assert (await heir.append(S, TaskCancelled(reason="interrupted"))).seq == 6
    assert seqs(await store.events(S, 0, 100)) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("kind", ["redis"])
async def test_a_writer_whose_redis_connections_break_loses_nothing(
    store: Store, redis: Redis, services: Services
) -> None:
    """Connections to Redis reset mid-stream (a restart, a failover): appends may fail, but
    every event still reaches readers once, in order, and the stream still ends."""
    prefix = "t" + uuid.uuid4().hex[:8]
    with TcpProxy.to_url(services.redis_url.replace("redis://", "http://")) as proxy:
        through = Redis.from_url(proxy.url.replace("http://", "redis://"))
        writer = RedisEventLog(through, store, prefix=prefix, flush_interval_s=0.02)
        reader_side = RedisEventLog(redis, store, prefix=prefix)
        await writer.start()
        await reader_side.start()
        try:
            await writer.open(S)
            reader = asyncio.create_task(read_all(reader_side))
            failed = 0
            for i in range(150):
                if i in (40, 90):
                    proxy.drop_all()
                try:
                    await writer.append(S, msg(i))
                except Exception:  # queued, sent later
                    failed += 1
                await asyncio.sleep(0.002)
            with contextlib.suppress(Exception):
                await writer.append(S, completed())
            events = await asyncio.wait_for(reader, 15)
        finally:
            await writer.stop()
            await reader_side.stop()
            await through.aclose()
    assert failed  # the resets did break appends
    assert seqs(events) == list(range(1, 152))
    assert events[-1].event == "task_completed"
    assert seqs(await store.events(S, 0, 1000)) == list(range(1, 152))


@pytest.mark.parametrize("kind", ["memory"])
async def test_a_writer_that_dies_unflushed_leaves_no_seq_to_reuse(store: Store) -> None:
    """Readers see events before they are stored. A writer killed before storing them has
    shown seqs the store never got: the next writer starts after every one of them, and a
    reader resuming where it was gets what follows, exactly once."""
    dead = MemoryEventLog(store, flush_interval_s=60)  # never flushes, and never stops
    await dead.open(S)
    shown = [await dead.append(S, msg(i)) for i in range(5)]
    seen = await asyncio.wait_for(take(dead, 5), 5)
    assert seqs(seen) == [1, 2, 3, 4, 5] and await store.last_seq(S) == 0

    heir = MemoryEventLog(store)
    await heir.start()
    try:
        assert await heir.last_seq(S) >= 5  # a reader at 5 is not "ahead"
        resumed = asyncio.create_task(read_all(heir, after=shown[-1].seq))
        await asyncio.sleep(0.05)  # the reader waits for the stream's next writer
        await heir.open(S)
        ended = await heir.append(S, completed())
        assert ended.seq > shown[-1].seq
        rest = await asyncio.wait_for(resumed, 5)
        assert seqs(rest) == [ended.seq]
        from_start = await asyncio.wait_for(read_all(heir), 5)
        assert seqs(from_start) == [ended.seq]  # the dead writer's events were never stored
    finally:
        await heir.stop()
