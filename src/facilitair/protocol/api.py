"""Request and response bodies of the HTTP API (SPEC §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from facilitair.protocol.events import Artifact, TaskMetrics

MAX_TASK_CHARS = 20_000

# A head count, or a word for one ("small", "medium", "large" or another short label). The
# cache reads both as the same size bands (cache/aliases.toml).
TeamSize = (
    Annotated[int, Field(ge=1, le=100_000)]
    | Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[\w][\w .+-]*$"
        ),
    ]
)

TaskStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
FINISHED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class TaskContext(BaseModel):
    """What the task is for. Unknown keys are kept (and shown to the agents) but never cached on."""

    model_config = ConfigDict(extra="allow", strict=True)

    preferred_language: str | None = Field(default=None, max_length=100)
    frameworks: list[str] = Field(default_factory=list, max_length=50)
    team_size: TeamSize | None = None
    security_level: str | None = Field(default=None, max_length=100)
    compliance: list[str] = Field(default_factory=list, max_length=50)
    existing_stack: list[str] = Field(default_factory=list, max_length=100)


class TaskRequest(BaseModel):
    """Types are strict: "5" is not a team size and "0.5" is not a budget."""

    model_config = ConfigDict(extra="forbid", strict=True)

    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    context: TaskContext = Field(default_factory=TaskContext)
    stream: bool = True
    workflow: Literal["sequential", "council"] = "sequential"
    cache: Literal["use", "refresh", "off"] = "use"
    budget_usd: float | None = Field(default=None, gt=0)
    models: dict[str, str] = Field(default_factory=dict)
    verbosity: Literal["filtered", "full"] = "filtered"

    @field_validator("task")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("task must not be blank")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # A NUL character means nothing in a task, and PostgreSQL cannot store one in text or
        # JSON: refused alike on every backend.
        if _has_nul(data):
            raise ValueError("text must not contain NUL characters (\\u0000)")
        return data


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:
        return False  # deeper than anything valid; the model's own checks refuse it
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


class TaskCreated(BaseModel):
    stream_id: str
    task_id: str
    events_url: str
    status_url: str


class StreamStatus(BaseModel):
    stream_id: str
    task_id: str
    status: TaskStatus
    last_event_id: int
    completed_chunks: int
    total_chunks: int
    cost_usd: float | None
    tokens: dict[str, int]
    created_at: str
    finished_at: str | None


class Ticket(BaseModel):
    ticket: str
    expires_in: int
    stream_id: str


class TaskResult(BaseModel):
    content: str
    artifacts: list[Artifact]
    metrics: TaskMetrics


class TaskError(BaseModel):
    error: str
    code: str
    retryable: bool = False
    details: dict[str, Any] | None = None


class TaskRecord(BaseModel):
    """A task as the store keeps it; `request` is the original, validated request body."""

    task_id: str
    stream_id: str
    tenant_id: str
    status: TaskStatus
    request: TaskRequest
    created_at: str
    finished_at: str | None = None
    total_chunks: int = 0
    completed_chunks: int = 0
    cost_usd: float | None = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    result: TaskResult | None = None
    error: TaskError | None = None
    partial: dict[str, str] | None = None


class TaskSummary(BaseModel):
    task_id: str
    stream_id: str
    status: TaskStatus
    task: str
    workflow: str
    created_at: str
    finished_at: str | None
    cost_usd: float | None


class TaskList(BaseModel):
    items: list[TaskSummary]
    total: int
    limit: int
    offset: int


class TaskDetail(TaskSummary):
    context: dict[str, Any]
    total_chunks: int
    completed_chunks: int
    tokens: dict[str, int]
    result: TaskResult | None
    error: TaskError | None
    partial: dict[str, str] | None


class CollaborateResponse(BaseModel):
    task_id: str
    stream_id: str
    status: TaskStatus
    result: TaskResult | None = None
    error: TaskError | None = None


class AgentInfo(BaseModel):
    role: str
    name: str
    model: str
    temperature: float
    max_tokens: int
    fallbacks: list[str]
    offline: bool = False  # runs the embedded local model, not an endpoint


class AgentList(BaseModel):
    agents: list[AgentInfo]


class CheckResult(BaseModel):
    ok: bool
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckResult]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class CacheStatsBody(BaseModel):
    enabled: bool
    entries: int
    hits: int
    misses: int
    hit_rate: float
    saved_usd: float
    saved_s: float
    threshold: float | None = None
    embedder: str | None = None


class CacheCleared(BaseModel):
    deleted: int
