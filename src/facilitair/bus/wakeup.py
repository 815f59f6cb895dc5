"""Wake the readers of a stream when it grows."""

from __future__ import annotations

import asyncio


class Wakeup:
    """Readers `wait` for the next `notify`, or give up after a timeout.

    A future per wait and one timer, rather than `asyncio.Event` + `asyncio.timeout`: this runs
    once per event per reader, and those cost several times more (a new Event per notify, and
    per wait a context manager, the current task's lookup and a rescheduled timer).
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[bool]] = set()

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, timeout_s: float | None) -> bool:
        """True when notified; False when `timeout_s` passed first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(waiter)
        timer = None if timeout_s is None else loop.call_later(timeout_s, _time_out, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiters.discard(waiter)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
