"""Run one real task through a real Facilitair server and print its event stream as it comes.

    .venv/bin/python scripts/demo.py ["Build a REST API with JWT authentication"]

With FAC_LLM_BASE_URL (and FAC_LLM_API_KEY) set, the agents use that OpenAI-compatible
endpoint. Without it, a scripted stand-in for the OpenAI API (the one the tests use) answers,
so the whole pipeline runs offline; the local model default replaces it when it lands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from httpx_sse import connect_sse
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

console = Console(highlight=False)


def scripted_provider() -> object:
    from fakes.openai_server import FakeOpenAI, Reply

    fake = FakeOpenAI().start()
    plan = {
        "chunks": [
            {"id": "auth", "description": "JWT helpers in app/auth.py", "depends_on": []},
            {"id": "api", "description": "FastAPI routes in app/main.py", "depends_on": ["auth"]},
        ]
    }
    fake.set_default(
        "architect",
        Reply(
            text="Two modules: token handling and the HTTP routes.\n\n"
            f"```json\n{json.dumps(plan)}\n```\n",
            delay_s=0.01,
        ),
    )
    code = {
        "auth": "```python path=app/auth.py\nimport jwt\n\nSECRET = 'change-me'\n\n\n"
        "def issue(user: str) -> str:\n    return jwt.encode({'sub': user}, SECRET)\n```\n",
        "api": "```python path=app/main.py\nfrom fastapi import FastAPI\n\nfrom app.auth import"
        " issue\n\napp = FastAPI()\n\n\n@app.post('/login')\ndef login(user: str) -> dict:\n"
        "    return {'token': issue(user)}\n```\n",
    }
    fake.set_default(
        "coder",
        lambda request: Reply(
            text=code["auth" if "Your chunk: auth" in request.messages[-1]["content"] else "api"],
            delay_s=0.01,
        ),
    )
    fake.set_default(
        "reviewer", '```json\n{"approved": true, "score": 8, "issues": []}\n```\n'
    )
    fake.set_default(
        "documenter", Reply(text="# JWT API\n\nRun `uvicorn app.main:app`.\n", delay_s=0.01)
    )
    return fake


def main() -> int:
    task = sys.argv[1] if len(sys.argv) > 1 else "Build a REST API with JWT authentication"
    env = dict(os.environ)
    fake = None
    if not env.get("FAC_LLM_BASE_URL"):
        fake = scripted_provider()
        env["FAC_LLM_BASE_URL"] = fake.base_url  # type: ignore[attr-defined]
        console.print(
            "[yellow]No FAC_LLM_BASE_URL set: the agents' answers come from a scripted stand-in "
            "for the OpenAI API. Set FAC_LLM_BASE_URL / FAC_LLM_API_KEY to any OpenAI-compatible "
            "endpoint for real ones.[/]"
        )
    data_dir = tempfile.mkdtemp(prefix="facilitair-demo-")
    env.setdefault("FAC_DATA_DIR", data_dir)
    bin_dir = Path(sys.executable).parent
    key = subprocess.run(
        [bin_dir / "facilitair", "keys", "create", "--name", "demo"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    port = "8765"
    server = subprocess.Popen(
        [bin_dir / "facilitair", "serve", "--port", port, "--log-level", "warning"], env=env
    )
    try:
        return stream_task(f"http://127.0.0.1:{port}", key, task)
    finally:
        server.terminate()
        server.wait(timeout=15)
        if fake is not None:
            fake.stop()  # type: ignore[attr-defined]


def stream_task(base: str, key: str, task: str) -> int:
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=base, headers=headers, timeout=None) as client:
        for _ in range(100):
            try:
                if client.get("/api/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        created = client.post("/api/stream/task", json={"task": task}).json()
        console.print(f"[dim]stream {created['stream_id']}[/]")
        current = None
        with connect_sse(client, "GET", created["events_url"]) as source:
            for sse in source.iter_sse():
                data = json.loads(sse.data)
                if sse.event == "chunk_started":
                    console.print(f"\n[bold cyan]── {data['agent']} ({data['model']}): "
                                  f"{data['description']}[/]")  # fmt: skip
                    current = data["chunk_id"]
                elif sse.event == "token_stream":
                    if data["chunk_id"] != current:
                        console.print(f"\n[cyan]── {data['agent']}[/]")
                        current = data["chunk_id"]
                    console.print(data["tokens"], end="", markup=False)
                elif sse.event == "task_progress":
                    console.print(f"[magenta]plan: {data['total_chunks']} turns, "
                                  f"~{data['estimated_time']} s, est. ${data['estimated_cost']}[/]")  # fmt: skip
                elif sse.event == "system_message":
                    console.print(f"\n[yellow]{data['message']}[/]")
                elif sse.event == "task_completed":
                    metrics = data["metrics"]
                    files = ", ".join(a["path"] for a in data["artifacts"])
                    console.print(f"\n[bold green]Completed in {metrics['duration_s']} s, "
                                  f"{metrics['llm_calls']} LLM calls, cost ${metrics['cost_usd']}. "
                                  f"Files: {files}[/]")  # fmt: skip
                    return 0
                elif sse.event in ("task_error", "task_cancelled"):
                    console.print(f"\n[bold red]{sse.event}: {data}[/]")
                    return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
