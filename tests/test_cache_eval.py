"""`facilitair cache eval` on the labelled pairs that ship with the fow-cache package."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path


def dev_pairs() -> Path:
    spec = importlib.util.find_spec("fow_cache")
    assert spec is not None and spec.origin is not None, "fow-cache is a dev dependency"
    return Path(spec.origin).parent / "data" / "pairs.jsonl"


CLI = Path(sys.executable).parent / "facilitair"


async def eval_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [CLI, "cache", "eval", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
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
