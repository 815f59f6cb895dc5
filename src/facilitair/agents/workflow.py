"""What every workflow is: something that runs a task's turns and returns its outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from facilitair.protocol.api import TaskRequest
from facilitair.protocol.events import Artifact


@dataclass(frozen=True)
class WorkflowOutcome:
    content: str
    artifacts: list[Artifact]
    iterations: int
    consensus: dict[str, Any] | None = None  # the council's ranking, agreement and dissent


class Workflow(Protocol):
    async def run(self, request: TaskRequest) -> WorkflowOutcome: ...


def task_text(request: TaskRequest) -> str:
    """The task as every agent reads it: the request and its context."""
    context = request.context.model_dump(exclude_none=True, exclude_defaults=True)
    shown = json.dumps(context, ensure_ascii=False) if context else "(none given)"
    return f"Task: {request.task}\nContext: {shown}"
