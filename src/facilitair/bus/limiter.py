"""The per-key rate limit on starting tasks: a sliding one-minute window, counted in this
process (embedded) or in Redis across every process (scale-out)."""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Protocol

from redis.asyncio import Redis


class RateLimiter(Protocol):
    per_minute: int

    async def check(self, key: str) -> float | None:
        """None when allowed (and counted); else the seconds to wait."""
        ...


class MemoryRateLimiter:
    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    async def check(self, key: str) -> float | None:
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return hits[0] + self.window_s - now
        hits.append(now)
        return None


# One atomic step on a sorted set of start times, with Redis's clock (processes' clocks may
# differ): drop what left the window, then either count this start or say how long to wait.
SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class RedisRateLimiter:
    def __init__(
        self, redis: Redis, per_minute: int, *, prefix: str = "fac", window_s: float = 60.0
    ) -> None:
        self.per_minute = per_minute
        self.window_ms = int(window_s * 1000)
        self.prefix = prefix
        self._script = redis.register_script(SLIDING_WINDOW)

    async def check(self, key: str) -> float | None:
        wait_ms = await self._script(
            keys=[f"{self.prefix}:ratelimit:{key}"],
            args=[self.per_minute, self.window_ms, uuid.uuid4().hex],
        )
        return int(wait_ms) / 1000 if wait_ms else None
