"""The ways of answering a problem that `facilitair eval` compares.

- `single`: one call to the Coder's model.
- `repair`: that answer, then the model fixing it against the prompt's examples.
- `vote`: several samples; the one that agrees most with the examples, then with the others.
- `sequential`, `council`: the real workflows, run as tasks on a Facilitair server.

Each arm returns the code it would submit and what it spent; the hidden tests are run by the
caller, never by an arm.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from facilitair.cli.client import TERMINAL, ClientError, FacilitairClient
from facilitair.config import AgentConfig, EvalConfig
from facilitair.evaluation.checks import Checker, ExampleCheck
from facilitair.evaluation.problems import Problem, answer_files, extract_code
from facilitair.llm import ProviderSet
from facilitair.llm.base import ChatMessage, ChatRequest, Completion, ProviderError, Retrying

BASELINES = ("single", "repair", "vote")
WORKFLOWS = ("sequential", "council")
ARMS = (*BASELINES, *WORKFLOWS)


@dataclass
class Spend:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once any call's price is unknown
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Spend) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        if self.cost_usd is not None:
            self.cost_usd = None if other.cost_usd is None else self.cost_usd + other.cost_usd


@dataclass
class Attempt:
    """An arm's answer: `code` ("" when it produced none), the other modules it wrote, what it
    spent, and why it failed when it did."""

    code: str
    spend: Spend
    support: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    note: str = ""


class Arm(Protocol):
    name: str

    async def solve(self, problem: Problem, budget_tokens: int | None) -> Attempt:
        """Answer `problem`, spending at most about `budget_tokens` when one is given."""
        ...


@dataclass(frozen=True)
class Answer:
    text: str
    spend: Spend


class CoderModel:
    """The Coder role's model and provider, called directly (no workflow around it)."""

    def __init__(self, providers: ProviderSet, config: AgentConfig) -> None:
        self.role = config.roles["coder"]
        self.config = config
        self.provider = providers.get(self.role.provider)

    @property
    def model(self) -> str:
        return self.role.model

    async def answer(
        self,
        messages: list[ChatMessage],
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Answer:
        request = ChatRequest(
            model=self.role.model,
            messages=messages,
            temperature=self.role.temperature if temperature is None else temperature,
            max_tokens=self.role.max_tokens,
            seed=seed,
        )
        text = ""
        completion: Completion | None = None
        items = self.provider.stream(request)
        try:
            async for item in items:
                if isinstance(item, Retrying):
                    if item.restart:
                        text = ""
                elif isinstance(item, Completion):
                    completion = item
                else:
                    text += item.text
        finally:
            await items.aclose()
        assert completion is not None
        prompt = completion.prompt_tokens or 0
        produced = completion.completion_tokens or 0
        known = completion.prompt_tokens is not None and completion.completion_tokens is not None
        cost = self.config.price_usd(self.role.model, prompt, produced) if known else None
        return Answer(text, Spend(prompt, produced, cost, calls=1))


def _opening(problem: Problem, settings: EvalConfig) -> list[ChatMessage]:
    return [
        ChatMessage("system", settings.solve_prompt.strip()),
        ChatMessage("user", f"```python\n{problem.prompt}\n```"),
    ]


@dataclass
class Baseline:
    """An arm that calls the Coder's model itself; `checker` runs the prompt's examples."""

    model: CoderModel
    checker: Checker
    settings: EvalConfig


class SingleArm(Baseline):
    name = "single"

    async def solve(self, problem: Problem, budget_tokens: int | None) -> Attempt:
        spend = Spend()
        try:
            answer = await self.model.answer(_opening(problem, self.settings))
        except ProviderError as exc:
            return Attempt("", spend, error=exc.message)
        spend.add(answer.spend)
        return Attempt(extract_code(answer.text, problem) or "", spend)


class RepairArm(Baseline):
    """The model's answer, then up to `repair_rounds` fixes while the prompt's examples fail,
    each given the failing output. Under a budget: fixes while another one fits."""

    name = "repair"

    async def solve(self, problem: Problem, budget_tokens: int | None) -> Attempt:
        spend = Spend()
        messages = _opening(problem, self.settings)
        rounds = self.settings.repair_rounds
        if budget_tokens is not None:
            rounds = self.settings.max_samples - 1
        code = ""
        check: ExampleCheck | None = None
        try:
            for round_number in range(rounds + 1):
                answer = await self.model.answer(messages)
                spend.add(answer.spend)
                code = extract_code(answer.text, problem) or ""
                check = await self._check(problem, code)
                if check.ok or round_number == rounds:
                    break
                if budget_tokens is not None and spend.tokens + answer.spend.tokens > budget_tokens:
                    break
                feedback = self.settings.repair_prompt.strip().format(failures=check.output)
                messages += [ChatMessage("assistant", answer.text), ChatMessage("user", feedback)]
        except ProviderError as exc:
            return Attempt(code, spend, error=exc.message)
        assert check is not None
        note = f"{spend.calls - 1} fixes, examples {check.passed}/{check.total}"
        return Attempt(code, spend, note=note)

    async def _check(self, problem: Problem, code: str) -> ExampleCheck:
        if not code:
            message = (
                f"No ```python block defining `{problem.entry_point}` was found in the answer."
            )
            return ExampleCheck(passed=0, total=1, output=message)
        return await self.checker.examples(problem, code)


class VoteArm(Baseline):
    """N samples at a higher temperature. The chosen one passes the most of the prompt's
    examples; among those, the one whose code (as a syntax tree) most samples agree on; then
    the earliest. Under a budget: as many samples as fit, judged by the first one's size."""

    name = "vote"

    async def solve(self, problem: Problem, budget_tokens: int | None) -> Attempt:
        spend = Spend()
        messages = _opening(problem, self.settings)
        temperature = self.settings.vote_temperature

        async def sample(seed: int) -> Answer:
            return await self.model.answer(messages, temperature=temperature, seed=seed)

        try:
            first = await sample(1)
            spend.add(first.spend)
            wanted = self.settings.vote_samples
            if budget_tokens is not None:
                fits = budget_tokens // max(1, first.spend.tokens)
                wanted = max(1, min(self.settings.max_samples, fits))
            rest = await asyncio.gather(*(sample(seed) for seed in range(2, wanted + 1)))
        except ProviderError as exc:
            return Attempt("", spend, error=exc.message)
        answers = [first, *rest]
        for answer in rest:
            spend.add(answer.spend)
        codes = [extract_code(answer.text, problem) or "" for answer in answers]
        checks = await asyncio.gather(
            *(self.checker.examples(problem, code) for code in codes if code)
        )
        passed = iter(check.passed for check in checks)
        scores = [next(passed) if code else -1 for code in codes]
        shapes = [_shape(code) for code in codes]
        agreement = Counter(shapes)
        best = max(range(len(codes)), key=lambda i: (scores[i], agreement[shapes[i]], -i))
        note = (
            f"sample {best + 1} of {len(codes)}: examples {max(scores[best], 0)}, "
            f"{agreement[shapes[best]]} alike"
        )
        return Attempt(codes[best], spend, note=note)


def _shape(code: str) -> str:
    """Code as its syntax tree, so samples differing only in layout and comments agree."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return code.strip()


class WorkflowArm:
    """A workflow run as a task on the server (cache off): its code is the artifact that
    defines the function; its spend is what the server measured."""

    def __init__(self, name: str, client: FacilitairClient, settings: EvalConfig) -> None:
        self.name = name
        self.client = client
        self.settings = settings

    async def solve(self, problem: Problem, budget_tokens: int | None) -> Attempt:
        task = self.settings.task_template.strip().format(
            prompt=problem.prompt.strip("\n"), entry_point=problem.entry_point
        )
        body = {
            "task": task,
            "context": {"preferred_language": "python"},
            "workflow": self.name,
            "cache": "off",
        }
        created = await self._create(body)
        stream_id = created["stream_id"]
        calls = 0
        final: dict[str, Any] | None = None
        error: str | None = None
        try:
            async for event in self.client.events(stream_id):
                if event.event == "chunk_completed" and event.data.get("role") != "tester":
                    calls += 1
                if event.event in TERMINAL:
                    final = event.data
                    if event.event != "task_completed":
                        error = str(event.data.get("error") or event.data.get("reason") or "")
                        error = error or event.event
                    break
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.cancel(stream_id)
            raise
        status = await self.client.status(stream_id)
        tokens = status.get("tokens", {})
        spend = Spend(
            prompt_tokens=int(tokens.get("prompt", 0)),
            completion_tokens=int(tokens.get("completion", 0)),
            cost_usd=status.get("cost_usd"),
            calls=calls,
        )
        if final is None or error is not None:
            return Attempt("", spend, error=error or "the stream ended without a result")
        code, support = answer_files(final.get("artifacts", []), problem.entry_point)
        if not code:  # no file holds the function: the result's own code blocks, if any
            code = extract_code(str(final.get("content", "")), problem) or ""
        note = "" if code else f"no file defines {problem.entry_point}"
        return Attempt(code, spend, support=support, note=note)

    async def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        for _ in range(30):
            try:
                return await self.client.create_task(body)
            except ClientError as exc:
                if exc.status != 429:  # the server's rate limit: wait for the next minute
                    raise
                await asyncio.sleep(2.0)
        return await self.client.create_task(body)
