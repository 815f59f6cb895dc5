"""Control signals between processes: "cancel this stream", delivered to whichever process
runs the task, and "a task was queued", which wakes the processes that run tasks. In-process
for the embedded server; Redis pub/sub for scale-out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio import Redis

log = logging.getLogger(__name__)

OnCancel = Callable[[str, str], Awaitable[object]]  # (stream_id, reason)
OnQueued = Callable[[], object]


class Control(Protocol):
    async def start(self, on_cancel: OnCancel, on_queued: OnQueued) -> None:
        """Begin delivering requests; every process gets every one, and acts on the streams
        it runs."""
        ...

    async def stop(self) -> None: ...

    async def cancel(self, stream_id: str, reason: str) -> None:
        """Ask the process running the stream's task to cancel it."""
        ...

    async def announce_queued(self) -> None:
        """Tell the processes that run tasks that one is waiting."""
        ...


class LocalControl:
    def __init__(self) -> None:
        self._on_cancel: OnCancel | None = None
        self._on_queued: OnQueued | None = None

    async def start(self, on_cancel: OnCancel, on_queued: OnQueued) -> None:
        self._on_cancel, self._on_queued = on_cancel, on_queued

    async def stop(self) -> None:
        self._on_cancel = self._on_queued = None

    async def cancel(self, stream_id: str, reason: str) -> None:
        if self._on_cancel is not None:
            await self._on_cancel(stream_id, reason)

    async def announce_queued(self) -> None:
        if self._on_queued is not None:
            self._on_queued()


class RedisControl:
    def __init__(self, redis: Redis, prefix: str = "fac") -> None:
        self.redis = redis
        self.channel = f"{prefix}:control"
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self, on_cancel: OnCancel, on_queued: OnQueued) -> None:
        self._listener = asyncio.create_task(
            self._listen(on_cancel, on_queued), name="control-listener"
        )
        # Requests published after start() returns must reach this process.
        subscribed = asyncio.create_task(self._subscribed.wait())
        await asyncio.wait(
            {subscribed, self._listener}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED
        )
        subscribed.cancel()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def cancel(self, stream_id: str, reason: str) -> None:
        await self.redis.publish(
            self.channel, json.dumps({"action": "cancel", "stream_id": stream_id, "reason": reason})
        )

    async def announce_queued(self) -> None:
        await self.redis.publish(self.channel, '{"action": "queued"}')

    async def _listen(self, on_cancel: OnCancel, on_queued: OnQueued) -> None:
        while True:  # resubscribe after Redis restarts
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        request = json.loads(message["data"])
                        if request.get("action") == "cancel":
                            await on_cancel(str(request["stream_id"]), str(request["reason"]))
                        elif request.get("action") == "queued":
                            on_queued()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control channel lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
