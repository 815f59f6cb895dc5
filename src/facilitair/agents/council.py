"""The council workflow (SPEC §6): members answer at once, rank each other's answers blind, and
a chairman writes the final answer from the answers, the aggregate ranking and the dissent.

    propose     every member answers the task, each in its own lane (chunk propose-N)
    review      every member ranks the *others'* answers, shown as Response A, B, … in an order
                shuffled per judge; a ranking that cannot be read is noted and left out
    synthesize  the chairman (configured, else the best-ranked member's model) writes the answer

Members are "Member 1", "Member 2", … until the review ends; then the ranking names their
models. A member whose answer fails (after the provider's retries) is dropped with a notice;
the council goes on while at least two answers remain.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random
import string
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from facilitair.agents.consensus import Consensus, Ranking, aggregate, parse_ranking
from facilitair.agents.parsing import extract_artifacts
from facilitair.agents.tester import Tester, describe_tests, tests_enabled
from facilitair.agents.turns import Emit, Lane, TurnFailed, TurnResult, TurnRunner
from facilitair.agents.workflow import WorkflowOutcome, task_text
from facilitair.config import AgentConfig, CouncilMember
from facilitair.llm.base import ChatMessage
from facilitair.protocol.api import TaskRequest
from facilitair.protocol.events import Artifact, PlanItem, SystemMessage, TaskProgress
from facilitair.sandbox import SandboxRun

T = TypeVar("T")
PHASES = {"propose": "member", "review": "judge", "synthesize": "chairman"}  # and their roles


class CouncilFailed(Exception):
    """Fewer than two members answered: there is nothing to compare."""


@dataclass(frozen=True)
class Seat:
    name: str  # "Member 1"
    number: int
    spec: CouncilMember

    def lane(self, phase: str) -> Lane:
        """This member's model, provider and seed; its own temperature when it answers (a
        judge ranks at the judge role's)."""
        spec = self.spec
        temperature = spec.temperature if phase == "propose" else None
        return Lane(phase, self.name, spec.model, spec.provider, temperature, spec.seed)


