"""The sequential workflow (SPEC §6): Architect → Coders (concurrent where the plan allows) →
Reviewer ⇄ Coders (bounded) → Documenter."""

from __future__ import annotations

import asyncio
import math

from facilitair.agents.parsing import (
    FENCE,
    PlanChunk,
    ReviewIssue,
    Verdict,
    extract_artifacts,
    parse_plan,
    parse_verdict,
    plan_design,
)
from facilitair.agents.tester import Tester, describe_tests, tests_enabled
from facilitair.agents.turns import Emit, TurnResult, TurnRunner
from facilitair.agents.workflow import WorkflowOutcome
from facilitair.agents.workflow import task_text as workflow_task_text
from facilitair.config import AgentConfig, SequentialConfig
from facilitair.llm.base import ChatMessage
from facilitair.protocol.api import TaskRequest
from facilitair.protocol.events import Artifact, PlanItem, SystemMessage, TaskProgress
from facilitair.sandbox import SandboxRun


def _issue_lines(verdict: Verdict, severities: set[str]) -> str:
    return "\n".join(
        f"- [{issue.severity}] {issue.description}"
        for issue in verdict.issues
        if issue.severity in severities
    )


class SequentialWorkflow:
    ROLES = ("architect", "coder", "reviewer", "documenter")

    def __init__(self, turns: TurnRunner, config: AgentConfig, emit: Emit) -> None:
        self.turns = turns
        self.config = config
        self.settings: SequentialConfig = config.workflow.sequential
        self.emit = emit
        self.blocking = set(self.settings.blocking_severities)
        self.extra_turns = 0  # JSON retries: turns the plan did not foresee
        self.tester = Tester(turns, config.workflow.tester) if tests_enabled(config) else None
        self.tests: SandboxRun | None = None  # the latest run

    # --- plan and estimates -------------------------------------------------------------

    def _item(self, chunk_id: str, role: str, description: str) -> PlanItem:
        return PlanItem(
            chunk_id=chunk_id,
            role=role,
            description=description,
            model=self.turns.model_for(role),
        )

    def _plan_items(
        self, chunks: list[PlanChunk] | None, revisions: list[str], review_rounds: int = 1
    ) -> list[PlanItem]:
        """Every turn of the run as now planned, done or not, in order."""
        coding = chunks or [PlanChunk(id="code", description="Implementation")]
        return [
            self._item("architect", "architect", "Design and plan"),
            *[self._item(chunk.id, "coder", chunk.description) for chunk in coding],
            *[self._item(chunk_id, "coder", "Revision after review") for chunk_id in revisions],
            *[
                self._item("review", "reviewer", f"Review round {n + 1}")
                for n in range(review_rounds)
            ],
            self._item("docs", "documenter", "README"),
        ]

    async def _progress(self, plan: list[PlanItem], remaining: list[PlanItem]) -> None:
        totals = self.turns.totals
        totals.total_chunks = len(plan) + self.extra_turns
        seconds, cost = self._estimate(remaining)
        await self.emit(
            TaskProgress(
                total_chunks=totals.total_chunks,
                completed_chunks=totals.completed_chunks,
                estimated_time=round(seconds, 1),
                estimated_cost=round(cost, 6) if cost is not None else None,
                plan=plan,
            )
        )

    def _estimate(self, items: list[PlanItem]) -> tuple[float, float | None]:
        """Seconds and USD for the turns still to run, from each role's expected output size,
        the models' speeds and prices. Coders overlap up to max_concurrent_coders."""
        seconds = 0.0
        cost: float | None = 0.0
        coder_seconds: list[float] = []
        for item in items:
            role = self.config.roles[item.role]
            produced = role.expected_tokens
            prompt = produced * 2 + 300
            turn_seconds = produced / self.config.tokens_per_second(item.model)
            if item.role == "coder":
                coder_seconds.append(turn_seconds)
            else:
                seconds += turn_seconds
            price = self.config.price_usd(item.model, prompt, produced)
            cost = None if price is None or cost is None else cost + price
        if coder_seconds:
            waves = math.ceil(len(coder_seconds) / self.settings.max_concurrent_coders)
            seconds += waves * max(coder_seconds)
        return seconds, cost

    # --- the run ------------------------------------------------------------------------

    async def run(self, request: TaskRequest) -> WorkflowOutcome:
        task_text = workflow_task_text(request)
        plan_view = self._plan_items(None, [])
        await self._progress(plan_view, plan_view)

        design, chunks = await self._plan(task_text)
        plan_view = self._plan_items(chunks, [])
        await self._progress(plan_view, plan_view[1:])

        design_text = plan_design(design.content)
        code = await self._implement(task_text, design_text, chunks)
        verdict, iterations = await self._review_loop(task_text, design_text, chunks, code)
        files = self._collect_files(chunks, code)
        docs = await self.turns.run(
            role_key="documenter",
            chunk_id="docs",
            agent=self._agent("documenter"),
            description="README",
            messages=self._docs_messages(task_text, design_text, files),
        )
        readme = docs.content.strip()
        artifacts = list(files.values())
        if readme:
            artifacts = [a for a in artifacts if a.path != "README.md"]
            artifacts.append(Artifact(path="README.md", language="markdown", content=readme + "\n"))
        content = self._final_markdown(request.task, design_text, artifacts, verdict, readme)
        return WorkflowOutcome(content=content, artifacts=artifacts, iterations=iterations)

    async def _test(self, chunks: list[PlanChunk], code: dict[str, str], iteration: int) -> None:
        if self.tester is not None:
            self.tests = await self.tester.run(self._collect_files(chunks, code), iteration)

    def _add_unplanned_turn(self) -> None:
        self.extra_turns += 1
        self.turns.totals.total_chunks += 1

    def _agent(self, role_key: str, chunk_id: str | None = None) -> str:
        name = self.config.roles[role_key].name
        return f"{name} {chunk_id}" if chunk_id else name

    def _system(self, role_key: str) -> ChatMessage:
        return ChatMessage("system", self.config.roles[role_key].system_prompt.strip())

    async def _plan(self, task_text: str) -> tuple[TurnResult, list[PlanChunk]]:
        messages = [self._system("architect"), ChatMessage("user", task_text)]
        design = await self.turns.run(
            role_key="architect",
            chunk_id="architect",
            agent=self._agent("architect"),
            description="Design and plan",
            messages=messages,
        )
        chunks = parse_plan(design.content, self.settings.max_plan_chunks)
        if chunks is None:
            await self.emit(
                SystemMessage(
                    message="The Architect's plan was not valid JSON; asking once more",
                    level="warning",
                    kind="invalid_json",
                )
            )
            retry_prompt = self.config.roles["architect"].json_retry_prompt.strip()
            self._add_unplanned_turn()
            retry = await self.turns.run(
                role_key="architect",
                chunk_id="architect",
                agent=self._agent("architect"),
                description="Plan as JSON",
                iteration=2,
                messages=[
                    *messages,
                    ChatMessage("assistant", design.content),
                    ChatMessage("user", retry_prompt),
                ],
            )
            chunks = parse_plan(retry.content, self.settings.max_plan_chunks)
        if chunks is None:
            await self.emit(
                SystemMessage(
                    message="No usable plan from the Architect; implementing the task as one chunk",
                    level="warning",
                    kind="fallback",
                )
            )
            chunks = [PlanChunk(id="c1", description="Implement the whole task as designed")]
        return design, chunks

    def _coder_messages(
        self, task_text: str, design: str, chunk: PlanChunk, code: dict[str, str]
    ) -> list[ChatMessage]:
        deps = "\n\n".join(f"### Chunk {d}\n{code[d]}" for d in chunk.depends_on if d in code)
        user = (
            f"{task_text}\n\n## Design\n{design}\n\n"
            f"## Your chunk: {chunk.id}\n{chunk.description}"
            + (f"\n\n## Chunks it builds on\n{deps}" if deps else "")
        )
        return [self._system("coder"), ChatMessage("user", user)]

    async def _implement(
        self, task_text: str, design: str, chunks: list[PlanChunk]
    ) -> dict[str, str]:
        """Run every chunk as soon as its dependencies are done, a few at a time."""
        code: dict[str, str] = {}
        pending = {chunk.id: chunk for chunk in chunks}
        running: dict[asyncio.Task[TurnResult], str] = {}
        limit = self.settings.max_concurrent_coders
        try:
            while pending or running:
                for chunk_id, chunk in list(pending.items()):
                    if len(running) >= limit:
                        break
                    if all(d in code for d in chunk.depends_on):
                        del pending[chunk_id]
                        turn = self.turns.run(
                            role_key="coder",
                            chunk_id=chunk_id,
                            agent=self._agent("coder", chunk_id),
                            description=chunk.description,
                            messages=self._coder_messages(task_text, design, chunk, code),
                        )
                        running[asyncio.create_task(turn)] = chunk_id
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    chunk_id = running.pop(task)
                    code[chunk_id] = task.result().content  # raises the turn's failure
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        return code

    async def _review_loop(
        self,
        task_text: str,
        design: str,
        chunks: list[PlanChunk],
        code: dict[str, str],
    ) -> tuple[Verdict | None, int]:
        revisions: list[str] = []
        iteration = 1
        while True:
            await self._test(chunks, code, iteration)
            verdict = await self._review(task_text, design, code, iteration)
            blocking = [i for i in verdict.issues if i.severity in self.blocking] if verdict else []
            failing = self.tests is not None and not self.tests.ok
            if failing and verdict is not None:
                # Failing tests block whatever the Reviewer thought: their output goes to the
                # coders as the first issue of the revision.
                issue = ReviewIssue(severity="blocker", description=describe_tests(self.tests))
                verdict = verdict.model_copy(update={"issues": [issue, *verdict.issues]})
                blocking = [issue, *blocking]
            if verdict is None or (verdict.approved and not blocking):
                return verdict, iteration
            if iteration > self.settings.max_review_iterations:
                await self.emit(
                    SystemMessage(
                        message=f"The Reviewer still reports {len(blocking) or 'unresolved'} "
                        f"issue(s) after {iteration - 1} revision round(s); delivering as is",
                        level="warning",
                        kind="review",
                    )
                )
                return verdict, iteration
            targets = sorted({i.chunk_id for i in blocking if i.chunk_id in code}) or list(code)
            iteration += 1
            revisions.extend(targets)
            remaining = [
                *[self._item(cid, "coder", "Revision after review") for cid in targets],
                self._item("review", "reviewer", f"Review round {iteration}"),
                self._item("docs", "documenter", "README"),
            ]
            await self._progress(self._plan_items(chunks, revisions, iteration), remaining)
            await self._revise(task_text, design, chunks, code, verdict, targets, iteration)

    async def _review(
        self, task_text: str, design: str, code: dict[str, str], iteration: int
    ) -> Verdict | None:
        body = "\n\n".join(f"### Chunk {cid}\n{text}" for cid, text in code.items())
        tested = f"\n\n## Test results\n{describe_tests(self.tests)}" if self.tests else ""
        messages = [
            self._system("reviewer"),
            ChatMessage(
                "user",
                f"{task_text}\n\n## Design\n{design}\n\n## Implementation\n{body}{tested}",
            ),
        ]
        result = await self.turns.run(
            role_key="reviewer",
            chunk_id="review",
            agent=self._agent("reviewer"),
            description=f"Review round {iteration}",
            messages=messages,
            iteration=iteration,
        )
        verdict = parse_verdict(result.content)
        if verdict is None:
            await self.emit(
                SystemMessage(
                    message="The Reviewer's verdict was not valid JSON; asking once more",
                    level="warning",
                    kind="invalid_json",
                )
            )
            self._add_unplanned_turn()
            retry = await self.turns.run(
                role_key="reviewer",
                chunk_id="review",
                agent=self._agent("reviewer"),
                description="Verdict as JSON",
                iteration=iteration,
                messages=[
                    *messages,
                    ChatMessage("assistant", result.content),
                    ChatMessage("user", self.config.roles["reviewer"].json_retry_prompt.strip()),
                ],
            )
            verdict = parse_verdict(retry.content)
        if verdict is None:
            await self.emit(
                SystemMessage(
                    message="No usable verdict from the Reviewer; the code is delivered unreviewed",
                    level="warning",
                    kind="fallback",
                )
            )
        return verdict

    async def _revise(
        self,
        task_text: str,
        design: str,
        chunks: list[PlanChunk],
        code: dict[str, str],
        verdict: Verdict,
        targets: list[str],
        iteration: int,
    ) -> None:
        by_id = {chunk.id: chunk for chunk in chunks}
        prompt = self.config.roles["coder"].revise_prompt

        async def revise(chunk_id: str) -> tuple[str, str]:
            own = [i for i in verdict.issues if i.chunk_id in (chunk_id, None)]
            issues = _issue_lines(Verdict(approved=False, issues=own), self.blocking)
            messages = [
                *self._coder_messages(task_text, design, by_id[chunk_id], code),
                ChatMessage("assistant", code[chunk_id]),
                ChatMessage("user", prompt.format(issues=issues or "(see the review)").strip()),
            ]
            result = await self.turns.run(
                role_key="coder",
                chunk_id=chunk_id,
                agent=self._agent("coder", chunk_id),
                description=f"Revise {chunk_id}",
                messages=messages,
                iteration=iteration,
            )
            return chunk_id, result.content

        semaphore = asyncio.Semaphore(self.settings.max_concurrent_coders)

        async def limited(chunk_id: str) -> tuple[str, str]:
            async with semaphore:
                return await revise(chunk_id)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(limited(cid)) for cid in targets]
        for task in tasks:
            chunk_id, content = task.result()
            code[chunk_id] = content

    # --- the result ---------------------------------------------------------------------

    def _collect_files(self, chunks: list[PlanChunk], code: dict[str, str]) -> dict[str, Artifact]:
        files: dict[str, Artifact] = {}
        for chunk in chunks:
            for artifact in extract_artifacts(code.get(chunk.id, "")):
                files[artifact.path] = artifact
        return files

    def _docs_messages(
        self, task_text: str, design: str, files: dict[str, Artifact]
    ) -> list[ChatMessage]:
        listing = "\n\n".join(
            f"### {a.path}\n```{a.language}\n{a.content}```" for a in files.values()
        )
        user = f"{task_text}\n\n## Design\n{design}\n\n## Files\n{listing or '(no files)'}"
        return [self._system("documenter"), ChatMessage("user", user)]

    def _final_markdown(
        self,
        task: str,
        design: str,
        artifacts: list[Artifact],
        verdict: Verdict | None,
        readme: str,
    ) -> str:
        design_text = _without_json_blocks(design).strip()
        lines = [f"# {task.strip().splitlines()[0][:200]}", "", "## Design", "", design_text, ""]
        lines += ["## Files", ""]
        lines += [f"- `{a.path}` ({a.language})" for a in artifacts] or ["(no files)"]
        lines += ["", "## Tests", ""]
        if self.tester is None:
            lines.append("Not run (the Tester is off).")
        elif self.tests is None:
            lines.append("Not run: no Python tests among the files.")
        else:
            state = "Passed" if self.tests.ok else "Failed"
            lines.append(f"{state}: {self.tests.summary()}.")
        lines += ["", "## Review", ""]
        if verdict is None:
            lines.append("No usable verdict: the code was not reviewed.")
        else:
            state = "Approved" if verdict.approved else "Not approved"
            score = f", score {verdict.score:g}/10" if verdict.score is not None else ""
            lines.append(f"{state}{score}.")
            lines += [f"- [{i.severity}] {i.description}" for i in verdict.issues]
        if readme:
            lines += ["", "## Documentation", "", readme]
        return "\n".join(lines).rstrip() + "\n"


def _without_json_blocks(text: str) -> str:
    return FENCE.sub(
        lambda m: "" if m.group("info").strip().lower() == "json" else m.group(0), text
    )
