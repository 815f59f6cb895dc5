"""Event fan-out and replay behind the `EventLog` interface, chosen by settings."""

from __future__ import annotations

from facilitair.bus.base import EventLog
from facilitair.bus.memory import MemoryEventLog
from facilitair.config import Settings
from facilitair.store.base import Store

__all__ = ["EventLog", "build_event_log"]


def build_event_log(settings: Settings, store: Store) -> EventLog:
    if settings.redis_url:
        raise ValueError("FAC_REDIS_URL is not supported yet: unset it to use the in-process log")
    return MemoryEventLog(store)