class CouncilWorkflow:
    def __init__(self, turns: TurnRunner, config: AgentConfig, emit: Emit) -> None:
        self.turns = turns
        self.config = config
        self.emit = emit
        self.council = config.workflow.council
        self.seats = [
            Seat(f"Member {n}", n, spec) for n, spec in enumerate(self.council.members, 1)
        ]
        self.tester = Tester(turns, config.workflow.tester) if tests_enabled(config) else None

    async def run(self, request: TaskRequest) -> WorkflowOutcome:
        text = task_text(request)
        await self._progress("propose", self.seats)
        answers = await self._propose(text)
        seated = [seat for seat in self.seats if seat.name in answers]
        await self._progress("review", seated)
        rankings = await self._review(text, seated, answers)
        consensus = aggregate(rankings, {seat.name: seat.spec.model for seat in seated})
        await self.emit(
            SystemMessage(
                message=_announce(consensus), kind="council", details=consensus.as_metrics()
            )
        )
        await self._progress("synthesize", seated)
        messages, lane = self._synthesis(text, seated, answers, consensus)
        final = await self._chair(messages, lane, "Final answer")
        artifacts = extract_artifacts(final.content)
        if not artifacts:  # the chairman only commented: keep the best answer's files
            artifacts = extract_artifacts(answers[consensus.ranking[0].member])
        answer, iterations = final.content, 1
        tests = await self._test(artifacts, 1)
        if tests is not None and not tests.ok:
            # One revision: the chairman sees the failing output and writes the files again.
            fix = await self._chair(
                [
                    *messages,
                    ChatMessage("assistant", final.content),
                    ChatMessage("user", f"{describe_tests(tests)}\n\n{FIX_PROMPT}"),
                ],
                lane,
                "Fix after the tests",
                iteration=2,
            )
            revised = {a.path: a for a in artifacts} | {
                a.path: a for a in extract_artifacts(fix.content)
            }
            artifacts, answer, iterations = list(revised.values()), fix.content, 2
            tests = await self._test(artifacts, 2)
        content = answer.strip() + "\n\n" + _ranking_markdown(consensus)
        if self.tester is not None:
            content += "\n" + _tests_markdown(tests)
        return WorkflowOutcome(
            content=content,
            artifacts=artifacts,
            iterations=iterations,
            consensus=consensus.as_metrics(),
        )

    async def _test(self, artifacts: list[Artifact], iteration: int) -> SandboxRun | None:
        if self.tester is None:
            return None
        return await self.tester.run({a.path: a for a in artifacts}, iteration)

    # --- phases ---------------------------------------------------------------------------

    async def _propose(self, text: str) -> dict[str, str]:
        messages = [self._system("member"), ChatMessage("user", text)]

        async def answer(seat: Seat) -> str | None:
            return await self._turn_or_drop(
                seat,
                role_key="member",
                chunk_id=f"propose-{seat.number}",
                agent=seat.name,
                description="Answer",
                messages=messages,
                lane=seat.lane("propose"),
            )

        results = await _all(answer(seat) for seat in self.seats)
        answers = {seat.name: r for seat, r in zip(self.seats, results, strict=True) if r}
        if len(answers) < 2:
            raise CouncilFailed(
                f"only {len(answers)} of {len(self.seats)} council members answered"
            )
        return answers

    async def _review(
        self, text: str, seated: list[Seat], answers: dict[str, str]
    ) -> list[Ranking]:
        async def judge(seat: Seat) -> Ranking | None:
            others = [s.name for s in seated if s is not seat]
            random.shuffle(others)  # labels mean nothing: no position bias carried across
            labels = dict(zip(string.ascii_uppercase, others, strict=False))
            shown = "\n\n".join(
                f"## Response {label}\n{answers[name]}" for label, name in labels.items()
            )
            lane = dataclasses.replace(seat.lane("review"), schema=self._ranking_schema(labels))
            content = await self._turn_or_drop(
                seat,
                role_key="judge",
                chunk_id=f"review-{seat.number}",
                agent=f"{seat.name} (judge)",
                description=f"Rank {len(labels)} answers",
                messages=[self._system("judge"), ChatMessage("user", f"{text}\n\n{shown}")],
                lane=lane,
            )
            if content is None:
                return None
            ranking = parse_ranking(seat.name, content, list(labels))
            if ranking is None:
                await self.emit(
                    SystemMessage(
                        message=f"{seat.name}'s ranking could not be read; it is left out",
                        level="warning",
                        kind="invalid_ranking",
                    )
                )
                return None
            return Ranking(
                seat.name,
                [labels[label] for label in ranking.order],
                {labels[label]: reason for label, reason in ranking.reasons.items()},
            )

        results = await _all(judge(seat) for seat in seated)
        return [ranking for ranking in results if ranking is not None]

    def _synthesis(
        self, text: str, seated: list[Seat], answers: dict[str, str], consensus: Consensus
    ) -> tuple[list[ChatMessage], Lane]:
        """The chairman's request: the answers best-ranked first, the agreement, the dissent."""
        best = next(seat for seat in seated if seat.name == consensus.ranking[0].member)
        model = self.council.chairman or best.spec.model
        provider = self.council.chairman_provider or next(
            (seat.spec.provider for seat in seated if seat.spec.model == model),
            best.spec.provider,
        )
        by_rank = "\n\n".join(
            f"## {s.member} ({s.model}), mean rank {s.mean_rank:.2f}\n{answers[s.member]}"
            for s in consensus.ranking
        )
        dissent = ""
        if consensus.dissent is not None:
            reasons = "\n".join(
                f"- {member}: {reason}" for member, reason in consensus.dissent_reasons.items()
            )
            dissent = f"\n\n## Dissent: {consensus.dissent}\n{reasons or '(no reasons given)'}"
        agreement = (
            "unknown" if consensus.agreement is None else f"Kendall's W {consensus.agreement:.2f}"
        )
        user = f"{text}\n\n# The answers, best-ranked first (agreement: {agreement})\n\n"
        messages = [self._system("chairman"), ChatMessage("user", user + by_rank + dissent)]
        return messages, Lane(phase="synthesize", member=model, model=model, provider=provider)

    async def _chair(
        self, messages: list[ChatMessage], lane: Lane, description: str, iteration: int = 1
    ) -> TurnResult:
        return await self.turns.run(
            role_key="chairman",
            chunk_id="synthesis",
            agent="Chairman",
            description=description,
            messages=messages,
            iteration=iteration,
            lane=lane,
        )

    # --- helpers ----------------------------------------------------------------------------

    async def _turn_or_drop(
        self,
        seat: Seat,
        *,
        role_key: str,
        chunk_id: str,
        agent: str,
        description: str,
        messages: list[ChatMessage],
        lane: Lane,
    ) -> str | None:
        """A member's turn; a member whose provider fails (after retries) is dropped."""
        try:
            result = await self.turns.run(
                role_key=role_key,
                chunk_id=chunk_id,
                agent=agent,
                description=description,
                messages=messages,
                lane=lane,
            )
        except TurnFailed as failed:
            self.turns.totals.partial.pop(chunk_id, None)
            await self.emit(
                SystemMessage(
                    message=f"{seat.name} dropped out of the council: {failed.error.message}",
                    level="warning",
                    kind="member_dropped",
                )
            )
            return None
        return result.content

    def _ranking_schema(self, labels: dict[str, str]) -> dict[str, Any] | None:
        """The judge role's schema held to this judge's labels: each one, once, and no other
        (a schema-enforcing provider then cannot return a partial ranking)."""
        schema = self.config.output_schema(self.config.roles["judge"])
        if schema is None:
            return None
        ranking = copy.deepcopy(schema)
        items = ranking["properties"]["ranking"]
        items["minItems"] = items["maxItems"] = len(labels)
        items["items"]["properties"]["response"] = {"type": "string", "enum": list(labels)}
        return ranking

    def _system(self, role_key: str) -> ChatMessage:
        return ChatMessage("system", self.config.roles[role_key].system_prompt.strip())

    async def _progress(self, phase: str, seated: list[Seat]) -> None:
        remaining = list(PHASES)[list(PHASES).index(phase) :]
        plan = [
            *[self._item(f"propose-{s.number}", "member", f"{s.name}: answer", s) for s in seated],
            *[self._item(f"review-{s.number}", "judge", f"{s.name}: rank", s) for s in seated],
            PlanItem(
                chunk_id="synthesis",
                role="chairman",
                description="Chairman: final answer",
                model=self.council.chairman or "best-ranked member",
            ),
        ]
        seconds = 0.0
        cost: float | None = 0.0
        for name in remaining:
            produced = self.config.roles[PHASES[name]].expected_tokens
            prompt = produced * (len(seated) + 1) + 300
            models = self._phase_models(name, seated)
            # Members run at once: a phase takes as long as its slowest member.
            seconds += max(produced / self.config.tokens_per_second(m) for m in models)
            for model in models:
                price = self.config.price_usd(model, prompt, produced)
                cost = None if price is None or cost is None else cost + price
        totals = self.turns.totals
        totals.total_chunks = len(plan)
        await self.emit(
            TaskProgress(
                total_chunks=len(plan),
                completed_chunks=totals.completed_chunks,
                estimated_time=round(seconds, 1),
                estimated_cost=None if cost is None else round(cost, 6),
                plan=plan,
            )
        )

    def _phase_models(self, phase: str, seated: list[Seat]) -> list[str]:
        if phase == "synthesize":
            return [self.council.chairman or seated[0].spec.model]
        return [seat.spec.model for seat in seated]

    def _item(self, chunk_id: str, role: str, description: str, seat: Seat) -> PlanItem:
        return PlanItem(
            chunk_id=chunk_id, role=role, description=description, model=seat.spec.model
        )


