"""Running an answer in the sandbox: against its prompt's examples (which agents may use), and
against the problem's hidden tests (which only score it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from facilitair.evaluation.problems import (
    Problem,
    example_test_files,
    hidden_test_files,
    prompt_examples,
)
from facilitair.sandbox import Limits, SandboxRun, run_pytest

FEEDBACK_CHARS = 3000  # of a failing run's output, shown to a model that repairs its answer


@dataclass(frozen=True)
class ExampleCheck:
    passed: int
    total: int
    output: str  # what pytest printed (the end of it, when long)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total


class Checker:
    """Runs answers in the sandbox, at most `concurrency` at a time (each run is a Python
    process doing real work; more than the machine's cores only makes them all slower)."""

    def __init__(self, limits: Limits, concurrency: int) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(concurrency)

    async def _run(self, files: dict[str, str]) -> SandboxRun:
        async with self._slots:
            return await run_pytest(files, self.limits)

    async def examples(self, problem: Problem, code: str) -> ExampleCheck:
        examples = prompt_examples(problem)
        total = max(1, len(examples))  # with none: one test that the function is defined
        run = await self._run(example_test_files(problem, code, examples))
        output = run.output if len(run.output) <= FEEDBACK_CHARS else run.output[-FEEDBACK_CHARS:]
        if run.timed_out:
            output += f"\n(stopped: the examples ran longer than {self.limits.wall_s:g} s)"
        return ExampleCheck(passed=min(run.passed, total), total=total, output=output.strip())

    async def hidden(self, problem: Problem, code: str, support: dict[str, str]) -> bool:
        run = await self._run(hidden_test_files(problem, code, support))
        return run.ok
