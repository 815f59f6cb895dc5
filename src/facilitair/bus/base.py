"""The event log: append events to a stream, read a stream from any point, live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from facilitair.protocol.events import Payload, StoredEvent


class EventLog(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Persist everything still pending."""
        ...

    async def create(self, stream_id: str) -> None:
        """Make a new stream known, so that readers wait for its events, whichever process
        will write them."""
        ...

    async def open(self, stream_id: str) -> None:
        """Make a stream writable by this process; its next event follows the last one
        already stored."""
        ...

    async def append(self, stream_id: str, payload: Payload) -> StoredEvent:
        """Give the event the stream's next seq; readers get it once it is durable (stored, or
        in Redis), so a process that dies never leaves a reader holding an event the log
        lost. A terminal event is durable before this returns.
        """
        ...

    def read(
        self, stream_id: str, after: int = 0, *, heartbeat_s: float | None = None
    ) -> AsyncIterator[StoredEvent]:
        """Events with seq > `after`: stored ones, then live ones as they come, ending with the
        stream's terminal event. Yields a heartbeat after `heartbeat_s` of silence."""
        ...

    async def last_seq(self, stream_id: str) -> int:
        """The seq of the stream's last appended event (0: none yet)."""
        ...

    async def is_finished(self, stream_id: str) -> bool:
        """Whether the stream's terminal event has been appended."""
        ...
