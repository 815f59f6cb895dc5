"""What an evaluation found: one record per (arm, problem), kept in a JSON file that a rerun
resumes from, and the per-arm summary printed as a table and written as Markdown."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


class Record(BaseModel):
    arm: str
    task_id: str
    passed: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    calls: int
    duration_s: float
    error: str | None = None
    note: str = ""
    code: str = ""  # what was submitted, to read why it failed

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Summary(BaseModel):
    arm: str
    problems: int
    passed: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    errors: int
    tokens: int
    tokens_per_problem: float
    calls_per_problem: float
    cost_usd: float | None
    seconds_per_problem: float
    wall_s: float


class Results(BaseModel):
    """The file `--out` names. `setup` says what was measured; a rerun with another setup is
    refused rather than mixed in."""

    setup: dict[str, Any]
    records: list[Record] = Field(default_factory=list)
    wall_s: dict[str, float] = Field(default_factory=dict)  # per arm, summed over reruns
    budget_tokens: int | None = None
    summary: list[Summary] = Field(default_factory=list)

    def done(self, arm: str) -> set[str]:
        return {record.task_id for record in self.records if record.arm == arm}

    def of(self, arm: str, task_ids: set[str]) -> list[Record]:
        return [r for r in self.records if r.arm == arm and r.task_id in task_ids]

    def summarize(self, arms: list[str], task_ids: set[str]) -> list[Summary]:
        """Per arm, over the problems of this run (a file may hold more, from a longer run)."""
        found = {arm: self.of(arm, task_ids) for arm in arms}
        return [_summary(arm, records, self.wall_s) for arm, records in found.items() if records]

    def mean_tokens(self, arm: str, task_ids: set[str]) -> float:
        records = self.of(arm, task_ids)
        return sum(r.tokens for r in records) / len(records) if records else 0.0

    def save(self, path: Path, arms: list[str], task_ids: set[str]) -> None:
        """Write the JSON atomically (an interrupted run never leaves half a file), and the
        Markdown table beside it."""
        self.summary = self.summarize(arms, task_ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(self.model_dump_json(indent=1), encoding="utf-8")
        os.replace(partial, path)
        path.with_suffix(".md").write_text(markdown(self), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Results | None:
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


def wilson_interval(passed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: unlike p ± z·√(p(1-p)/n) it stays inside
    [0, 1] and is not empty at 0 or n successes, which small runs hit often."""
    if total == 0:
        return 0.0, 0.0
    p = passed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _summary(arm: str, records: list[Record], wall_s: dict[str, float]) -> Summary:
    n = len(records)
    passed = sum(r.passed for r in records)
    low, high = wilson_interval(passed, n)
    tokens = sum(r.tokens for r in records)
    costs = [r.cost_usd for r in records]
    return Summary(
        arm=arm,
        problems=n,
        passed=passed,
        pass_at_1=passed / n,
        ci_low=low,
        ci_high=high,
        errors=sum(r.error is not None for r in records),
        tokens=tokens,
        tokens_per_problem=tokens / n,
        calls_per_problem=sum(r.calls for r in records) / n,
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        seconds_per_problem=sum(r.duration_s for r in records) / n,
        wall_s=wall_s.get(arm, 0.0),
    )


COLUMNS = (
    "arm",
    "pass@1",
    "95% CI",
    "passed",
    "errors",
    "tokens/problem",
    "calls/problem",
    "USD",
    "s/problem",
    "wall",
)


def summary_cells(summary: Summary) -> list[str]:
    cost = "unknown" if summary.cost_usd is None else f"${summary.cost_usd:.4f}"
    return [
        summary.arm,
        f"{summary.pass_at_1:.1%}",
        f"{summary.ci_low:.1%} – {summary.ci_high:.1%}",
        f"{summary.passed}/{summary.problems}",
        str(summary.errors),
        f"{summary.tokens_per_problem:,.0f}",
        f"{summary.calls_per_problem:.1f}",
        cost,
        f"{summary.seconds_per_problem:.1f}",
        f"{summary.wall_s:.0f} s",
    ]


def describe_models(models: dict[str, Any]) -> str:
    """{"coder": "m", "council": {"members": ["a", "b"]}} → "coder m; council: members a, b"."""

    def show(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{key} {show(item)}" for key, item in value.items())
        if isinstance(value, list):
            return ", ".join(show(item) for item in value)
        return str(value)

    return "; ".join(
        f"{key}: {show(value)}" if isinstance(value, dict) else f"{key} {show(value)}"
        for key, value in models.items()
    )


def markdown(results: Results) -> str:
    setup = results.setup
    lines = [
        f"# facilitair eval: {setup.get('problems', '?')}",
        "",
        f"Models: {describe_models(setup.get('models', {}))}; endpoint: {setup.get('endpoint')}.",
    ]
    if results.budget_tokens is not None:
        lines.append(f"Token budget per problem (--budget-match): {results.budget_tokens:,}.")
    lines += [
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(summary_cells(s)) + " |" for s in results.summary]
    return "\n".join(lines) + "\n"
