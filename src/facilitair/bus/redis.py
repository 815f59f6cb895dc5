"""The scale-out event log: one Redis stream per task stream, persisted to the store.

Entry ids are `0-<seq>`, so the SSE id, the Redis id and the stored seq are the same number and
a reader's cursor is just that number. The one process running a task writes its stream
(`XADD` with the explicit id, which Redis refuses if it does not grow, so two writers can never
interleave); any process reads it: stored events first, then live ones.

Live events reach a process through one `XREAD BLOCK` loop (the `Follower`) over every stream
that some reader in the process is following, from where they are: each event crosses from
Redis once per process and is decoded once, however many clients read it, and the number of
Redis connections does not grow with the readers. A reader that starts following wakes the loop
through a small per-process stream, so it never waits for the loop's block to time out.

The writer copies events to the store in batches (a terminal event at once), then trims what
was copied from Redis beyond the last `keep` events, and gives a finished stream a short TTL.
A reader that finds a gap — events trimmed, expired or flushed from Redis — reads them from the
store, so Redis can lose anything already persisted without a client noticing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from facilitair.bus.wakeup import Wakeup
from facilitair.protocol.events import Payload, StoredEvent, envelope, heartbeat
from facilitair.store.base import EventStore

PAGE = 500
GAP_RETRY_S = 0.05  # a gap the store cannot fill yet: the writer is about to persist it
RECENT = 512  # live events kept per followed stream for readers a little behind
FOLLOW_BLOCK_MS = 5000

log = logging.getLogger(__name__)


def stream_key(prefix: str, stream_id: str) -> str:
    return f"{prefix}:events:{stream_id}"


Entry = tuple[bytes, dict[bytes, bytes]]  # a Redis stream entry: (id, fields)


def _entry_id(seq: int) -> str:
    return f"0-{seq}"


def _seq(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[2])


class _Writing:
    """A stream this process writes: its last seq and the events not yet in the store."""

    def __init__(self, last_seq: int) -> None:
        self.seq = last_seq
        self.unpersisted: list[StoredEvent] = []
        self.finished = False


class _Followed:
    """A stream some reader in this process follows: its recent live events and a wake-up."""

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor  # the last seq the follower has fetched
        self.recent: deque[StoredEvent] = deque(maxlen=RECENT)
        self.readers = 0
        self.wakeup = Wakeup()

    def since(self, cursor: int) -> list[StoredEvent] | None:
        """Events after `cursor` ([] if none yet), or None when `recent` does not reach back
        to it (the reader must catch up from Redis or the store)."""
        if cursor >= self.cursor:
            return []
        if not self.recent or self.recent[0].seq > cursor + 1:
            return None
        return [e for e in self.recent if e.seq > cursor]


class Follower:
    """One XREAD BLOCK loop per process over every followed stream."""

    def __init__(self, redis: Redis, prefix: str, decode: Any) -> None:
        self.redis = redis
        self.prefix = prefix
        self.decode = decode
        self.wake_key = f"{prefix}:wake:{uuid.uuid4().hex}"
        self._wake_cursor = "0-0"
        self._streams: dict[str, _Followed] = {}
        self._task: asyncio.Task[None] | None = None
        self._has_streams = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="redis-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.redis.delete(self.wake_key)

    @contextlib.asynccontextmanager
    async def follow(self, stream_id: str, cursor: int) -> AsyncIterator[_Followed]:
        followed = self._streams.get(stream_id)
        new = followed is None
        if followed is None:
            followed = self._streams[stream_id] = _Followed(cursor)
        followed.readers += 1
        try:
            if new:
                self._has_streams.set()
                # Interrupt the loop's current XREAD so it includes this stream from now on.
                # (The expiry cleans up after a process that was killed.)
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": "1"}, maxlen=16, approximate=True)
                    pipe.expire(self.wake_key, 3600)
                    await pipe.execute()
            yield followed
        finally:
            followed.readers -= 1
            if followed.readers == 0 and self._streams.get(stream_id) is followed:
                del self._streams[stream_id]

    def _keys(self) -> Iterator[tuple[str, str]]:
        yield self.wake_key, self._wake_cursor
        for stream_id, followed in self._streams.items():
            yield stream_key(self.prefix, stream_id), _entry_id(followed.cursor)

    async def _loop(self) -> None:
        events_prefix = stream_key(self.prefix, "").encode()
        while True:
            if not self._streams:
                self._has_streams.clear()
                await self._has_streams.wait()
                continue
            try:
                reply: Any = await self.redis.xread(
                    dict(self._keys()), count=PAGE, block=FOLLOW_BLOCK_MS
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("following streams failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for key, entries in reply or []:
                if not key.startswith(events_prefix):
                    self._wake_cursor = entries[-1][0].decode()
                    continue
                stream_id = key[len(events_prefix) :].decode()
                followed = self._streams.get(stream_id)
                if followed is None:
                    continue
                events = [self.decode(stream_id, entry) for entry in entries]
                followed.recent.extend(events)
                followed.cursor = events[-1].seq
                followed.wakeup.notify()


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
        self._outbox: list[StoredEvent] = []  # appended, not yet sent to Redis
        self._sending = asyncio.Lock()
        self._unsure = False  # the last send failed: some of the outbox may be in Redis
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._follower = Follower(redis, prefix, self._decode)

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

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="redis-event-flusher")
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()

    async def create(self, stream_id: str) -> None:
        # An empty Redis stream marks the stream as known, so readers wait for its first event
        # instead of taking it for an unknown stream. (A consumer group is the only way to
        # create an empty stream; it is removed at once.)
        key = self._key(stream_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xgroup_create(key, "open", id="0", mkstream=True)
            pipe.xgroup_destroy(key, "open")
            with contextlib.suppress(ResponseError):  # already there: fine
                await pipe.execute()

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
            await self.create(stream_id)
        self._writing[stream_id] = _Writing(last)

    async def append(self, stream_id: str, payload: Payload) -> StoredEvent:
        stream = self._writing.get(stream_id)
        if stream is None or stream.finished:
            raise RuntimeError(f"stream {stream_id} is not open for writing")
        stream.seq += 1
        event = envelope(stream_id, stream.seq, payload)
        if event.is_terminal:
            stream.finished = True
        self._outbox.append(event)
        # Appends must reach Redis in seq order, and pool connections do not keep order. So
        # whoever holds the lock sends everything queued — every stream's — in one round trip,
        # and the others find their event already sent: under load, one write carries many.
        await self._send_outbox()
        if event.is_terminal or len(stream.unpersisted) >= self.keep // 2:
            await self.flush()
        return event

    async def _send_outbox(self) -> None:
        """Send every queued event, in order. An append cancelled meanwhile (a task being
        cancelled) still lets the send finish; a send that fails (Redis down) leaves its events
        queued, with their seq, for the next append or the flusher: no event is lost, least of
        all a stream's end."""
        async with self._sending:
            if not self._outbox:
                return
            batch, self._outbox = self._outbox, []
            if self._unsure:  # a failed send may have reached Redis in part
                batch = await self._not_in_redis(batch)
            sending = asyncio.ensure_future(self._send(batch))
            try:
                await asyncio.shield(sending)
            except asyncio.CancelledError:
                await asyncio.wait({sending})
                self._settle(sending, batch)
                raise
            except Exception:
                pass
            self._settle(sending, batch)
            failure = sending.exception()
            if failure is not None:
                raise failure

    def _settle(self, sending: asyncio.Future[None], batch: list[StoredEvent]) -> None:
        if sending.exception() is None:
            self._unsure = False
            for sent in batch:
                self._writing[sent.stream_id].unpersisted.append(sent)
        else:
            self._unsure = True
            self._outbox[:0] = batch

    async def _not_in_redis(self, batch: list[StoredEvent]) -> list[StoredEvent]:
        """The events of `batch` that Redis does not have yet; those it has count as sent."""
        last: dict[str, int] = {}
        for stream_id in dict.fromkeys(e.stream_id for e in batch):
            tail = await self._last_entry(self._key(stream_id))
            last[stream_id] = _seq(tail[0]) if tail else 0
        landed = [e for e in batch if e.seq <= last[e.stream_id]]
        for sent in landed:
            self._writing[sent.stream_id].unpersisted.append(sent)
        return [e for e in batch if e.seq > last[e.stream_id]]

    async def _send(self, events: list[StoredEvent]) -> None:
        if len(events) == 1:
            event = events[0]
            await self.redis.xadd(
                self._key(event.stream_id),
                {"e": event.event, "d": event.data_json},
                id=_entry_id(event.seq),
            )
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    self._key(event.stream_id),
                    {"e": event.event, "d": event.data_json},
                    id=_entry_id(event.seq),
                )
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
                await self._send_outbox()
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
        """Whether more events may come after `cursor`, the last one read: the stream is known
        (to Redis, or, if Redis lost it, to the store) and `cursor` is not its terminal event."""
        if not await self.redis.exists(self._key(stream_id)) and not cursor:
            return False  # unknown: nothing in Redis, nothing was read from the store
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
        cursor = after
        while True:
            # Catch up from Redis and the store, until there is nothing more to read.
            async for event in self._catch_up(stream_id, cursor):
                yield event
                if event.is_terminal:
                    return
                cursor = event.seq
            if not await self._open(stream_id, cursor):
                return  # unknown, or finished and read to its end
            # Then follow it live, until it ends or falls out of reach.
            async with self._follower.follow(stream_id, cursor) as followed:
                while True:
                    batch = followed.since(cursor)
                    if batch is None or (batch and batch[0].seq != cursor + 1):
                        break  # behind what the follower keeps, or a gap: catch up again
                    for event in batch:
                        yield event
                        if event.is_terminal:
                            return
                        cursor = event.seq
                    if batch:
                        continue
                    if not await followed.wakeup.wait(heartbeat_s):
                        yield heartbeat(stream_id, cursor)

    async def _catch_up(self, stream_id: str, after: int) -> AsyncIterator[StoredEvent]:
        """Events after `after` that Redis or the store already has, in order."""
        key = self._key(stream_id)
        cursor = after
        gaps = 0
        while True:
            entries = await self._range(key, cursor)
            if entries and _seq(entries[0][0]) == cursor + 1:
                for entry in entries:
                    yield self._decode(stream_id, entry)
                cursor = _seq(entries[-1][0])
                continue
            # Redis does not have the next event: persisted and trimmed, finished and expired,
            # or lost (restart, eviction, FLUSHALL). The store has it if it was persisted.
            stored = await self.store.events(stream_id, cursor, PAGE)
            if stored:
                for event in stored:
                    yield event
                cursor = stored[-1].seq
            elif entries and gaps < 100:
                gaps += 1
                await asyncio.sleep(GAP_RETRY_S)  # the writer is about to persist it
            else:
                return
