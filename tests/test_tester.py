"""The Tester in the sequential workflow: the Coder's tests run in the sandbox, failures stream
in the Tester's lane and go back to the Coder, and the result says whether they passed."""

from __future__ import annotations

import httpx

from fakes.openai_server import FakeOpenAI, RecordedRequest
from support import README_TEXT, collect, plan_reply, start_task, verdict_reply

BROKEN = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def coder(request: RecordedRequest) -> str:
    revising = "tests ran" in request.messages[-1]["content"]
    body = FIXED if revising else BROKEN
    return f"```python path=calc.py\n{body}```\n\n```python path=test_calc.py\n{TESTS}```\n"


async def test_failing_tests_stream_go_back_to_the_coder_and_pass_after_revision(
    client: httpx.AsyncClient, key: str, fake: FakeOpenAI
) -> None:
    fake.script("architect", plan_reply(("c1", "Write calc.py with add()", [])))
    fake.set_default("coder", coder)
    fake.set_default("reviewer", verdict_reply(True))
    fake.set_default("documenter", README_TEXT)
    created = await start_task(client, key, {"task": "Write an add function with tests"})
    events = await collect(client, created["stream_id"], key)

    assert events[-1].event == "task_completed", events[-1].data
    runs = [e.data for e in events if e.event == "chunk_completed" and e.data["role"] == "tester"]
    assert [(r["tests"]["passed"], r["tests"]["failed"]) for r in runs] == [(0, 1), (1, 0)]
    lane = [
        e.data["tokens"] for e in events if e.event == "token_stream" and e.data["role"] == "tester"
    ]
    assert "assert -1 == 5" in "".join(lane)  # the failure streamed in the Tester's lane
    revision = fake.requests_for("coder")[-1].messages[-1]["content"]
    assert "1 failed" in revision  # the failing output went back to the Coder
    assert "Passed: 1 passed, 0 failed" in events[-1].data["content"]
    coders = [e.data for e in events if e.event == "chunk_started" and e.data["role"] == "coder"]
    assert [c["iteration"] for c in coders] == [1, 2]
