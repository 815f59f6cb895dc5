"""The embedded event log: recent events in memory, every one of them in the store before any
reader sees it.

Writers append to a per-stream queue and return. One committer writes everything queued, for
all streams, in one transaction, then makes those events visible and wakes the readers; while
it commits, new appends queue up for the next transaction (group commit). So a reader never
holds an event the store does not: a process killed at any instant loses only events nobody
was sent, and the stream carries on after them without a gap or a repeat. Readers keep only a
cursor (the last seq they sent), so a slow reader costs no memory: when it falls behind the
buffer it reads from the store and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from itertools import islice

from facilitair.bus.wakeup import Wakeup
from facilitair.protocol.events import Payload, StoredEvent, envelope, heartbeat
from facilitair.store.base import EventStore

log = logging.getLogger(__name__)

STORE_PAGE = 500
RETRY_S = 0.5  # after a failed commit (the events stay queued)


class _LiveStream:
    def __init__(self, stream_id: str, last_seq: int) -> None:
        self.stream_id = stream_id
        self.seq = last_seq  # the last appended
        self.visible = last_seq  # the last committed, and so readable
        self.pending: list[StoredEvent] = []  # appended, not committed yet
        self.buffer: deque[StoredEvent] = deque()  # committed, the most recent ones
        self.buffer_bytes = 0  # their JSON's length
        self.finished = False  # its terminal event has been appended
        self.wakeup = Wakeup()

    @property
    def ended(self) -> bool:
        """Its terminal event is committed: nothing more will be readable."""
        return self.finished and self.visible == self.seq

    def since(self, cursor: int) -> list[StoredEvent] | None:
        """Visible events after `cursor`, or None when the buffer no longer reaches back."""
        if not self.buffer:
            return [] if cursor >= self.visible else None
        buffer = self.buffer
        if cursor + 1 < buffer[0].seq:
            return None
        return _last(buffer, self.visible - cursor)


def _last(buffer: deque[StoredEvent], count: int) -> list[StoredEvent]:
    """The buffer's last `count` events. Indexing from the right end: slicing a deque from the
    left walks every event before the ones wanted (up to buffer_size of them)."""
    size = len(buffer)
    count = min(count, size)
    if count <= 0:
        return []
    if count == 1:
        return [buffer[-1]]
    if count > size // 2:
        return list(islice(buffer, size - count, None))
    return [buffer[i] for i in range(size - count, size)]


class MemoryEventLog:
    def __init__(
        self, store: EventStore, *, buffer_size: int = 4096, buffer_bytes: int = 1 << 20
    ) -> None:
        """Each open stream keeps its last `buffer_size` events, and no more than about
        `buffer_bytes` of them, in memory; readers further behind read from the store."""
        self.store = store
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self._live: dict[str, _LiveStream] = {}
        # Readers of streams no writer here has open yet (e.g. a dead process's task, until
        # its lease runs out and this process ends it): woken when one opens.
        self._opening: dict[str, Wakeup] = {}
        self._commit_lock = asyncio.Lock()
        self._queued = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._committer = asyncio.create_task(self._commit_forever(), name="event-log-committer")

    async def stop(self) -> None:
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        await self.flush()

    async def create(self, stream_id: str) -> None:
        await self.open(stream_id)  # only this process can write it

    async def open(self, stream_id: str) -> None:
        if stream_id in self._live:
            return
        # One store round trip for a new stream (its last seq is 0), two for a resumed one.
        last = await self.store.last_seq(stream_id)
        if stream_id in self._live:  # opened by someone else meanwhile
            return
        if last and await self._stored_tail_is_terminal(stream_id, last):
            raise RuntimeError(f"stream {stream_id} has ended; it cannot be written again")
        self._live[stream_id] = _LiveStream(stream_id, last)
        opening = self._opening.pop(stream_id, None)
        if opening is not None:
            opening.notify()

    async def append(self, stream_id: str, payload: Payload) -> StoredEvent:
        stream = self._live.get(stream_id)
        if stream is None or stream.finished:
            raise RuntimeError(f"stream {stream_id} is not open for writing")
        stream.seq += 1
        event = envelope(stream_id, stream.seq, payload)
        stream.pending.append(event)
        if event.is_terminal:
            stream.finished = True
            await self.flush()  # a terminal event is durable when append returns
        else:
            self._queued.set()
        return event

    async def flush(self) -> None:
        """Commit everything appended so far, then show it to readers."""
        async with self._commit_lock:
            batch: list[tuple[_LiveStream, list[StoredEvent]]] = []
            for stream in self._live.values():
                if stream.pending:
                    batch.append((stream, stream.pending))
                    stream.pending = []
            if not batch:
                return
            try:
                await self.store.add_events([event for _, events in batch for event in events])
            except BaseException:
                for stream, events in batch:  # keep them, in order, for the next try
                    stream.pending[:0] = events
                raise
            for stream, events in batch:
                buffer = stream.buffer
                buffer.extend(events)
                stream.buffer_bytes += sum(len(event.data_json) for event in events)
                stream.visible = events[-1].seq
                while len(buffer) > self.buffer_size or (
                    stream.buffer_bytes > self.buffer_bytes and len(buffer) > 1
                ):
                    stream.buffer_bytes -= len(buffer.popleft().data_json)
                stream.wakeup.notify()
                if stream.ended:
                    # Readers carry on from the store; nothing more will be written here.
                    del self._live[stream.stream_id]

    async def _commit_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not write events to the store; retrying")
                self._queued.set()
                await asyncio.sleep(RETRY_S)

    async def last_seq(self, stream_id: str) -> int:
        stream = self._live.get(stream_id)
        return stream.seq if stream else await self.store.last_seq(stream_id)

    async def is_finished(self, stream_id: str) -> bool:
        stream = self._live.get(stream_id)
        if stream is not None:
            return stream.ended
        last = await self.store.last_seq(stream_id)
        return bool(last) and await self._stored_tail_is_terminal(stream_id, last)

    async def _stored_tail_is_terminal(self, stream_id: str, last: int) -> bool:
        tail = await self.store.events(stream_id, last - 1, 1)
        return bool(tail) and tail[0].is_terminal

    async def read(
        self, stream_id: str, after: int = 0, *, heartbeat_s: float | None = None
    ) -> AsyncIterator[StoredEvent]:
        cursor = after
        while True:
            stream = self._live.get(stream_id)
            batch = stream.since(cursor) if stream else None
            if batch is None:
                batch = await self.store.events(stream_id, cursor, STORE_PAGE)
                if not batch and self._live.get(stream_id) is None:
                    if cursor == 0 or await self._stored_tail_is_terminal(stream_id, cursor):
                        return  # finished (or never written) and fully read
                    # Unfinished, and nobody here writes it yet: wait for its writer.
                    opening = self._opening.setdefault(stream_id, Wakeup())
                    if not await opening.wait(heartbeat_s):
                        yield heartbeat(stream_id, cursor)
                    continue
            for event in batch:
                yield event
                cursor = event.seq
                if event.is_terminal:
                    return
            if batch or stream is None:
                continue
            if stream.visible > cursor:
                continue
            if not await stream.wakeup.wait(heartbeat_s):
                yield heartbeat(stream_id, cursor)
