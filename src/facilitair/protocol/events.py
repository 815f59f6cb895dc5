"""Every event of a stream: names, typed payloads and the stored envelope (SPEC §5).

Payload models hold the event-specific fields. The envelope adds what every event carries on
the wire: `stream_id`, `seq` and `timestamp`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field


class EventName(StrEnum):
    TASK_STARTED = "task_started"
    TASK_PROGRESS = "task_progress"
    CHUNK_STARTED = "chunk_started"
    TOKEN_STREAM = "token_stream"
    CHUNK_COMPLETED = "chunk_completed"
    SYSTEM_MESSAGE = "system_message"
    TASK_COMPLETED = "task_completed"
    TASK_ERROR = "task_error"
    TASK_CANCELLED = "task_cancelled"
    HEARTBEAT = "heartbeat"


TERMINAL_EVENTS = frozenset(
    {EventName.TASK_COMPLETED, EventName.TASK_ERROR, EventName.TASK_CANCELLED}
)


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str = Field(exclude=True)


class PlanItem(BaseModel):
    chunk_id: str
    role: str
    description: str
    model: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Artifact(BaseModel):
    path: str
    language: str
    content: str


class TaskMetrics(BaseModel):
    duration_s: float
    cost_usd: float | None
    prompt_tokens: int
    completion_tokens: int
    llm_calls: int
    iterations: int
    cached: bool = False
    similarity: float | None = None
    saved_usd: float | None = None
    saved_s: float | None = None
    consensus: dict[str, Any] | None = None  # council: {ranking, agreement, dissent}


class TaskStarted(Payload):
    event: Literal["task_started"] = Field(default="task_started", exclude=True)
    task: str
    context: dict[str, Any]
    workflow: str
    task_id: str


class TaskProgress(Payload):
    event: Literal["task_progress"] = Field(default="task_progress", exclude=True)
    total_chunks: int
    completed_chunks: int
    estimated_time: float
    estimated_cost: float | None
    plan: list[PlanItem]


class ChunkStarted(Payload):
    event: Literal["chunk_started"] = Field(default="chunk_started", exclude=True)
    chunk_id: str
    chunk_number: int
    role: str
    agent: str
    model: str
    description: str
    iteration: int = 1
    attempt: int = 1
    phase: str | None = None  # council: propose, review, synthesize
    member: str | None = None  # council: "Response A" until the review ends, then the model


class TokenStream(Payload):
    event: Literal["token_stream"] = Field(default="token_stream", exclude=True)
    chunk_id: str
    tokens: str
    role: str
    agent: str
    phase: str | None = None
    member: str | None = None


class ChunkCompleted(Payload):
    event: Literal["chunk_completed"] = Field(default="chunk_completed", exclude=True)
    chunk_id: str
    chunk_number: int
    role: str
    agent: str
    model: str
    content: str
    usage: Usage
    cost_usd: float | None
    duration_s: float
    phase: str | None = None
    member: str | None = None
    tests: dict[str, float] | None = None  # the Tester's: passed, failed, errors, duration_s


class SystemMessage(Payload):
    event: Literal["system_message"] = Field(default="system_message", exclude=True)
    message: str
    level: Literal["info", "warning"] = "info"
    kind: str
    details: dict[str, Any] | None = None  # kind "council": the consensus, as in the metrics


class TaskCompleted(Payload):
    event: Literal["task_completed"] = Field(default="task_completed", exclude=True)
    content: str
    artifacts: list[Artifact]
    metrics: TaskMetrics


class TaskError(Payload):
    event: Literal["task_error"] = Field(default="task_error", exclude=True)
    error: str
    code: str
    retryable: bool = False
    details: dict[str, Any] | None = None


class TaskCancelled(Payload):
    event: Literal["task_cancelled"] = Field(default="task_cancelled", exclude=True)
    reason: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as logged: its per-stream sequence number, name and full `data` object.

    A plain frozen dataclass: one is made for every token, so it skips validation (`envelope`
    builds `data` from an already validated payload). `data_json` is `data` serialized once,
    shared by every subscriber that sends it.
    """

    stream_id: str
    seq: int
    event: str
    data: dict[str, Any]
    _data_json: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_json(cls, stream_id: str, seq: int, event: str, data_json: str) -> StoredEvent:
        """An event read back from a log or store: `data_json` is kept as it was sent, so a
        replay carries the same bytes."""
        stored = cls(stream_id, seq, event, orjson.loads(data_json))
        object.__setattr__(stored, "_data_json", data_json)
        return stored

    @property
    def is_terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    @property
    def data_json(self) -> str:
        """`data` as compact one-line JSON (non-ASCII kept), computed on first use."""
        cached = self._data_json
        if cached is None:
            # orjson: compact, UTF-8 kept, and about six times faster than json.dumps here.
            cached = orjson.dumps(self.data).decode()
            object.__setattr__(self, "_data_json", cached)
        return cached


MAX_SEQ = 2**53  # the largest seq (and Last-Event-ID) anything accepts: exact in JSON numbers


class _Clock:
    """`utc_now` formats the date and time once per second, then only adds milliseconds.
    The (second, text) pair is swapped in one assignment, so threads never mix two seconds."""

    cached: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.123Z."""
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    cached = _Clock.cached
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _Clock.cached = cached
    return f"{cached[1]}.{nanos // 1_000_000:03d}Z"


def iso_utc(moment: datetime) -> str:
    """The timestamp format of every event and record, for a given moment."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(stream_id: str, seq: int, payload: Payload) -> StoredEvent:
    data: dict[str, Any] = {"stream_id": stream_id, "seq": seq, "timestamp": utc_now()}
    if type(payload) is TokenStream:  # the hot path: one per token line; flat string fields
        data["chunk_id"] = payload.chunk_id
        data["tokens"] = payload.tokens
        data["role"] = payload.role
        data["agent"] = payload.agent
        if payload.phase is not None:
            data["phase"] = payload.phase
            data["member"] = payload.member
    else:
        data.update(payload.model_dump(mode="json"))
        for optional in ("phase", "member", "tests", "details"):  # only where they are set
            if optional in data and data[optional] is None:
                del data[optional]
    return StoredEvent(stream_id, seq, payload.event, data)


def heartbeat(stream_id: str, last_seq: int) -> StoredEvent:
    """A keep-alive. It is never logged and carries the last real seq, so it moves no cursor."""
    data = {"stream_id": stream_id, "seq": last_seq, "timestamp": utc_now()}
    return StoredEvent(stream_id, last_seq, EventName.HEARTBEAT.value, data)
