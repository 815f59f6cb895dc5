"""The embedded event log: recent events in memory, all of them persisted to the store.

Writers append to a per-stream buffer and wake readers. A background flusher writes the buffer
to the store in batches; a terminal event is written at once. Readers keep only a cursor (the
last seq they sent), so a slow reader costs no memory: when it falls behind the buffer it reads
from the store and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from itertools import islice

from facilitair.bus.wakeup import Wakeup
from facilitair.protocol.events import Payload, StoredEvent, envelope, heartbeat
from facilitair.store.base import EventStore

STORE_PAGE = 500


class _LiveStream:
    def __init__(self, stream_id: str, last_seq: int) -> None:
        self.stream_id = stream_id
        self.seq = last_seq
        self.persisted = last_seq
        self.buffer: deque[StoredEvent] = deque()
        self.finished = False
        self.wakeup = Wakeup()

    def since(self, cursor: int) -> list[StoredEvent] | None:
        """Buffered events after `cursor`, or None when the buffer no longer reaches back."""
        if not self.buffer:
            return [] if cursor >= self.seq else None
        buffer = self.buffer
        if cursor + 1 < buffer[0].seq:
            return None
        return _last(buffer, self.seq - cursor)


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
        self, store: EventStore, *, buffer_size: int = 4096, flush_interval_s: float = 0.05
    ) -> None:
        self.store = store
        self.buffer_size = buffer_size
        self.flush_interval_s = flush_interval_s
        self._live: dict[str, _LiveStream] = {}
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="event-log-flusher")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
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

    async def append(self, stream_id: str, payload: Payload) -> StoredEvent:
        stream = self._live.get(stream_id)
        if stream is None or stream.finished:
            raise RuntimeError(f"stream {stream_id} is not open for writing")
        stream.seq += 1
        event = envelope(stream_id, stream.seq, payload)
        stream.buffer.append(event)
        if event.is_terminal:
            stream.finished = True
        stream.wakeup.notify()
        if event.is_terminal or stream.seq - stream.persisted >= self.buffer_size // 2:
            await self.flush()
        return event

    async def flush(self) -> None:
        async with self._flush_lock:
            pending: list[StoredEvent] = []
            written: dict[str, int] = {}
            for stream_id, stream in self._live.items():
                unwritten = stream.seq - stream.persisted
                if unwritten <= 0 and not stream.finished:
                    continue
                pending.extend(_last(stream.buffer, unwritten))
                written[stream_id] = stream.seq
            if pending:
                await self.store.add_events(pending)
            for stream_id, seq in written.items():
                stream = self._live[stream_id]
                stream.persisted = seq
                while len(stream.buffer) > self.buffer_size and stream.buffer[0].seq <= seq:
                    stream.buffer.popleft()
                if stream.finished and stream.seq == seq:
                    # Readers carry on from the store; nothing more will be written here.
                    del self._live[stream_id]

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def last_seq(self, stream_id: str) -> int:
        stream = self._live.get(stream_id)
        return stream.seq if stream else await self.store.last_seq(stream_id)

    async def is_finished(self, stream_id: str) -> bool:
        stream = self._live.get(stream_id)
        if stream is not None:
            return stream.finished
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
                    return  # finished (or unknown) and fully read
            for event in batch:
                yield event
                cursor = event.seq
                if event.is_terminal:
                    return
            if batch or stream is None:
                continue
            if stream.seq > cursor:
                continue
            if not await stream.wakeup.wait(heartbeat_s):
                yield heartbeat(stream_id, cursor)
