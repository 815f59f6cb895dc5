"""Wire encodings of a stored event: Server-Sent Events and WebSocket JSON."""

from __future__ import annotations

import json
from typing import Any

from sse_starlette import ServerSentEvent

from facilitair.protocol.events import EventName, StoredEvent


def to_sse(event: StoredEvent, *, retry_ms: int | None = None) -> ServerSentEvent:
    """`id:` is omitted for heartbeats so they never move a client's Last-Event-ID."""
    return ServerSentEvent(
        data=json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
        event=event.event,
        id=None if event.event == EventName.HEARTBEAT else str(event.seq),
        retry=retry_ms,
    )


def to_ws(event: StoredEvent) -> dict[str, Any]:
    ident = None if event.event == EventName.HEARTBEAT else event.seq
    return {"id": ident, "event": event.event, "data": event.data}
