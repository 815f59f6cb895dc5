"""The Rich live view of `facilitair run`: scripted event sequences, rendered to plain text."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, RenderableType

from facilitair.cli.view import RunView, render_final, render_live

T0 = 1000.0  # the view's started_at; renders pass now=T0 + elapsed


class Script:
    """Feeds a RunView the events of one stream, with the envelope fields every event has."""

    def __init__(self, task: str = "Build a todo CLI") -> None:
        self.view = RunView(task, started_at=T0)
        self.seq = 0

    def __call__(self, event: str, **fields: Any) -> Script:
        self.seq += 1
        data = {"stream_id": "s-1", "seq": self.seq, "timestamp": "2024-01-01T00:00:00.000Z"}
        self.view.apply(event, {**data, **fields})
        return self

    def progress(self, total: int = 6, done: int = 0, cost: float | None = 0.0026) -> Script:
        plan = [
            {"chunk_id": "architect", "role": "architect", "description": "Plan", "model": "m"},
            {"chunk_id": "c1", "role": "coder", "description": "Core", "model": "m"},
            {"chunk_id": "c2", "role": "coder", "description": "CLI", "model": "m"},
        ]
        return self(
            "task_progress",
            total_chunks=total,
            completed_chunks=done,
            estimated_time=40.0,
            estimated_cost=cost,
            plan=plan,
        )

    def started(
        self, chunk_id: str, agent: str = "", iteration: int = 1, attempt: int = 1
    ) -> Script:
        return self(
            "chunk_started",
            chunk_id=chunk_id,
            chunk_number=1,
            role="coder",
            agent=agent or f"Coder {chunk_id}",
            model="gpt-4o-mini",
            description=f"Implement {chunk_id}",
            iteration=iteration,
            attempt=attempt,
        )

    def tokens(self, chunk_id: str, tokens: str) -> Script:
        return self(
            "token_stream",
            chunk_id=chunk_id,
            tokens=tokens,
            role="coder",
            agent=f"Coder {chunk_id}",
        )

    def completed(
        self, chunk_id: str, content: str = "done", cost: float | None = 0.0004, prompt: int = 500
    ) -> Script:
        return self(
            "chunk_completed",
            chunk_id=chunk_id,
            chunk_number=1,
            role="coder",
            agent=f"Coder {chunk_id}",
            model="gpt-4o-mini",
            content=content,
            usage={"prompt_tokens": prompt, "completion_tokens": 312},
            cost_usd=cost,
            duration_s=3.2,
        )


def text(renderable: RenderableType) -> str:
    console = Console(
        file=io.StringIO(), record=True, width=100, color_system=None, force_terminal=False
    )
    console.print(renderable)
    return console.export_text()


def live(script: Script, elapsed: float = 12.3, tail_lines: int = 12) -> str:
    return text(render_live(script.view, now=T0 + elapsed, tail_lines=tail_lines))


def panel_of(output: str, title: str) -> str:
    """The lines of the panel whose top border carries `title`, up to its bottom border."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line and "╭" in line)
    end = next(i for i in range(start + 1, len(lines)) if "╰" in lines[i])
    return "\n".join(lines[start : end + 1])


# --- header ------------------------------------------------------------------------------


def test_header_shows_elapsed_progress_costs_and_tokens() -> None:
    script = Script().progress(total=6).started("c1").completed("c1").started("c2")
    script.started("c3").completed("c3", cost=0.0007)
    out = live(script)
    assert "Build a todo CLI" in out
    assert "12.3 s" in out
    assert "chunks 2/6" in out
    assert "est. $0.0026 · spent $0.0011" in out
    assert "tokens 1,000 in / 624 out" in out
    view = script.view
    assert view.stream_id == "s-1" and view.completed_chunks == 2
    assert view.cost_usd is not None and abs(view.cost_usd - 0.0011) < 1e-9
    assert (view.prompt_tokens, view.completion_tokens) == (1000, 624)


def test_unknown_costs_render_as_unknown() -> None:
    script = Script().progress(cost=None).started("c1").completed("c1", cost=None)
    script.started("c2").completed("c2", cost=0.001)
    assert script.view.cost_usd is None
    out = live(script)
    assert "est. unknown · spent unknown" in out
    assert "cost unknown" in out


def test_connection_note_cache_hit_and_last_warning() -> None:
    script = Script()
    script("system_message", message="Coder: stream broke; retrying", level="warning", kind="retry")
    script("system_message", message="Budget almost used", level="warning", kind="budget")
    script(
        "system_message", message="Served from cache (saved $0.02)", level="info", kind="cache_hit"
    )
    script.view.set_connection("reconnecting (attempt 2/5)…")
    out = live(script)
    assert "reconnecting (attempt 2/5)…" in out
    assert "Served from cache (saved $0.02)" in out
    assert "Budget almost used" in out
    assert "stream broke" not in out  # only the last warning
    assert script.view.cache_hit == "Served from cache (saved $0.02)"
    script.view.set_connection(None)
    assert "reconnecting" not in live(script)


