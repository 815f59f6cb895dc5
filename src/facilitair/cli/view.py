"""The Rich live view of `facilitair run` (SPEC §8): state derived from events, then rendering.

`RunView` folds the events of one stream (SPEC §5) into plain state and knows nothing about
the terminal. `render_live` and `render_final` turn that state into Rich renderables that
compose (a `Group` of panels and lines), so the CLI can hand them to `rich.live.Live` or print
them once. Every string that comes from the server is rendered as `Text`, never as console
markup, so model output such as "[bold]" is shown literally.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

__all__ = [
    "ChunkView",
    "PlanState",
    "RunView",
    "render_final",
    "render_live",
]

PlanState = Literal["done", "active", "pending"]

CODE_THEME = "ansi_dark"


@dataclass
class ChunkView:
    """One agent turn as the terminal shows it."""

    chunk_id: str
    role: str
    agent: str
    model: str
    description: str
    iteration: int = 1
    attempt: int = 1
    phase: str = ""  # the council's: propose, review, synthesize
    text: str = ""
    done: bool = False
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens)
    cost_usd: float | None = None
    duration_s: float | None = None
    tests: dict[str, Any] | None = None  # the Tester's: passed, failed, errors, duration_s


# --- reading loosely typed event data ----------------------------------------------------


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _int(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key)
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return default


def _float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


# --- state -------------------------------------------------------------------------------


class RunView:
    """Everything the terminal shows, derived from events only."""

    def __init__(self, task: str = "", started_at: float | None = None) -> None:
        self.task = task
        self.started_at = time.monotonic() if started_at is None else started_at
        self.finished_at: float | None = None
        self.stream_id: str | None = None
        self.task_id: str | None = None
        self.workflow: str | None = None
        self.last_seq: int | None = None
        self.plan: list[dict[str, Any]] = []
        self.total_chunks = 0
        self.completed_chunks = 0
        self.estimated_cost: float | None = None
        self.estimated_time: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.chunks: dict[str, ChunkView] = {}
        self.completions: Counter[str] = Counter()  # chunk_completed events per chunk_id
        self.messages: list[tuple[str, str, str]] = []  # (level, kind, message)
        self.consensus: dict[str, Any] = {}  # the council's ranking, once the review is over
        self.final: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.cancelled: str | None = None
        self.cache_hit: str | None = None
        self.connection: str | None = None
        self._spent = 0.0
        self._cost_unknown = False
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "task_started": self._task_started,
            "task_progress": self._task_progress,
            "chunk_started": self._chunk_started,
            "token_stream": self._token_stream,
            "chunk_completed": self._chunk_completed,
            "system_message": self._system_message,
            "task_completed": self._task_completed,
            "task_error": self._task_error,
            "task_cancelled": self._task_cancelled,
        }

    # read-only summaries

    @property
    def cost_usd(self) -> float | None:
        """Sum of the completed turns' costs; None once any turn's cost was unknown."""
        return None if self._cost_unknown else self._spent

    @property
    def finished(self) -> bool:
        return self.final is not None or self.error is not None or self.cancelled is not None

    @property
    def last_warning(self) -> str | None:
        for level, _kind, message in reversed(self.messages):
            if level == "warning":
                return message
        return None

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the start; frozen at the moment the stream's terminal event arrived."""
        current = time.monotonic() if now is None else now
        if self.finished_at is not None:
            current = min(current, self.finished_at)
        return max(0.0, current - self.started_at)

    def plan_status(self) -> list[tuple[str, PlanState]]:
        """Each plan item's label and state. A chunk_id planned twice (a revision, a second
        review round) is labelled "c1 r2"; its n-th occurrence is done after n completions."""
        seen: Counter[str] = Counter()
        status: list[tuple[str, PlanState]] = []
        for item in self.plan:
            chunk_id = _str(item, "chunk_id", "?")
            seen[chunk_id] += 1
            occurrence = seen[chunk_id]
            label = chunk_id if occurrence == 1 else f"{chunk_id} r{occurrence}"
            completed = self.completions[chunk_id]
            chunk = self.chunks.get(chunk_id)
            state: PlanState
            if completed >= occurrence:
                state = "done"
            elif chunk is not None and not chunk.done and completed == occurrence - 1:
                state = "active"
            else:
                state = "pending"
            status.append((label, state))
        return status

    # updates

    def set_connection(self, note: str | None) -> None:
        """A note about the connection (e.g. "reconnecting (attempt 2/5)…"); None when fine."""
        self.connection = note

    def apply(self, event: str, data: dict[str, Any], *, now: float | None = None) -> None:
        """Fold one event into the state. Unknown event names are ignored, and so is an event
        whose seq is not past the last one applied (a replay after a reconnect)."""
        handler = self._handlers.get(str(event))
        if handler is None:
            return
        seq = data.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if self.last_seq is not None and seq <= self.last_seq:
                return
            self.last_seq = seq
        if self.stream_id is None and data.get("stream_id"):
            self.stream_id = _str(data, "stream_id")
        handler(data)
        if self.finished and self.finished_at is None:
            self.finished_at = time.monotonic() if now is None else now

    def _task_started(self, data: dict[str, Any]) -> None:
        self.task = _str(data, "task", self.task)
        self.task_id = _str(data, "task_id") or self.task_id
        self.workflow = _str(data, "workflow") or self.workflow

    def _task_progress(self, data: dict[str, Any]) -> None:
        self.total_chunks = _int(data, "total_chunks", self.total_chunks)
        self.completed_chunks = max(self.completed_chunks, _int(data, "completed_chunks"))
        self.estimated_time = _float(data, "estimated_time")
        self.estimated_cost = _float(data, "estimated_cost")
        plan = data.get("plan")
        if isinstance(plan, list):
            self.plan = [item for item in plan if isinstance(item, dict)]

    def _chunk(self, data: dict[str, Any]) -> ChunkView:
        chunk_id = _str(data, "chunk_id", "?")
        chunk = self.chunks.get(chunk_id)
        if chunk is None:
            chunk = ChunkView(
                chunk_id=chunk_id,
                role=_str(data, "role"),
                agent=_str(data, "agent") or _str(data, "role") or chunk_id,
                model=_str(data, "model"),
                description=_str(data, "description"),
            )
            self.chunks[chunk_id] = chunk
        return chunk

    def _chunk_started(self, data: dict[str, Any]) -> None:
        chunk = self._chunk(data)
        chunk.role = _str(data, "role", chunk.role)
        chunk.agent = _str(data, "agent", chunk.agent)
        chunk.model = _str(data, "model", chunk.model)
        chunk.description = _str(data, "description", chunk.description)
        chunk.iteration = _int(data, "iteration", 1)
        chunk.attempt = _int(data, "attempt", 1)
        chunk.phase = _str(data, "phase")
        chunk.text = ""
        chunk.done = False
        chunk.usage = None
        chunk.cost_usd = None
        chunk.duration_s = None

    def _token_stream(self, data: dict[str, Any]) -> None:
        self._chunk(data).text += _str(data, "tokens")

    def _chunk_completed(self, data: dict[str, Any]) -> None:
        chunk = self._chunk(data)
        chunk.model = _str(data, "model", chunk.model)
        chunk.text = _str(data, "content", chunk.text)
        usage = _dict(data, "usage")
        prompt, completion = _int(usage, "prompt_tokens"), _int(usage, "completion_tokens")
        chunk.usage = (prompt, completion) if usage else None
        chunk.cost_usd = _float(data, "cost_usd")
        chunk.duration_s = _float(data, "duration_s")
        chunk.tests = _dict(data, "tests") or None
        chunk.done = True
        self.completions[chunk.chunk_id] += 1
        self.completed_chunks += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if chunk.cost_usd is None:
            self._cost_unknown = True
        else:
            self._spent += chunk.cost_usd

    def _system_message(self, data: dict[str, Any]) -> None:
        kind, message = _str(data, "kind"), _str(data, "message")
        self.messages.append((_str(data, "level", "info"), kind, message))
        if kind == "cache_hit":
            self.cache_hit = message
        if kind == "council":
            self.consensus = _dict(data, "details")

    def _task_completed(self, data: dict[str, Any]) -> None:
        self.final = data

    def _task_error(self, data: dict[str, Any]) -> None:
        self.error = data

    def _task_cancelled(self, data: dict[str, Any]) -> None:
        self.cancelled = _str(data, "reason", "cancelled")


