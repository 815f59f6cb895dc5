"""The README's first command as a newcomer runs it: a fresh clone, an empty pip cache.

    .venv/bin/python bench/first_run.py [--task "…"]

Clones this repository (committed state) into a temporary folder, runs
`bash scripts/run.sh TASK --language python --framework fastapi --json` there with
`PIP_CACHE_DIR` pointing at an empty folder and a fresh data folder, and prints when setup
finished, when the first `token_stream` arrived and when the task ended, counted from the
start. Run it on an otherwise idle machine: it measures the install as much as the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK = "Build a REST API with JWT authentication"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--task", default=TASK)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facilitair-first-run-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAC_")}
        env.update(PIP_CACHE_DIR=str(Path(tmp) / "pip-cache"), FAC_DATA_DIR=str(Path(tmp) / "data"))
        command = ["bash", "scripts/run.sh", args.task, "--language", "python"]
        command += ["--framework", "fastapi", "--json"]
        began = time.monotonic()
        marks: dict[str, float] = {}
        process = subprocess.Popen(
            command, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            now = time.monotonic() - began
            if line.startswith("[setup") and line.rstrip().endswith("done"):
                marks.setdefault("setup done", now)
            if not line.startswith("{"):
                continue
            event = json.loads(line).get("event")
            if event == "token_stream":
                marks.setdefault("first token_stream", now)
            elif event in ("task_completed", "task_error", "task_cancelled"):
                marks[event] = now
        code = process.wait()
    for name, seconds in marks.items():
        print(f"{name:<20} {seconds:6.1f} s")
    print(f"{'exit code':<20} {code}")
    return 0 if code == 0 and "task_completed" in marks else 1


if __name__ == "__main__":
    sys.exit(main())
