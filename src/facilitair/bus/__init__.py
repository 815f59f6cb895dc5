"""What processes share besides the store: event fan-out and replay (`EventLog`), control
signals (`Control`), rate limits (`RateLimiter`) and the task queue (`TaskQueue`). In this
process by default; in Redis (and the database, for the queue) when FAC_REDIS_URL is set, so
that any API process serves any stream and any worker runs any task."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from facilitair.bus.base import EventLog
from facilitair.bus.control import Control, LocalControl, RedisControl
from facilitair.bus.limiter import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from facilitair.bus.memory import MemoryEventLog
from facilitair.bus.queue import LocalQueue, StoreQueue, TaskQueue
from facilitair.bus.redis import RedisEventLog
from facilitair.config import Settings
from facilitair.store.base import Store

__all__ = [
    "Bus",
    "BusUnavailable",
    "Control",
    "EventLog",
    "RateLimiter",
    "TaskQueue",
    "build_bus",
]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class BusUnavailable(RuntimeError):
    """Redis cannot be reached or used as configured; the message says what to do."""


@dataclass
class Bus:
    events: EventLog
    control: Control
    limiter: RateLimiter
    queue: TaskQueue
    redis: Redis | None = None

    async def ping(self) -> None:
        if self.redis is not None:
            await self.redis.ping()

    async def close(self) -> None:
        await self.control.stop()
        await self.events.stop()
        if self.redis is not None:
            await self.redis.aclose()


async def build_bus(settings: Settings, store: Store) -> Bus:
    """The bus for these settings, connected (the event log is started; control is not)."""
    url = settings.redis_url
    if not url:
        bus = Bus(
            MemoryEventLog(store),
            LocalControl(),
            MemoryRateLimiter(settings.rate_limit_per_minute),
            LocalQueue(store),
        )
        await bus.events.start()
        return bus
    if not url.startswith(REDIS_SCHEMES):
        raise BusUnavailable(
            f"FAC_REDIS_URL must start with redis://, rediss:// or unix:// "
            f"(got {url.split(':', 1)[0]}://…)"
        )
    # A blocking pool: past its size, commands wait for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.redis_pool_size, timeout=30, socket_connect_timeout=5
    )
    redis = Redis(connection_pool=pool)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        where = url.split("@")[-1]  # without credentials
        raise BusUnavailable(f"cannot reach Redis at {where}: {exc}") from None
    prefix = settings.redis_prefix
    control = RedisControl(redis, prefix)
    bus = Bus(
        RedisEventLog(
            redis,
            store,
            prefix=prefix,
            keep=settings.redis_stream_keep,
            # Never longer than the stream replays at all.
            finished_ttl_s=min(settings.redis_finished_ttl_s, settings.stream_ttl_s),
        ),
        control,
        RedisRateLimiter(redis, settings.rate_limit_per_minute, prefix=prefix),
        StoreQueue(store, control),
        redis,
    )
    await bus.events.start()
    return bus