# --- formatting --------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _cost(value: float | None) -> str:
    if value is None:
        return "unknown"
    if 0 < value < 0.0001:
        return f"${value:.6f}"
    return f"${value:.4f}"


def _tokens(prompt: int, completion: int) -> str:
    return f"tokens {prompt:,} in / {completion:,} out"


# --- streaming text: closed code fences become Syntax, the rest stays plain ---------------

_FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*$")


@dataclass
class _Segment:
    lines: list[str]
    language: str | None = None  # None: plain text; otherwise a closed code block


def _closes(line: str, fence: str) -> bool:
    closing = _FENCE_CLOSE.match(line)
    return bool(closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence))


def _segments(text: str) -> list[_Segment]:
    """Split text into plain runs and closed code blocks (fence lines dropped). An opening
    fence without its close stays plain, with everything after it."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    segments: list[_Segment] = []
    plain: list[str] = []
    index = 0
    while index < len(lines):
        opening = _FENCE_OPEN.match(lines[index])
        if opening and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            fence = opening["fence"]
            end = index + 1
            while end < len(lines) and not _closes(lines[end], fence):
                end += 1
            if end < len(lines):
                if plain:
                    segments.append(_Segment(plain))
                    plain = []
                words = opening["info"].split()
                segments.append(_Segment(lines[index + 1 : end], words[0] if words else "text"))
                index = end + 1
                continue
            plain.extend(lines[index:])
            break
        plain.append(lines[index])
        index += 1
    if plain:
        segments.append(_Segment(plain))
    return segments


def _tail(segments: list[_Segment], limit: int) -> tuple[list[_Segment], int]:
    """The last `limit` lines across segments, and how many earlier lines were left out."""
    total = sum(len(segment.lines) for segment in segments)
    kept: list[_Segment] = []
    room = max(limit, 0)
    for segment in reversed(segments):
        if room <= 0:
            break
        lines = segment.lines[-room:]
        kept.append(_Segment(lines, segment.language))
        room -= len(lines)
    kept.reverse()
    return kept, total - sum(len(segment.lines) for segment in kept)


def _render_text(text: str, tail_lines: int) -> list[RenderableType]:
    segments, hidden = _tail(_segments(text), tail_lines)
    parts: list[RenderableType] = []
    if hidden:
        parts.append(Text(f"… {hidden} earlier line{'s' if hidden != 1 else ''}", style="dim"))
    for segment in segments:
        body = "\n".join(segment.lines)
        if segment.language is None:
            parts.append(Text(body, overflow="fold"))
        else:
            parts.append(
                Syntax(
                    body,
                    segment.language,
                    theme=CODE_THEME,
                    word_wrap=True,
                    background_color="default",
                )
            )
    return parts


# --- live view ---------------------------------------------------------------------------


def _status(view: RunView) -> Text | None:
    if view.error is not None:
        return Text("✗ failed", style="bold red")
    if view.cancelled is not None:
        return Text("cancelled", style="bold yellow")
    if view.final is not None:
        return Text("✓ completed", style="bold green")
    return None


def _header(view: RunView, now: float | None) -> Panel:
    rows: list[RenderableType] = []
    if view.task:
        rows.append(Text(view.task, style="bold", overflow="ellipsis", no_wrap=True))

    elapsed = Text(_seconds(view.elapsed(now)))
    if view.estimated_time is not None and not view.finished:
        elapsed.append(f" (est. {_seconds(view.estimated_time)})", style="dim")
    total = str(view.total_chunks) if view.total_chunks else "?"
    stats = [
        elapsed,
        Text(f"chunks {view.completed_chunks}/{total}"),
        Text(f"est. {_cost(view.estimated_cost)}"),
        Text(f"spent {_cost(view.cost_usd)}"),
        Text(_tokens(view.prompt_tokens, view.completion_tokens)),
    ]
    status = _status(view)
    if status is not None:
        stats.append(status)
    row = Text()
    for number, stat in enumerate(stats):
        if number:
            row.append(" · ", style="dim")
        row.append_text(stat)
    rows.append(row)

    plan = view.plan_status()
    if plan:
        line = Text.assemble(("plan ", "dim"))
        marks = {"done": ("✓", "green"), "active": ("▸", "bold cyan"), "pending": ("·", "dim")}
        for number, (label, state) in enumerate(plan):
            mark, style = marks[state]
            line.append("  " if number else "")
            line.append(f"{label} {mark}", style=style)
        rows.append(line)

    if view.connection:
        rows.append(Text(view.connection, style="yellow"))
    if view.cache_hit:
        rows.append(Text(view.cache_hit, style="green"))
    warning = view.last_warning
    if warning:
        rows.append(Text(f"⚠ {warning}", style="yellow"))

    title = Text("facilitair", style="bold")
    ident = view.task_id or view.stream_id
    if ident:
        title.append(f" · {ident}", style="dim")
    return Panel(Group(*rows), title=title, title_align="left", border_style="blue")


def _chunk_title(chunk: ChunkView) -> Text:
    parts = [chunk.agent, chunk.model or "?", chunk.chunk_id]
    if chunk.iteration > 1:
        parts.append(f"round {chunk.iteration}")
    if chunk.attempt > 1:
        parts.append(f"attempt {chunk.attempt}")
    return Text(" · ".join(parts), style="bold")


def _chunk_panel(chunk: ChunkView, tail_lines: int) -> Panel:
    body: list[RenderableType]
    if chunk.text:
        body = _render_text(chunk.text, tail_lines)
    else:
        body = [Text(chunk.description or "thinking…", style="dim italic")]
    subtitle = Text(chunk.description, style="dim") if chunk.text and chunk.description else None
    return Panel(
        Group(*body),
        title=_chunk_title(chunk),
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        border_style="cyan",
    )


def _chunk_line(chunk: ChunkView) -> Text:
    parts = [chunk.agent]
    if chunk.iteration > 1:
        parts.append(f"round {chunk.iteration}")
    if chunk.model:
        parts.append(chunk.model)
    tests = chunk.tests
    if tests is not None:
        counts = {name: _int(tests, name) for name in ("passed", "failed", "errors")}
        parts.append(
            ", ".join(f"{n} {name}" for name, n in counts.items() if n or name == "passed")
        )
    elif chunk.usage is not None:
        parts.append(f"{sum(chunk.usage):,} tokens")
    if tests is None:
        parts.append(_cost(chunk.cost_usd) if chunk.cost_usd is not None else "cost unknown")
    if chunk.duration_s is not None:
        parts.append(_seconds(chunk.duration_s))
    failing = tests is not None and (_int(tests, "failed") or _int(tests, "errors"))
    mark = ("✗ ", "red") if failing else ("✓ ", "green")
    return Text.assemble(mark, (" · ".join(parts), "dim"))


def render_live(view: RunView, now: float | None = None, *, tail_lines: int = 12) -> RenderableType:
    """Header, one dim line per completed turn, then one panel per active turn: stacked, or
    side by side for council members answering or judging at once."""
    parts: list[RenderableType] = [_header(view, now)]
    chunks = list(view.chunks.values())
    parts.extend(_chunk_line(chunk) for chunk in chunks if chunk.done)
    if view.consensus:
        parts.append(ranking_table(view.consensus))
    active = [chunk for chunk in chunks if not chunk.done]
    panels = [_chunk_panel(chunk, tail_lines) for chunk in active]
    if len(active) > 1 and all(chunk.phase in ("propose", "review") for chunk in active):
        parts.append(Columns(panels, equal=True, expand=True))
    else:
        parts.extend(panels)
    return Group(*parts)


def ranking_table(consensus: dict[str, Any]) -> Table:
    """The council's ranking: place, member, model, mean rank; agreement and dissent below."""
    agreement = consensus.get("agreement")
    dissent = consensus.get("dissent")
    caption = "agreement (Kendall's W) " + (
        f"{agreement:.2f}" if isinstance(agreement, int | float) else "n/a"
    )
    if isinstance(dissent, dict) and dissent.get("member"):
        caption += f" · dissent: {dissent['member']}"
    table = Table("place", "member", "model", "mean rank", title="Council ranking", caption=caption)
    for place, row in enumerate(consensus.get("ranking") or [], 1):
        if isinstance(row, dict):
            rank = row.get("mean_rank")
            shown = f"{rank:.2f}" if isinstance(rank, int | float) else "?"
            table.add_row(str(place), str(row.get("member")), str(row.get("model")), shown)
    return table