async def _all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently. Cancelling the caller cancels every one; so does a failure that is not
    a dropped member (a budget reached), which is then raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


def _announce(consensus: Consensus) -> str:
    places = "; ".join(
        f"{n}. {s.member} ({s.model}) {s.mean_rank:.2f}" for n, s in enumerate(consensus.ranking, 1)
    )
    agreement = "n/a" if consensus.agreement is None else f"{consensus.agreement:.2f}"
    dissent = f"; dissent: {consensus.dissent}" if consensus.dissent else ""
    return f"Council ranking: {places}; agreement (Kendall's W) {agreement}{dissent}"


FIX_PROMPT = (
    "The tests above failed. Write the corrected files in full, each as a fenced code block "
    "with its path."
)


def _tests_markdown(tests: SandboxRun | None) -> str:
    if tests is None:
        return "## Tests\n\nNot run: no Python tests among the files.\n"
    state = "Passed" if tests.ok else "Failed"
    return f"## Tests\n\n{state}: {tests.summary()}.\n"


def _ranking_markdown(consensus: Consensus) -> str:
    rows = "\n".join(
        f"| {n} | {s.member} | {s.model} | {s.mean_rank:.2f} |"
        for n, s in enumerate(consensus.ranking, 1)
    )
    agreement = "n/a" if consensus.agreement is None else f"{consensus.agreement:.2f}"
    lines = [
        "## Council",
        "",
        "| place | member | model | mean rank |",
        "|---|---|---|---|",
        rows,
        "",
        f"Agreement (Kendall's W): {agreement}.",
    ]
    if consensus.dissent:
        lines.append(f"Dissent: {consensus.dissent}.")
    return "\n".join(lines) + "\n"
