"""The provider's SSE reader: whatever the line endings and wherever the body is split, it
yields each event's data exactly once."""

from __future__ import annotations

import pytest

from facilitair.llm.openai_compat import SSEDataDecoder

EVENTS = [b'{"a": 1}', b'{"b": "x y"}', b"line one\nline two", b"[DONE]"]


def body(newline: bytes) -> bytes:
    frames = []
    for data in EVENTS:
        lines = [b"data: " + part for part in data.split(b"\n")]
        frames.append(newline.join([b": comment", *lines, b"id: 7"]) + newline + newline)
    return b"".join(frames)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_split_of_the_body_decodes_to_the_same_events(newline: bytes) -> None:
    raw = body(newline)
    for cut in range(len(raw) + 1):
        decoder = SSEDataDecoder()
        assert decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) == EVENTS, cut


def test_byte_by_byte_and_an_unfinished_last_event_is_dropped() -> None:
    raw = body(b"\r\n") + b"data: half an event"
    decoder = SSEDataDecoder()
    decoded = [event for i in range(len(raw)) for event in decoder.feed(raw[i : i + 1])]
    assert decoded == EVENTS


def test_data_without_a_space_after_the_colon() -> None:
    assert SSEDataDecoder().feed(b"data:{}\n\n") == [b"{}"]