def test_plan_line_marks_done_and_active_chunks() -> None:
    script = Script().progress()
    script("chunk_started", chunk_id="architect", agent="Architect", model="m", description="Plan")
    script("chunk_completed", chunk_id="architect", agent="Architect", model="m", content="x")
    script.started("c1")
    assert script.view.plan_status() == [("architect", "done"), ("c1", "active"), ("c2", "pending")]
    assert "plan architect ✓  c1 ▸  c2 ·" in live(script)


def test_elapsed_freezes_when_the_stream_ends() -> None:
    view = RunView(started_at=T0)
    view.apply("task_cancelled", {"reason": "stopped"}, now=T0 + 5)
    assert view.finished
    assert view.elapsed(now=T0 + 60) == 5.0


# --- agent panels ------------------------------------------------------------------------


def test_interleaved_coders_get_their_own_panels() -> None:
    script = Script().progress().started("c1").started("c2")
    script.tokens("c1", "alpha one\n").tokens("c2", "beta one\n")
    script.tokens("c1", "alpha two\n").tokens("c2", "beta two\n")
    out = live(script)
    first = panel_of(out, "Coder c1 · gpt-4o-mini · c1")
    second = panel_of(out, "Coder c2 · gpt-4o-mini · c2")
    assert "alpha one" in first and "alpha two" in first and "beta" not in first
    assert "beta one" in second and "beta two" in second and "alpha" not in second
    assert out.index("alpha one") < out.index("beta one")  # stacked in start order


def test_council_members_answering_at_once_sit_side_by_side() -> None:
    script = Script().progress()
    for n in (1, 2, 3):
        script(
            "chunk_started",
            chunk_id=f"propose-{n}",
            chunk_number=n,
            role="member",
            agent=f"Member {n}",
            model="m",
            description="Answer",
            phase="propose",
            member=f"Member {n}",
        )
        script.tokens(f"propose-{n}", f"answer {n}\n")
    out = live(script)
    row = next(line for line in out.splitlines() if "Member 1" in line)
    assert "Member 2" in row and "Member 3" in row  # one row of panels, not a stack
    assert next(line for line in out.splitlines() if "answer 1" in line).count("answer") == 3

    # When the review is over, the ranking shows as a table.
    consensus = {
        "ranking": [
            {"member": "Member 2", "model": "model-b", "mean_rank": 1.0},
            {"member": "Member 1", "model": "model-a", "mean_rank": 2.0},
        ],
        "agreement": 0.75,
        "dissent": {"member": "Member 3", "reasons": {}},
    }
    script("system_message", message="Council ranking: …", kind="council", details=consensus)
    out = live(script)
    assert "Council ranking" in out
    first = next(line for line in out.splitlines() if "model-b" in line)
    assert "1" in first and "Member 2" in first and "1.00" in first
    assert "agreement (Kendall's W) 0.75 · dissent: Member 3" in " ".join(out.split())


def test_completed_chunk_collapses_to_one_line() -> None:
    script = Script().progress().started("c1").tokens("c1", "streaming body\n")
    assert "Coder c1 · gpt-4o-mini · c1" in live(script)
    script.completed("c1", content="final body")
    out = live(script)
    assert "✓ Coder c1 · gpt-4o-mini · 812 tokens · $0.0004 · 3.2 s" in out
    assert "╭" not in out.split("\n", 1)[1].split("╰", 1)[1]  # no panel after the header
    assert "streaming body" not in out and "final body" not in out
    chunk = script.view.chunks["c1"]
    assert chunk.done and chunk.text == "final body" and chunk.usage == (500, 312)


def test_a_test_run_collapses_to_its_counts() -> None:
    def tester(round_number: int, tests: dict[str, float]) -> None:
        script(
            "chunk_started",
            chunk_id="tests",
            chunk_number=3,
            role="tester",
            agent="Tester",
            model="pytest",
            description="Run the tests",
            iteration=round_number,
        )
        script(
            "chunk_completed",
            chunk_id="tests",
            chunk_number=3,
            role="tester",
            agent="Tester",
            model="pytest",
            content="...",
            usage={"prompt_tokens": 0, "completion_tokens": 0},
            cost_usd=0.0,
            duration_s=0.8,
            tests=tests,
        )

    script = Script()
    tester(1, {"passed": 2, "failed": 1, "errors": 0, "duration_s": 0.7})
    assert "✗ Tester · pytest · 2 passed, 1 failed · 0.8 s" in live(script)
    tester(2, {"passed": 3, "failed": 0, "errors": 0, "duration_s": 0.7})
    assert "✓ Tester · round 2 · pytest · 3 passed · 0.8 s" in live(script)


