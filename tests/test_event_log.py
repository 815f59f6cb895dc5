"""The embedded event log (bus/memory.py) over a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from facilitair.bus.memory import MemoryEventLog
from facilitair.protocol.events import (
    StoredEvent,
    SystemMessage,
    TaskCancelled,
    TaskCompleted,
    TaskMetrics,
)
from facilitair.store.sqlite import SQLiteStore

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


async def read_all(log: MemoryEventLog, after: int = 0, slow_s: float = 0.0) -> list[StoredEvent]:
    events = []
    async for event in log.read(S, after):
        events.append(event)
        if slow_s:
            await asyncio.sleep(slow_s)
    return events


def seqs(events: list[StoredEvent]) -> list[int]:
    return [e.seq for e in events]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "events.db")
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def log(store: SQLiteStore) -> AsyncIterator[MemoryEventLog]:
    event_log = MemoryEventLog(store)
    await event_log.start()
    yield event_log
    await event_log.stop()


async def test_append_numbers_events_from_one(log: MemoryEventLog) -> None:
    await log.open(S)
    events = [await log.append(S, msg(i)) for i in range(3)]
    assert seqs(events) == [1, 2, 3]
    assert [(e.data["seq"], e.data["stream_id"], e.data["message"]) for e in events] == [
        (1, S, "m0"),
        (2, S, "m1"),
        (3, S, "m2"),
    ]
    assert await log.last_seq(S) == 3


async def test_append_to_unopened_stream_raises(log: MemoryEventLog) -> None:
    with pytest.raises(RuntimeError):
        await log.append("never-opened", msg(0))


async def test_append_after_terminal_raises(log: MemoryEventLog) -> None:
    await log.open(S)
    await log.append(S, TaskCancelled(reason="r"))
    with pytest.raises(RuntimeError):
        await log.append(S, msg(1))


async def test_read_after_then_live_until_terminal(log: MemoryEventLog) -> None:
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


async def test_concurrent_readers_all_get_everything(log: MemoryEventLog) -> None:
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
    tmp_path: Path, store: SQLiteStore
) -> None:
    # A long flush interval: only append itself can have written the events.
    log = MemoryEventLog(store, flush_interval_s=60)
    await log.start()
    try:
        await log.open(S)
        await log.append(S, msg(0))
        await log.append(S, TaskCancelled(reason="r"))
        other = SQLiteStore(tmp_path / "events.db")
        await other.open()
        try:
            stored = await other.events(S, 0, 100)
        finally:
            await other.close()
    finally:
        await log.stop()
    assert [(e.seq, e.event) for e in stored] == [(1, "system_message"), (2, "task_cancelled")]
    assert stored[1].data["reason"] == "r"


async def test_restart_replays_and_continues_numbering(store: SQLiteStore) -> None:
    first = MemoryEventLog(store)
    await first.start()
    await first.open(S)
    for i in range(4):
        await first.append(S, msg(i))
    await first.stop()

    second = MemoryEventLog(store)
    await second.start()
    try:
        replay = await asyncio.wait_for(read_all(second), 5)
        assert [e.data["message"] for e in replay] == ["m0", "m1", "m2", "m3"]
        await second.open(S)
        assert await second.last_seq(S) == 4
        assert (await second.append(S, msg(4))).seq == 5
        tail = asyncio.create_task(read_all(second, after=3))
        await second.append(S, TaskCancelled(reason="r"))
        assert seqs(await asyncio.wait_for(tail, 5)) == [4, 5, 6]
        assert seqs(await asyncio.wait_for(read_all(second), 5)) == [1, 2, 3, 4, 5, 6]
    finally:
        await second.stop()


async def test_bounded_buffer_and_slow_reader_falls_back_to_store(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
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
            live = log._live[S]
            unflushed = live.seq - live.persisted
            assert len(live.buffer) <= log.buffer_size + unflushed
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


async def test_heartbeat_carries_the_last_seq(log: MemoryEventLog) -> None:
    await log.open(S)
    await log.append(S, msg(0))
    await log.append(S, msg(1))
    events = log.read(S, after=0, heartbeat_s=0.05)
    got = [await asyncio.wait_for(anext(events), 1) for _ in range(3)]
    await events.aclose()
    assert [e.event for e in got] == ["system_message", "system_message", "heartbeat"]
    assert got[2].seq == got[2].data["seq"] == 2
    assert got[2].data["stream_id"] == S


async def test_heartbeat_on_an_empty_stream(log: MemoryEventLog) -> None:
    await log.open(S)
    events = log.read(S, heartbeat_s=0.05)
    beat = await asyncio.wait_for(anext(events), 1)
    await events.aclose()
    assert beat.event == "heartbeat"
    assert beat.data["seq"] == await log.last_seq(S) == 0


async def test_read_of_unknown_stream_ends_at_once(log: MemoryEventLog) -> None:
    assert await asyncio.wait_for(read_all(log), 1) == []