# --- final result ------------------------------------------------------------------------


def _line_count(content: str) -> int:
    if not content:
        return 0
    return content.count("\n") + (0 if content.endswith("\n") else 1)


def _artifacts_table(artifacts: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Artifacts", title_justify="left", show_edge=False)
    table.add_column("path", style="bold")
    table.add_column("language")
    table.add_column("lines", justify="right")
    for artifact in artifacts:
        table.add_row(
            Text(_str(artifact, "path")),
            Text(_str(artifact, "language")),
            Text(str(_line_count(_str(artifact, "content")))),
        )
    return table


def _metrics_lines(metrics: dict[str, Any]) -> list[RenderableType]:
    parts = [
        _seconds(_float(metrics, "duration_s")),
        _cost(_float(metrics, "cost_usd")),
        _tokens(_int(metrics, "prompt_tokens"), _int(metrics, "completion_tokens")),
        f"{_int(metrics, 'llm_calls')} llm calls",
        f"{_int(metrics, 'iterations')} iterations",
    ]
    lines: list[RenderableType] = [Text(" · ".join(parts), style="dim")]
    if metrics.get("cached"):
        cached = "cached"
        similarity = _float(metrics, "similarity")
        if similarity is not None and similarity < 1:
            cached += f" (similarity {similarity:.2f})"
        saved = []
        if (saved_usd := _float(metrics, "saved_usd")) is not None:
            saved.append(_cost(saved_usd))
        if (saved_s := _float(metrics, "saved_s")) is not None:
            saved.append(f"~{_seconds(saved_s)}")
        if saved:
            cached += " · saved " + ", ".join(saved)
        lines.append(Text(cached, style="green"))
    return lines


def _final(final: dict[str, Any]) -> list[RenderableType]:
    parts: list[RenderableType] = [Markdown(_str(final, "content"), code_theme=CODE_THEME)]
    artifacts = [a for a in final.get("artifacts") or [] if isinstance(a, dict)]
    if artifacts:
        parts.extend([Text(""), _artifacts_table(artifacts)])
    metrics = _dict(final, "metrics")
    if metrics:
        parts.extend([Text(""), *_metrics_lines(metrics)])
    return parts


def _error_panel(error: dict[str, Any]) -> Panel:
    rows: list[RenderableType] = [Text(_str(error, "error", "The task failed."))]
    code = _str(error, "code")
    if code:
        rows.append(Text(f"code: {code}", style="dim"))
    if error.get("retryable") is True:
        rows.append(Text("retryable: running the task again may succeed", style="yellow"))
    return Panel(Group(*rows), title=Text("Task failed", style="bold"), border_style="red")


def render_final(view: RunView) -> RenderableType:
    """The result as Markdown with its artifacts and metrics, or why the task ended without."""
    parts: list[RenderableType] = []
    if view.final is not None:
        parts.extend(_final(view.final))
    if view.error is not None:
        parts.append(_error_panel(view.error))
    if view.cancelled is not None:
        parts.append(
            Panel(
                Text(view.cancelled),
                title=Text("Task cancelled", style="bold"),
                border_style="yellow",
            )
        )
    if not parts:
        parts.append(Text("The stream ended without a result.", style="yellow"))
    return Group(*parts)
