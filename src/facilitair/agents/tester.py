"""The Tester: runs the Python tests among the artifacts in the sandbox, as a turn of its own.

Its tokens are the test output as it comes; its chunk_completed carries
`tests: {passed, failed, errors, duration_s}`. Python only for now: other languages need their
own toolchains inside the sandbox. Without Python tests there is no turn, and the result says
the tests were not run.
"""

from __future__ import annotations

import posixpath
import time

from facilitair.agents.turns import FinishedTurn, TokenBatcher, TurnRunner
from facilitair.config import AgentConfig, TesterConfig
from facilitair.protocol.events import Artifact, ChunkStarted, TokenStream
from facilitair.sandbox import SandboxRun, run_pytest

CHUNK_ID = "tests"
ROLE = "tester"


def tests_enabled(config: AgentConfig) -> bool:
    setting = config.workflow.tester.enabled
    if setting != "auto":
        return setting == "on"
    return not any(role.model == config.local.model for role in config.roles.values())


TEST_OUTPUT_TAIL = 3000  # characters of test output a prompt carries (the end: the failures)


def describe_tests(tests: SandboxRun | None) -> str:
    """What a prompt says of a test run: the summary and the end of the output."""
    if tests is None:
        return "not run"
    tail = tests.output[-TEST_OUTPUT_TAIL:]
    return f"The tests ran: {tests.summary()}.\n```\n{tail}\n```"


def has_python_tests(files: dict[str, Artifact]) -> bool:
    names = [posixpath.basename(path) for path in files if path.endswith(".py")]
    return any(n.startswith("test_") or n.endswith("_test.py") for n in names)


class Tester:
    def __init__(self, turns: TurnRunner, config: TesterConfig) -> None:
        self.turns = turns
        self.limits = config.limits

    async def run(self, files: dict[str, Artifact], iteration: int) -> SandboxRun | None:
        """None when there is nothing to run (the result then says so)."""
        emit = self.turns.emit
        if not has_python_tests(files):
            return None
        totals = self.turns.totals
        totals.total_chunks += 1
        number = totals.next_chunk_number()
        description = f"Run the tests (round {iteration})"
        await emit(
            ChunkStarted(
                chunk_id=CHUNK_ID,
                chunk_number=number,
                role=ROLE,
                agent="Tester",
                model="pytest",
                description=description,
                iteration=iteration,
            )
        )

        async def send(text: str) -> None:
            await emit(TokenStream(chunk_id=CHUNK_ID, tokens=text, role=ROLE, agent="Tester"))

        batcher = TokenBatcher(send, self.turns.verbosity)
        began = time.monotonic()
        try:
            result = await run_pytest(
                {path: artifact.content for path, artifact in files.items()},
                self.limits,
                batcher.add,
            )
        finally:
            await batcher.close()
        content = result.output + ("\n[output cut]\n" if result.truncated else "")
        await self.turns.finish(
            FinishedTurn(
                chunk_id=CHUNK_ID,
                chunk_number=number,
                role=ROLE,
                agent="Tester",
                model="pytest",
                description=description,
                iteration=iteration,
                content=content + f"\n{result.summary()}\n",
                duration_s=round(time.monotonic() - began, 3),
                tests={
                    "passed": result.passed,
                    "failed": result.failed,
                    "errors": result.errors,
                    "duration_s": result.duration_s,
                },
            )
        )
        return result
