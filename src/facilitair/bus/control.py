"""Control signals between processes: today, "cancel this stream", delivered to whichever
process runs the task. In-process for the embedded server; Redis pub/sub for scale-out."""

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


class Control(Protocol):
    async def start(self, on_cancel: OnCancel) -> None:
        """Begin delivering cancel requests to `on_cancel`; every process gets every request
        and acts on the streams it runs."""
        ...

    async def stop(self) -> None: ...

    async def cancel(self, stream_id: str, reason: str) -> None:
        """Ask the process running the stream's task to cancel it."""
        ...


class LocalControl:
    def __init__(self) -> None:
        self._on_cancel: OnCancel | None = None

    async def start(self, on_cancel: OnCancel) -> None:
        self._on_cancel = on_cancel

    async def stop(self) -> None:
        self._on_cancel = None

    async def cancel(self, stream_id: str, reason: str) -> None:
        if self._on_cancel is not None:
            await self._on_cancel(stream_id, reason)


class RedisControl:
    def __init__(self, redis: Redis, prefix: str = "fac") -> None:
        self.redis = redis
        self.channel = f"{prefix}:control"
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self, on_cancel: OnCancel) -> None:
        self._listener = asyncio.create_task(self._listen(on_cancel), name="control-listener")
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

    async def _listen(self, on_cancel: OnCancel) -> None:
        while True:  # resubscribe after Redis restarts
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        request = json.loads(message["data"])
                        if request.get("action") == "cancel":
                            await on_cancel(str(request["stream_id"]), str(request["reason"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control channel lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
