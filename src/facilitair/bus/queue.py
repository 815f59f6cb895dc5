"""The task queue between the processes that accept tasks and those that run them.

`LocalQueue` (embedded): the accepting process runs its own tasks, handed over in memory.
`StoreQueue` (scale-out): a task waits in the database (durable: it survives the death of the
process that accepted it) until a process that runs tasks takes it, oldest first
(`TaskStore.take_task`: `FOR UPDATE SKIP LOCKED` on PostgreSQL); a control message wakes the
takers so they do not poll. Either way the runner's one loop takes and runs what is queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from facilitair.bus.control import Control
from facilitair.protocol.api import TaskRecord
from facilitair.store.base import TaskStore


class TaskQueue(Protocol):
    async def put(self, record: TaskRecord, owner: str, lease_until: str) -> None:
        """Store a new task and queue it (`owner` is this process)."""
        ...

    async def take(
        self, owner: str, lease_until: str, stream_id: str | None = None
    ) -> TaskRecord | None:
        """The next queued task (or that stream's, if it is still queued), now `owner`'s; None
        when there is none. Never blocks."""
        ...

    async def wait(self) -> None:
        """Until a task may have been queued."""
        ...

    def wake(self) -> None:
        """Something was queued (called by the control channel)."""
        ...


class _Signal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()


class LocalQueue(_Signal):
    def __init__(self, store: TaskStore) -> None:
        super().__init__()
        self.store = store
        self._queued: deque[TaskRecord] = deque()

    async def put(self, record: TaskRecord, owner: str, lease_until: str) -> None:
        # Held by this process from the start: only it can run the task.
        await self.store.add_task(record, owner, lease_until)
        self._queued.append(record)
        self.wake()

    async def take(
        self, owner: str, lease_until: str, stream_id: str | None = None
    ) -> TaskRecord | None:
        for record in self._queued:
            if stream_id is None or record.stream_id == stream_id:
                self._queued.remove(record)
                return record
        return None


class StoreQueue(_Signal):
    def __init__(self, store: TaskStore, control: Control) -> None:
        super().__init__()
        self.store = store
        self.control = control

    async def put(self, record: TaskRecord, owner: str, lease_until: str) -> None:
        await self.store.add_task(record)  # owned by nobody until a process takes it
        await self.control.announce_queued()

    async def take(
        self, owner: str, lease_until: str, stream_id: str | None = None
    ) -> TaskRecord | None:
        return await self.store.take_task(owner, lease_until, stream_id)
