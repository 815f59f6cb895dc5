"""Wire encodings of a stored event: Server-Sent Events and WebSocket JSON."""

from __future__ import annotations

import json
from typing import Any

from sse_starlette import ServerSentEvent

from facilitair.protocol.events import EventName, StoredEvent

SSE_SEP = "\r\n"  # the line end sse-starlette writes; frames built here use the same


def to_sse(event: StoredEvent, *, retry_ms: int | None = None) -> ServerSentEvent:
    """`id:` is omitted for heartbeats so they never move a client's Last-Event-ID."""
    return ServerSentEvent(
        data=event.data_json,
        event=event.event,
        id=None if event.event == EventName.HEARTBEAT else str(event.seq),
        retry=retry_ms,
        sep=SSE_SEP,
    )


def sse_frame(event: StoredEvent, *, retry_ms: int | None = None) -> bytes:
    """The bytes `to_sse(event, retry_ms=...).encode()` gives, built directly.

    `id:`, `event:`, one `data:` line (compact JSON has no line breaks), `retry:` when given,
    then a blank line. `id:` is omitted for heartbeats.
    """
    name = event.event
    if name == EventName.HEARTBEAT:
        frame = f"event: {name}\r\ndata: {event.data_json}\r\n"
    else:
        frame = f"id: {event.seq}\r\nevent: {name}\r\ndata: {event.data_json}\r\n"
    if retry_ms is not None:
        frame += f"retry: {int(retry_ms)}\r\n"
    return (frame + SSE_SEP).encode("utf-8")


def sse_notice(name: str, code: str, message: str) -> bytes:
    """A frame that is not a logged event (no `id:`): why the server is ending the stream."""
    data = json.dumps({"code": code, "message": message}, separators=(",", ":"))
    return f"event: {name}\r\ndata: {data}\r\n{SSE_SEP}".encode()


def to_ws(event: StoredEvent) -> dict[str, Any]:
    ident = None if event.event == EventName.HEARTBEAT else event.seq
    return {"id": ident, "event": event.event, "data": event.data}
