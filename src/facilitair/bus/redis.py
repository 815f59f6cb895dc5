"""The scale-out event log: one Redis stream per task stream, persisted to the store.

Entry ids are `0-<seq>`, so the SSE id, the Redis id and the stored seq are the same number and
a reader's cursor is just that number. The one process running a task writes its stream
(`XADD` with the explicit id, which Redis refuses if it does not grow, so two writers can never
interleave); any process reads it: stored events first, then `XREAD BLOCK` from the cursor, so
live tokens reach a reader in any process without polling.

The writer copies events to the store in batches (a terminal event at once), then trims what
was copied from Redis beyond the last `keep` events, and gives a finished stream a short TTL.
A reader that finds a gap — events trimmed, expired or flushed from Redis — reads them from the
store, so Redis can lose anything already persisted without a client noticing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from facilitair.protocol.events import Payload, StoredEvent, envelope, heartbeat
from facilitair.store.base import EventStore

PAGE = 500
GAP_RETRY_S = 0.05  # a gap the store cannot fill yet: the writer is about to persist it


def stream_key(prefix: str, stream_id: str) -> str:
    return f"{prefix}:events:{stream_id}"


Entry = tuple[bytes, dict[bytes, bytes]]  # a Redis stream entry: (id, fields)


def _entry_id(seq: int) -> str:
    return f"0-{seq}"


def _seq(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[2])


class _Writing:
    """A stream this process writes: its last seq, the events not yet sent to Redis (in seq
    order) and those not yet in the store."""

    def __init__(self, last_seq: int) -> None:
        self.seq = last_seq
        self.outbox: list[StoredEvent] = []
        self.sending = asyncio.Lock()
        self.unpersisted: list[StoredEvent] = []
        self.finished = False


class RedisEventLog:
    def __init__(
        self,
        redis: Redis,
        store: EventStore,
        *,
        prefix: str = "fac",
        keep: int = 1000,
        finished_ttl_s: int = 300,
        flush_interval_s: float = 0.05,
    ) -> None:
        self.redis = redis
        self.store = store
        self.prefix = prefix
        self.keep = keep
        self.finished_ttl_s = finished_ttl_s
        self.flush_interval_s = flush_interval_s
        self._writing: dict[str, _Writing] = {}
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    def _key(self, stream_id: str) -> str:
        return stream_key(self.prefix, stream_id)

    # redis-py's stream replies are loosely typed; these give them their real shape.

    async def _range(self, key: str, after: int, until: int | None = None) -> list[Entry]:
        end = "+" if until is None else _entry_id(until)
        reply: Any = await self.redis.xrange(key, f"({_entry_id(after)}", end, count=PAGE)
        return cast(list[Entry], reply)

    async def _last_entry(self, key: str) -> Entry | None:
        reply: Any = await self.redis.xrevrange(key, count=1)
        return cast(Entry, reply[0]) if reply else None

    async def _wait(self, key: str, after: int, block_ms: int) -> list[Entry]:
        reply: Any = await self.redis.xread({key: _entry_id(after)}, count=PAGE, block=block_ms)
        return cast(list[Entry], reply[0][1]) if reply else []

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="redis-event-flusher")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()

    async def open(self, stream_id: str) -> None:
        if stream_id in self._writing:
            return
        key = self._key(stream_id)
        tail = await self._last_entry(key)
        stored = await self.store.last_seq(stream_id)
        last = max(_seq(tail[0]) if tail else 0, stored)
        while stored < last:
            # Taking over the stream of a process that died: what it wrote to Redis but not
            # yet to the store is persisted first, so a replay has no hole.
            orphans = await self._range(key, stored)
            await self.store.add_events([self._decode(stream_id, entry) for entry in orphans])
            stored = _seq(orphans[-1][0])
        if last and await self._tail_is_terminal(stream_id, last):
            raise RuntimeError(f"stream {stream_id} has ended; it cannot be written again")
        if not tail:
            # An empty Redis stream marks the stream as open, so readers wait for its first
            # event instead of taking it for an unknown stream. (A consumer group is the only
            # way to create an empty stream; it is removed at once.)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xgroup_create(key, "open", id="0", mkstream=True)
                pipe.xgroup_destroy(key, "open")
                with contextlib.suppress(ResponseError):  # already there: fine
                    await pipe.execute()
        self._writing[stream_id] = _Writing(last)

    async def append(self, stream_id: str, payload: Payload) -> StoredEvent:
        stream = self._writing.get(stream_id)
        if stream is None or stream.finished:
            raise RuntimeError(f"stream {stream_id} is not open for writing")
        stream.seq += 1
        event = envelope(stream_id, stream.seq, payload)
        if event.is_terminal:
            stream.finished = True
        stream.outbox.append(event)
        # Concurrent appends (coders running side by side) must reach Redis in seq order, and
        # pool connections do not keep order: whoever holds the lock sends everything queued,
        # in one round trip, and the others find their event already sent.
        async with stream.sending:
            if stream.outbox:
                batch, stream.outbox = stream.outbox, []
                await self._send(stream_id, batch)
                stream.unpersisted.extend(batch)
        if event.is_terminal:
            await self.flush()
        elif len(stream.unpersisted) >= self.keep // 2:
            await self.flush()
        return event

    async def _send(self, stream_id: str, events: list[StoredEvent]) -> None:
        key = self._key(stream_id)
        if len(events) == 1:
            event = events[0]
            await self.redis.xadd(
                key, {"e": event.event, "d": event.data_json}, id=_entry_id(event.seq)
            )
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(key, {"e": event.event, "d": event.data_json}, id=_entry_id(event.seq))
            await pipe.execute()

    async def flush(self) -> None:
        async with self._flush_lock:
            taken = {
                stream_id: list(stream.unpersisted)
                for stream_id, stream in self._writing.items()
                if stream.unpersisted
            }
            if not taken:
                return
            await self.store.add_events([e for events in taken.values() for e in events])
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream_id, events in taken.items():
                    # Events appended while the store was writing stay for the next flush.
                    del self._writing[stream_id].unpersisted[: len(events)]
                    key, persisted = self._key(stream_id), events[-1]
                    if persisted.is_terminal:
                        pipe.expire(key, self.finished_ttl_s)
                        del self._writing[stream_id]
                    elif persisted.seq > self.keep:
                        pipe.xtrim(key, minid=_entry_id(persisted.seq - self.keep + 1))
                await pipe.execute()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception:  # the store or Redis is down: keep the events, try again
                await asyncio.sleep(1.0)

    async def last_seq(self, stream_id: str) -> int:
        stream = self._writing.get(stream_id)
        if stream is not None:
            return stream.seq
        tail = await self._last_entry(self._key(stream_id))
        if tail:
            return _seq(tail[0])
        return await self.store.last_seq(stream_id)

    async def is_finished(self, stream_id: str) -> bool:
        stream = self._writing.get(stream_id)
        if stream is not None:
            return stream.finished
        last = await self.last_seq(stream_id)
        return bool(last) and await self._tail_is_terminal(stream_id, last)

    async def _tail_is_terminal(self, stream_id: str, last: int) -> bool:
        entries = await self._range(self._key(stream_id), last - 1, last)
        if entries:
            return self._decode(stream_id, entries[0]).is_terminal
        stored = await self.store.events(stream_id, last - 1, 1)
        return bool(stored) and stored[0].is_terminal

    async def _open(self, stream_id: str, cursor: int) -> bool:
        """Whether more events may come after `cursor`: the stream is known to Redis and its
        last event is not terminal."""
        if not await self.redis.exists(self._key(stream_id)):
            return False
        return not cursor or not await self._tail_is_terminal(stream_id, cursor)

    @staticmethod
    def _decode(stream_id: str, entry: Entry) -> StoredEvent:
        entry_id, fields = entry
        return StoredEvent.from_json(
            stream_id, _seq(entry_id), fields[b"e"].decode(), fields[b"d"].decode()
        )

    async def read(
        self, stream_id: str, after: int = 0, *, heartbeat_s: float | None = None
    ) -> AsyncIterator[StoredEvent]:
        key = self._key(stream_id)
        cursor = after
        block_ms = int(heartbeat_s * 1000) if heartbeat_s else 0  # 0: block until an event
        live = False  # known to be open and read to its end: wait with XREAD from now on
        while True:
            if live:
                entries = await self._wait(key, cursor, block_ms)
                if not entries:
                    yield heartbeat(stream_id, cursor)
                    continue
            else:
                entries = await self._range(key, cursor)
            if not entries or _seq(entries[0][0]) != cursor + 1:
                # Redis does not have the next event: persisted and trimmed, finished and
                # expired, or lost (restart, eviction, FLUSHALL). The store has it if it was
                # persisted.
                stored = await self.store.events(stream_id, cursor, PAGE)
                for event in stored:
                    yield event
                    if event.is_terminal:
                        return
                if stored:
                    cursor = stored[-1].seq
                elif entries:
                    await asyncio.sleep(GAP_RETRY_S)  # the writer is about to persist it
                elif live or await self._open(stream_id, cursor):
                    live = True
                else:
                    return  # unknown, or finished and read to its end
                continue
            for entry in entries:
                event = self._decode(stream_id, entry)
                yield event
                if event.is_terminal:
                    return
            cursor = _seq(entries[-1][0])
