"""`facilitair cache eval` on labelled pairs: the coding-task halves that ship with Facilitair,
the fow-cache package's pairs, and files of the user's."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAI, Reply


def dev_pairs() -> Path:
    spec = importlib.util.find_spec("fow_cache")
    assert spec is not None and spec.origin is not None, "fow-cache is a dev dependency"
    return Path(spec.origin).parent / "data" / "pairs.jsonl"


CLI = Path(sys.executable).parent / "facilitair"


async def eval_cli(
    *paths: Path, options: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [CLI, "cache", "eval", *options, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=540,
        env=None if env is None else {**os.environ, **env},
    )


async def test_the_matcher_keeps_wrong_answers_rare_on_the_dev_pairs() -> None:
    done = await eval_cli(dev_pairs())
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    served, _, _ = lines["served should-hits"].partition(" =")
    wrong, _, _ = lines["answered traps (wrong)"].partition(" =")
    hits, should = map(int, served.split("/"))
    bad, traps = map(int, wrong.split("/"))
    assert (should, traps) == (300, 300)
    assert bad / traps <= 0.01  # precision first: at most 1% of traps answered
    assert hits / should >= 0.60
    assert "p99" in lines["lookup latency (embedding included)"]


async def test_eval_honours_contexts_and_rejects_bad_files(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    same = {"a": "Build a todo app", "b": "Build a todo app", "same_answer": True}
    other = {**same, "context_a": {"preferred_language": "go"}, "same_answer": False}
    pairs.write_text("\n".join(json.dumps(p) for p in (same, other)) + "\n")
    done = await eval_cli(pairs)
    assert "served should-hits: 1/1" in done.stdout
    assert "answered traps (wrong): 0/1" in done.stdout  # another context never matches

    pairs.write_text('{"a": "x"}\n')
    bad = await eval_cli(pairs)
    assert bad.returncode == 2
    assert "needs a, b and same_answer" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.timeout(600)  # five sets, 1,460 lookups, on a busy CI machine
async def test_without_files_it_reports_every_shipped_set_and_the_dev_pairs() -> None:
    done = await eval_cli()
    assert done.returncode == 0, done.stderr
    sections = done.stdout.split("\n\n")
    names = [section.splitlines()[0] for section in sections]
    assert names == [
        "== coding-tune.jsonl",
        "== coding-test.jsonl",
        "== coding-fresh.jsonl",
        "== coding-hard.jsonl",
        "== pairs.jsonl",
    ]
    for section, total in zip(sections, (250, 250, 160, 200, 600), strict=True):
        assert f"pairs: {total} " in section
        assert "served should-hits:" in section and "answered traps (wrong):" in section


async def test_with_verify_the_llm_verifier_is_asked_in_the_band_and_its_cost_reported(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    """`--verify` asks the Reviewer's model (here the fake provider, a real HTTP server) about
    the matches the guard lets through within the band, as the server does, and says what
    that took and cost; its NO turns a served pair into a miss."""
    pairs = tmp_path / "pairs.jsonl"
    same = {"a": "Build a todo app", "b": "Please build a todo app", "same_answer": True}
    trap = {"a": "Build a chat server", "b": "Build a chat server", "same_answer": False}
    pairs.write_text("\n".join(json.dumps(p) for p in (same, trap)) + "\n")
    fake.script("default", Reply("YES"), Reply("NO"))
    env = {
        "FAC_LLM_BASE_URL": fake.base_url,
        "FAC_LLM_API_KEY": "test-key",
        "FAC_DATA_DIR": str(tmp_path / "data"),
        "FAC_CACHE_VERIFY_BAND": "1.0",
    }
    done = await eval_cli(pairs, options=("--verify",), env=env)
    assert done.returncode == 0, done.stderr
    assert "served should-hits: 1/1" in done.stdout
    assert "answered traps (wrong): 0/1" in done.stdout  # the verifier's NO
    assert "misses, by reason: verifier 1" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("verifier ("))
    assert "asked 2 times, said no 1" in line and "ms per call" in line and "$" in line
    asked = [r.messages[0]["content"] for r in fake.requests_for("default")]
    assert len(asked) == 2 and "Please build a todo app" in asked[0]

    plain = await eval_cli(pairs, env=env)  # without --verify nothing is asked
    assert "answered traps (wrong): 1/1" in plain.stdout
    assert len(fake.requests_for("default")) == 2
