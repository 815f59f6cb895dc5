"""Run arms over problems: each answer scored on the hidden tests, every record saved as it
lands so an interrupted evaluation resumes where it stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facilitair.evaluation.arms import WORKFLOWS, Arm
from facilitair.evaluation.checks import Checker
from facilitair.evaluation.problems import Problem
from facilitair.evaluation.results import Record, Results


class SetupChanged(ValueError):
    """The results file was measured with other models or problems."""


@dataclass(frozen=True)
class Plan:
    arms: list[str]
    concurrency: int
    budget_match: bool
    out: Path


OnStart = Callable[[str, int, int], None]  # arm, problems in all, already done
OnRecord = Callable[[Record], None]


def open_results(path: Path, setup: dict[str, object]) -> Results:
    """The results so far at `path`, or new ones; refuses a file made with another setup."""
    results = Results.load(path)
    if results is None:
        return Results(setup=dict(setup))
    if results.setup != setup:
        keys = {*setup, *results.setup}
        changed = sorted(k for k in keys if setup.get(k) != results.setup.get(k))
        raise SetupChanged(
            f"{path} was measured with different {', '.join(changed)}; give another --out "
            "(or delete it) to start over"
        )
    return results


def run_order(arms: list[str], budget_match: bool) -> list[str]:
    """With --budget-match the workflows run first: their spend sets the budget."""
    if not budget_match:
        return arms
    return [a for a in arms if a in WORKFLOWS] + [a for a in arms if a not in WORKFLOWS]


def budget_from(results: Results, task_ids: set[str]) -> int:
    spends = [results.mean_tokens(arm, task_ids) for arm in WORKFLOWS if results.of(arm, task_ids)]
    if not spends:
        raise ValueError("--budget-match takes its budget from sequential or council: add one")
    return round(max(spends))


async def evaluate(
    problems: list[Problem],
    arms: dict[str, Arm],
    checker: Checker,
    results: Results,
    plan: Plan,
    on_start: OnStart,
    on_record: OnRecord,
) -> Results:
    task_ids = {problem.task_id for problem in problems}
    for name in run_order(plan.arms, plan.budget_match):
        budget: int | None = None
        if plan.budget_match and name not in WORKFLOWS:
            budget = results.budget_tokens = budget_from(results, task_ids)
        done = results.done(name)
        todo = [problem for problem in problems if problem.task_id not in done]
        on_start(name, len(problems), len(problems) - len(todo))
        await _run_arm(arms[name], todo, task_ids, budget, checker, results, plan, on_record)
    results.save(plan.out, plan.arms, task_ids)
    return results


async def _run_arm(
    arm: Arm,
    problems: list[Problem],
    task_ids: set[str],
    budget: int | None,
    checker: Checker,
    results: Results,
    plan: Plan,
    on_record: OnRecord,
) -> None:
    slots = asyncio.Semaphore(plan.concurrency)
    began = time.monotonic()
    earlier = results.wall_s.get(arm.name, 0.0)

    async def score(problem: Problem) -> None:
        async with slots:
            start = time.monotonic()
            attempt = await arm.solve(problem, budget)
            passed = False
            if attempt.error is None and attempt.code:
                passed = await checker.hidden(problem, attempt.code, attempt.support)
            record = Record(
                arm=arm.name,
                task_id=problem.task_id,
                passed=passed,
                prompt_tokens=attempt.spend.prompt_tokens,
                completion_tokens=attempt.spend.completion_tokens,
                cost_usd=attempt.spend.cost_usd,
                calls=attempt.spend.calls,
                duration_s=round(time.monotonic() - start, 3),
                error=attempt.error,
                note=attempt.note,
                code=attempt.code,
            )
        results.records.append(record)
        results.wall_s[arm.name] = round(earlier + time.monotonic() - began, 3)
        results.save(plan.out, plan.arms, task_ids)
        on_record(record)

    await asyncio.gather(*(score(problem) for problem in problems))
