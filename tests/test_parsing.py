"""Reading the plan, the verdict and the files out of model text (agents/parsing.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from facilitair.agents.parsing import (
    extract_artifacts,
    parse_plan,
    parse_verdict,
    plan_design,
    safe_relative_path,
)

FENCE = "```"


def fenced(value: Any, info: str = "json") -> str:
    return f"Here you go:\n\n{FENCE}{info}\n{json.dumps(value, indent=2)}\n{FENCE}\n\nDone."


def chunk(cid: Any, *deps: Any, description: str = "do it") -> dict[str, Any]:
    return {"id": cid, "description": description, "depends_on": list(deps)}


def plan_of(text: str, max_chunks: int = 10) -> list[tuple[str, list[str]]] | None:
    chunks = parse_plan(text, max_chunks)
    return None if chunks is None else [(c.id, c.depends_on) for c in chunks]


# --- parse_plan -------------------------------------------------------------------------------

TWO = {"chunks": [chunk("models"), chunk("api", "models")]}
TWO_PARSED = [("models", []), ("api", ["models"])]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(fenced(TWO), id="fenced-json"),
        pytest.param(fenced(TWO, info=""), id="fenced-no-info"),
        pytest.param("The plan is " + json.dumps(TWO) + " as agreed.", id="bare-object"),
        pytest.param(fenced(TWO["chunks"]), id="fenced-list"),
    ],
)
def test_plan_accepted_forms(text: str) -> None:
    assert plan_of(text) == TWO_PARSED


def test_plan_bare_list_without_fence() -> None:
    # Models often answer with a bare JSON array; it is as much a plan as the fenced one.
    assert plan_of(json.dumps(TWO["chunks"])) == TWO_PARSED


def test_plan_integer_ids_become_text() -> None:
    assert plan_of(fenced({"chunks": [chunk(1), chunk(2)]})) == [("1", []), ("2", [])]


def test_plan_integer_ids_in_depends_on() -> None:
    # A plan that numbers its chunks numbers its dependencies too.
    text = fenced({"chunks": [chunk(1), chunk(2, 1)]})
    assert plan_of(text) == [("1", []), ("2", ["1"])]


def test_plan_drops_unknown_and_self_dependencies() -> None:
    text = fenced({"chunks": [chunk("a", "a", "ghost"), chunk("b", "a", "b", "nope")]})
    assert plan_of(text) == [("a", []), ("b", ["a"])]


def test_plan_cut_to_max_chunks_drops_dependencies_on_the_cut() -> None:
    text = fenced({"chunks": [chunk("a"), chunk("b", "a", "c"), chunk("c"), chunk("d")]})
    assert plan_of(text, max_chunks=2) == [("a", []), ("b", ["a"])]


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([chunk("a"), chunk("a", "a")], id="duplicate-ids"),
        pytest.param([chunk(1), chunk("1")], id="duplicate-int-and-str"),
        pytest.param([chunk(""), chunk("b", "")], id="blank-id"),
        pytest.param([{"description": "x"}, chunk("b")], id="missing-id"),
        pytest.param([chunk("x" * 41), chunk("b")], id="id-too-long"),
    ],
)
def test_plan_with_unusable_ids_is_numbered_by_position(chunks: list[object]) -> None:
    # Constrained decoding guarantees the shape, not unique ids; the dependencies are then
    # ambiguous, so they are dropped rather than guessed.
    assert plan_of(fenced({"chunks": chunks})) == [("c1", []), ("c2", [])]


def test_plan_design_is_the_design_field_of_a_json_plan() -> None:
    assert plan_design(fenced({"design": "A CLI with two modules", **TWO})) == (
        "A CLI with two modules"
    )
    prose = "Design: a CLI.\n" + fenced(TWO)
    assert plan_design(prose) == prose


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(fenced({"chunks": [chunk("a", "b"), chunk("b", "a")]}), id="cycle-2"),
        pytest.param(
            fenced({"chunks": [chunk("a", "c"), chunk("b", "a"), chunk("c", "b")]}), id="cycle-3"
        ),
        pytest.param(fenced({"chunks": []}), id="empty"),
        pytest.param(fenced({"chunks": [{"id": "a"}]}), id="no-description"),
        pytest.param(fenced({"steps": [chunk("a")]}), id="wrong-key"),
        pytest.param("I could not come up with a plan.", id="prose"),
        pytest.param("```json\n{chunks: [oops\n```", id="broken-json"),
        pytest.param("", id="empty-text"),
    ],
)
def test_plan_rejected(text: str) -> None:
    assert parse_plan(text, 10) is None


# --- parse_verdict ----------------------------------------------------------------------------


def test_verdict_fenced() -> None:
    text = fenced(
        {
            "approved": False,
            "score": 6.5,
            "issues": [
                {"severity": " BLOCKER ", "chunk_id": "api", "description": "no auth"},
                {"severity": "Minor", "description": "naming"},
            ],
        }
    )
    verdict = parse_verdict(text)
    assert verdict is not None
    assert verdict.approved is False
    assert verdict.score == 6.5
    assert [(i.severity, i.chunk_id, i.description) for i in verdict.issues] == [
        ("blocker", "api", "no auth"),
        ("minor", None, "naming"),
    ]


def test_verdict_bare_object_with_defaults() -> None:
    verdict = parse_verdict('Looks fine. {"approved": true}')
    assert verdict is not None
    assert (verdict.approved, verdict.score, verdict.issues) == (True, None, [])


def test_verdict_integer_chunk_id() -> None:
    # Plans may number their chunks (ids 1, 2, ...); the reviewer then echoes numbers back.
    verdict = parse_verdict(fenced({"approved": False, "issues": [{"chunk_id": 2}]}))
    assert verdict is not None
    assert verdict.issues[0].chunk_id == "2"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(fenced({"score": 9, "issues": []}), id="missing-approved"),
        pytest.param(fenced({"approved": "perhaps"}), id="approved-not-bool"),
        pytest.param("Approved! Ship it.", id="prose"),
        pytest.param("{not json}", id="garbage"),
    ],
)
def test_verdict_rejected(text: str) -> None:
    assert parse_verdict(text) is None


# --- extract_artifacts ------------------------------------------------------------------------


def files(text: str) -> dict[str, tuple[str, str]]:
    return {a.path: (a.language, a.content) for a in extract_artifacts(text)}


@pytest.mark.parametrize(
    ("text", "path", "language"),
    [
        ("```python path=a/b.py\nx = 1\n```", "a/b.py", "python"),
        ("```python a/b.py\nx = 1\n```", "a/b.py", "python"),
        ('```typescript title="web/x.ts"\nx = 1\n```', "web/x.ts", "typescript"),
        ("```ts title='x.ts'\nx = 1\n```", "x.ts", "ts"),
        ("```file=Dockerfile\nx = 1\n```", "Dockerfile", "text"),
        ("```Makefile\nx = 1\n```", "Makefile", "text"),
        ("```src/App.py\nx = 1\n```", "src/App.py", "python"),
        ("```a/b.py\nx = 1\n```", "a/b.py", "python"),
        ("```./a/b.py\nx = 1\n```", "a/b.py", "python"),
        ("Create `src/app.py`:\n```python\nx = 1\n```", "src/app.py", "python"),
        ("File: app/main.go\n```\nx = 1\n```", "app/main.go", "go"),
        ("**File: app/main.go**\n\n```go\nx = 1\n```", "app/main.go", "go"),
        ("### `pkg/util.rs`\n```rust\nx = 1\n```", "pkg/util.rs", "rust"),
        ("```python\n# app/main.py\nx = 1\n```", "app/main.py", "python"),
        ("```\n// web/index.js\nx = 1\n```", "web/index.js", "javascript"),
        ("```sql\n-- db/schema.sql\nx = 1\n```", "db/schema.sql", "sql"),
        ("```\n# notes/todo.txt\nx = 1\n```", "notes/todo.txt", "text"),
        ("```\n# data/thing.xyz\nx = 1\n```", "data/thing.xyz", "text"),
    ],
)
def test_artifact_path_sources(text: str, path: str, language: str) -> None:
    (artifact,) = extract_artifacts(text)
    assert (artifact.path, artifact.language) == (path, language)
    assert artifact.content.endswith("x = 1\n")


def test_artifact_content_is_the_block_body() -> None:
    text = "```python app.py\nimport os\n\nprint(os.sep)\n```\n"
    assert files(text) == {"app.py": ("python", "import os\n\nprint(os.sep)\n")}


def test_later_block_for_same_path_wins() -> None:
    text = (
        "First try:\n```python app.py\nv = 1\n```\n"
        "Other:\n```python lib.py\nw = 1\n```\n"
        "Fixed:\n```python ./app.py\nv = 2\n```\n"
    )
    assert files(text) == {"app.py": ("python", "v = 2\n"), "lib.py": ("python", "w = 1\n")}


def test_blocks_without_a_path_are_ignored() -> None:
    text = (
        "Install it:\n```bash\npip install facilitair\n```\n"
        "Example:\n```python\nprint('hi')\n```\n"
        "```\nplain\n```\n"
        "```python keep.py\nk = 1\n```\n"
    )
    assert list(files(text)) == ["keep.py"]


def test_unsafe_paths_are_ignored() -> None:
    text = (
        "```python /etc/evil.py\nx\n```\n"
        "```python path=../up.py\nx\n```\n"
        "```python\n# a/../../b.py\nx\n```\n"
    )
    assert extract_artifacts(text) == []


def test_tilde_fence() -> None:
    text = "~~~python tools/x.py\nprint('```')\n~~~\n"
    assert files(text) == {"tools/x.py": ("python", "print('```')\n")}


def test_longer_fence_holds_inner_fences() -> None:
    inner = "# Title\n\n```bash\nmake\n```\n\nEnd.\n"
    text = f"````markdown README.md\n{inner}````\n"
    assert files(text) == {"README.md": ("markdown", inner)}


def test_unclosed_block_is_ignored() -> None:
    assert extract_artifacts("```python a.py\nx = 1\n") == []


# --- safe_relative_path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.py", "a/b.py"),
        ("./a/b.py", "a/b.py"),
        ("a//b/./c.py", "a/b/c.py"),
        ("a/x/../b.py", "a/b.py"),
        ("a\\b\\c.py", "a/b/c.py"),
        (" `a/b.py` ", "a/b.py"),
        ("'a.py'", "a.py"),
        ("/etc/passwd", None),
        ("\\\\server\\share\\x.py", None),
        ("..", None),
        ("../x.py", None),
        ("a/../../b", None),
        ("a\\..\\..\\b", None),
        ("C:\\Windows\\x.py", None),
        ("c:/x.py", None),
        ("C:x.py", None),
        ("", None),
        (".", None),
        ("a/..", None),
    ],
)
def test_safe_relative_path(raw: str, expected: str | None) -> None:
    assert safe_relative_path(raw) == expected