def test_revision_resets_the_text() -> None:
    script = Script().started("c1").tokens("c1", "first draft\n").completed("c1", "first draft")
    script.started("c1", iteration=2).tokens("c1", "second draft\n")
    out = live(script)
    assert "Coder c1 · gpt-4o-mini · c1 · round 2" in out
    assert "second draft" in out and "first draft" not in out
    assert script.view.chunks["c1"].text == "second draft\n"
    assert not script.view.chunks["c1"].done


def test_restarted_attempt_resets_the_text() -> None:
    script = Script().started("c1").tokens("c1", "broken half\n")
    script.started("c1", attempt=2).tokens("c1", "clean start\n")
    out = live(script)
    assert "clean start" in out and "broken half" not in out
    assert "attempt 2" in out


def test_tokens_for_an_unknown_chunk_create_it() -> None:
    script = Script().tokens("c9", "orphan tokens\n")
    assert script.view.chunks["c9"].agent == "Coder c9"
    assert "orphan tokens" in live(script)


def test_long_text_shows_only_the_tail() -> None:
    body = "".join(f"line {n:02d}\n" for n in range(1, 31))
    out = live(Script().started("c1").tokens("c1", body), tail_lines=5)
    assert "line 30" in out and "line 26" in out
    assert "line 25" not in out and "line 01" not in out
    assert "25 earlier lines" in out


def test_closed_fence_is_code_and_open_fence_stays_plain() -> None:
    body = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nand now\n```js\nconst x"
    out = live(Script().started("c1").tokens("c1", body))
    assert "def add(a, b):" in out and "return a + b" in out
    assert "```python" not in out  # a closed block is rendered as code, without its fences
    assert "```js" in out and "const x" in out  # the unclosed rest is shown as it arrived


def test_markup_in_model_output_is_literal() -> None:
    script = Script().started("c1", agent="[bold]Coder[/bold]")
    script.tokens("c1", "use [red]x[/red] here\n")
    out = live(script)
    assert "[red]x[/red]" in out
    assert "[bold]Coder[/bold]" in out


# --- final result ------------------------------------------------------------------------

METRICS = {
    "duration_s": 42.5,
    "cost_usd": 0.0042,
    "prompt_tokens": 3000,
    "completion_tokens": 1200,
    "llm_calls": 7,
    "iterations": 2,
    "cached": False,
}


def test_final_result_markdown_artifacts_and_metrics() -> None:
    script = Script()
    script(
        "task_completed",
        content="# Todo CLI\n\nRun **it** with [bold]care[/bold].\n\n```python\nprint('hi')\n```\n",
        artifacts=[
            {"path": "todo/cli.py", "language": "python", "content": "a\nb\nc\n"},
            {"path": "README.md", "language": "markdown", "content": "# Todo"},
        ],
        metrics=METRICS,
    )
    assert script.view.finished
    out = text(render_final(script.view))
    assert "Todo CLI" in out and "# Todo CLI" not in out  # a Markdown heading, not raw text
    assert "[bold]care[/bold]" in out
    assert "print('hi')" in out
    assert "todo/cli.py" in out and "README.md" in out
    assert "42.5 s · $0.0042 · tokens 3,000 in / 1,200 out · 7 llm calls · 2 iterations" in out
    assert "✓ completed" in live(script)


def test_cached_result_shows_savings() -> None:
    metrics = {**METRICS, "cached": True, "similarity": 1.0, "saved_usd": 0.0042, "saved_s": 35.0}
    script = Script()("task_completed", content="cached answer", artifacts=[], metrics=metrics)
    out = text(render_final(script.view))
    assert "cached answer" in out
    assert "cached · saved $0.0042, ~35.0 s" in out


def test_error_panel_shows_message_and_code() -> None:
    script = Script().started("c1")
    script(
        "task_error",
        error="The model provider is unavailable.",
        code="upstream_unavailable",
        retryable=True,
    )
    out = text(render_final(script.view))
    assert "Task failed" in out
    assert "The model provider is unavailable." in out
    assert "upstream_unavailable" in out
    assert "retryable" in out
    assert "✗ failed" in live(script)


def test_cancelled_panel_shows_the_reason() -> None:
    script = Script()("task_cancelled", reason="cancelled by the client")
    assert script.view.cancelled == "cancelled by the client"
    out = text(render_final(script.view))
    assert "Task cancelled" in out and "cancelled by the client" in out


# --- protocol details --------------------------------------------------------------------


def test_unknown_events_and_heartbeats_are_ignored() -> None:
    script = Script().started("c1")
    script("heartbeat")
    script("something_new", chunk_id="c1", tokens="nope")
    assert script.view.chunks["c1"].text == ""


def test_replayed_events_are_not_applied_twice() -> None:
    script = Script().started("c1")
    tokens = {"stream_id": "s-1", "seq": 2, "chunk_id": "c1", "tokens": "once\n"}
    script.view.apply("token_stream", tokens)
    script.view.apply("token_stream", tokens)  # a replay after reconnecting
    assert script.view.chunks["c1"].text == "once\n"
    assert script.view.last_seq == 2
