"""`facilitair eval`, run as a user runs it (a subprocess) against the fake provider scripted
with known-correct and known-wrong HumanEval solutions: the pass@1 and token counts it reports
must be exactly the ones the script implies, and hidden tests must never reach a model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from facilitair.evaluation.problems import Problem, load_problems, prompt_examples
from facilitair.evaluation.results import wilson_interval
from fakes.openai_server import FakeOpenAI, RecordedRequest, Reply
from support import COUNCIL, plan_reply, ranking_reply, verdict_reply

FACILITAIR = str(Path(sys.executable).parent / "facilitair")
PROMPT_TOKENS, COMPLETION_TOKENS = 100, 20  # what the fake reports for every call
CALL = PROMPT_TOKENS + COMPLETION_TOKENS

# Four HumanEval problems, all with examples in their prompts. Every arm gets 0 and 2 right and
# 4 wrong; 3 is wrong at first, right when repaired and in all vote samples but the first.
ALWAYS, SOMETIMES, NEVER = {"HumanEval/0", "HumanEval/2"}, "HumanEval/3", "HumanEval/4"
IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/3", "HumanEval/4"]


@pytest.fixture(scope="module")
def problems() -> dict[str, Problem]:
    by_id = {problem.task_id: problem for problem in load_problems()}
    return {task_id: by_id[task_id] for task_id in IDS}


@pytest.fixture
def problems_file(tmp_path: Path, problems: dict[str, Problem]) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(p.model_dump_json() + "\n" for p in problems.values()))
    return path


def right(problem: Problem) -> str:
    return problem.prompt + problem.canonical_solution


def wrong(problem: Problem) -> str:
    return problem.prompt + "    return None\n"


def problem_in(request: RecordedRequest, problems: dict[str, Problem]) -> Problem:
    text = "\n".join(str(m.get("content")) for m in request.messages)
    found = [p for p in problems.values() if f"def {p.entry_point}(" in text]
    assert len(found) == 1, text[:500]
    return found[0]


def answer(code: str, path: str = "solution.py") -> Reply:
    text = f"Here it is.\n\n```python path={path}\n{code}```\n"
    return Reply(text=text, prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


def script(fake: FakeOpenAI, problems: dict[str, Problem]) -> None:
    """Coder (baselines and the sequential workflow), council members and chairman answer
    by the rules above; the architect plans one file, the reviewer approves."""

    def coder(request: RecordedRequest) -> Reply:
        problem = problem_in(request, problems)
        if problem.task_id in ALWAYS:
            return answer(right(problem))
        if problem.task_id == SOMETIMES:
            repairing = "does not pass the examples" in request.messages[-1]["content"]
            later_sample = request.body.get("seed", 1) > 1
            if repairing or later_sample:
                return answer(right(problem))
        return answer(wrong(problem))

    def fixed(text: str) -> Reply:
        return Reply(text=text, prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)

    def member(request: RecordedRequest) -> Reply:
        reply = coder(request)
        return fixed(f"Answer by {request.model}.\n\n{reply.text}")

    def chair(request: RecordedRequest) -> Reply:
        problem = problem_in(request, problems)
        return answer(right(problem) if problem.task_id in ALWAYS else wrong(problem))

    fake.set_default("coder", coder)
    fake.set_default("architect", fixed(plan_reply(("c1", "Write solution.py", []))))
    fake.set_default("reviewer", fixed(verdict_reply(True)))
    fake.set_default("documenter", fixed("# Solution\n"))
    fake.set_default("member", member)
    fake.set_default("judge", lambda request: fixed(ranking_reply(request)))
    fake.set_default("chair", chair)


def run_eval(
    fake: FakeOpenAI, tmp_path: Path, *args: str, timeout: float = 240, config_text: str = COUNCIL
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAC_")}
    env.update(
        FAC_DATA_DIR=str(tmp_path / "data"),
        FAC_LLM_BASE_URL=fake.base_url,
        FAC_LLM_API_KEY="test-key",
        FAC_LLM_RETRY_BASE_S="0.01",
        FAC_CONFIG=str(config),
    )
    return subprocess.run(
        [FACILITAIR, "eval", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )


def summary(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return {row["arm"]: row for row in json.loads(done.stdout)}


def test_every_arm_reports_the_scripted_pass_rate_and_tokens(
    fake: FakeOpenAI, tmp_path: Path, problems: dict[str, Problem], problems_file: Path
) -> None:
    script(fake, problems)
    out = tmp_path / "results.json"
    done = run_eval(fake, tmp_path, "--problems", str(problems_file), "--out", str(out), "--json")
    rows = summary(done)
    assert list(rows) == ["single", "repair", "vote", "sequential", "council"]
    expected = {  # passed of 4, LLM calls in all
        "single": (2, 4),
        "repair": (3, 1 + 1 + 2 + 3),  # 3 is fixed at the first repair; 4 uses both rounds
        "vote": (3, 4 * 5),
        "sequential": (2, 4 * 4),  # architect, coder, reviewer, documenter
        "council": (2, 4 * 7),  # three members, three judges, the chairman
    }
    for arm, (passed, calls) in expected.items():
        row = rows[arm]
        assert (row["passed"], row["problems"], row["errors"]) == (passed, 4, 0), (arm, row)
        assert row["pass_at_1"] == passed / 4
        low, high = wilson_interval(passed, 4)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert row["tokens"] == calls * CALL, arm
        assert row["calls_per_problem"] == calls / 4, arm
    # What the provider was actually asked, for the baselines (the workflows' calls are
    # counted by the server from the same usage).
    baseline_calls = [
        r for r in fake.requests if r.role == "coder" and "Your chunk" not in str(r.messages)
    ]
    assert len(baseline_calls) == 4 + 7 + 20
    # The hidden tests never reach a model: no request holds any problem's `check` code.
    hidden = [p.test.strip().splitlines()[-1].strip() for p in problems.values()]
    for request in fake.requests:
        text = json.dumps(request.body)
        assert "def check(candidate)" not in text
        assert not any(line in text for line in hidden if len(line) > 20)
    # The results file holds every record and the Markdown table beside it.
    saved = json.loads(out.read_text())
    assert len(saved["records"]) == 20
    submitted = {(r["arm"], r["task_id"]): r["code"] for r in saved["records"]}
    assert submitted["single", "HumanEval/4"] == wrong(problems["HumanEval/4"])
    table = out.with_suffix(".md").read_text()
    assert "| vote | 75.0% |" in table and "| single | 50.0% |" in table


def test_answers_in_any_usual_shape_are_read(
    fake: FakeOpenAI, tmp_path: Path, problems: dict[str, Problem], problems_file: Path
) -> None:
    """A bare body (HumanEval's own completion form), a bare function, a block without a path,
    and a block cut off at the token limit: each is the code that gets tested."""
    shapes = {
        "HumanEval/0": lambda p: p.canonical_solution,
        "HumanEval/2": lambda p: p.prompt + p.canonical_solution,
        "HumanEval/3": lambda p: f"Sure:\n```\n{p.prompt + p.canonical_solution}```\nDone.",
        "HumanEval/4": lambda p: f"```python\n{p.prompt + p.canonical_solution}",
    }

    def coder(request: RecordedRequest) -> Reply:
        problem = problem_in(request, problems)
        return Reply(text=shapes[problem.task_id](problem))

    fake.set_default("coder", coder)
    rows = summary(
        run_eval(
            fake,
            tmp_path,
            "--arm",
            "single",
            "--problems",
            str(problems_file),
            "--out",
            str(tmp_path / "shapes.json"),
            "--json",
        )
    )
    assert (rows["single"]["passed"], rows["single"]["problems"]) == (4, 4)


def test_budget_match_gives_vote_the_workflows_tokens(
    fake: FakeOpenAI, tmp_path: Path, problems: dict[str, Problem], problems_file: Path
) -> None:
    script(fake, problems)
    out = tmp_path / "budget.json"
    arms = ["--arm", "vote", "--arm", "sequential", "--arm", "repair"]
    done = run_eval(
        fake,
        tmp_path,
        *arms,
        "--budget-match",
        "--problems",
        str(problems_file),
        "--out",
        str(out),
        "--json",
    )
    rows = summary(done)
    assert list(rows) == ["vote", "sequential", "repair"]  # in the order asked for
    budget = 4 * CALL  # the sequential workflow's four calls per problem
    assert json.loads(out.read_text())["budget_tokens"] == budget
    assert rows["sequential"]["tokens_per_problem"] == budget
    assert rows["vote"]["calls_per_problem"] == budget // CALL
    assert rows["vote"]["tokens_per_problem"] == budget
    # repair stops when its examples pass, and otherwise fixes while another call fits
    assert rows["repair"]["tokens"] == (1 + 1 + 2 + 4) * CALL


def test_a_rerun_resumes_and_a_changed_setup_is_refused(
    fake: FakeOpenAI, tmp_path: Path, problems: dict[str, Problem], problems_file: Path
) -> None:
    script(fake, problems)
    out = tmp_path / "resume.json"
    common = ["--arm", "single", "--problems", str(problems_file), "--out", str(out), "--json"]
    first = summary(run_eval(fake, tmp_path, *common, "--limit", "2"))
    assert first["single"]["problems"] == 2
    assert len(fake.requests) == 2
    second = summary(run_eval(fake, tmp_path, *common))
    assert second["single"]["problems"] == 4
    assert second["single"]["passed"] == 2
    assert len(fake.requests) == 4  # only the two problems not yet done were asked again

    again = summary(run_eval(fake, tmp_path, *common))  # nothing left to do
    assert again["single"]["problems"] == 4
    shorter = summary(run_eval(fake, tmp_path, *common, "--limit", "1"))
    assert shorter["single"]["problems"] == 1  # the summary covers the problems asked for
    assert len(fake.requests) == 4
    another_coder = COUNCIL + '\n[roles.coder]\nmodel = "another-model"\n'
    refused = run_eval(fake, tmp_path, *common, config_text=another_coder)  # the same file
    assert refused.returncode == 2
    assert "measured with different models" in " ".join(refused.stderr.split())
    assert "Traceback" not in refused.stderr
    assert len(fake.requests) == 4


def test_a_failing_provider_is_reported_not_scored_as_a_weak_model(
    fake: FakeOpenAI, tmp_path: Path, problems: dict[str, Problem], problems_file: Path
) -> None:
    fake.set_default("coder", Reply(status=500, text="upstream broke"))
    out = tmp_path / "errors.json"
    done = run_eval(
        fake,
        tmp_path,
        "--arm",
        "single",
        "--problems",
        str(problems_file),
        "--out",
        str(out),
        "--json",
    )
    row = summary(done)["single"]
    assert (row["passed"], row["errors"], row["problems"]) == (0, 4, 4)
    assert "4 answers got no result" in " ".join(done.stderr.split())
    records = json.loads(out.read_text())["records"]
    assert all("upstream broke" in (r["error"] or "") for r in records), records
    assert len(fake.requests) > 4  # each was retried before it was given up


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arm", "guess"], "arms are single, repair, vote, sequential, council"),
        (["--arm", "vote", "--budget-match"], "takes its budget from sequential or council"),
    ],
)
def test_usage_errors_are_one_sentence(
    fake: FakeOpenAI, tmp_path: Path, problems_file: Path, args: list[str], message: str
) -> None:
    done = run_eval(fake, tmp_path, *args, "--problems", str(problems_file))
    assert done.returncode == 2, done.stderr
    assert message in re.sub(r"[│\s]+", " ", done.stderr)  # typer draws a box around usage errors
    assert "Traceback" not in done.stderr
    assert fake.requests == []


def test_a_file_that_is_not_problems_is_refused(fake: FakeOpenAI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "def f():\\n"}\n')
    done = run_eval(fake, tmp_path, "--problems", str(bad))
    assert done.returncode == 2
    assert "problem 1" in done.stderr and "Field required" in done.stderr


def test_examples_come_from_the_prompt_and_prose_is_not_taken_for_one() -> None:
    by_id = {problem.task_id: problem for problem in load_problems()}
    examples = prompt_examples(by_id["HumanEval/0"])
    assert [(e.call, e.want) for e in examples] == [
        ("has_close_elements([1.0, 2.0, 3.0], 0.5)", "False"),
        ("has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", "True"),
    ]
    # "is_happy(a) => False": `a` is not a value, so such lines are prose, not examples
    assert "is_happy(a) => False" in by_id["HumanEval/80"].prompt
    assert prompt_examples(by_id["HumanEval/80"]) == []
    # a trailing comment does not end up inside the generated test
    assert [e.want for e in prompt_examples(by_id["HumanEval/123"])] == ["[1, 5]"]
