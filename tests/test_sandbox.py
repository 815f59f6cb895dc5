"""The test sandbox for real: pytest in a subprocess with no network, kernel-enforced limits and
a wall-clock timeout, while the caller's event loop keeps running."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from facilitair.sandbox import Limits, SandboxRun, run_pytest

LIMITS = Limits(cpu_s=10, memory_mb=512, processes=32, wall_s=20.0, output_bytes=16 * 1024)
CALC = "def add(a, b):\n    return a + b\n"


async def run(test_body: str, limits: Limits = LIMITS, **files: str) -> SandboxRun:
    return await run_pytest({"calc.py": CALC, **files, "test_it.py": test_body}, limits)


async def test_passing_and_failing_tests_are_counted_and_their_output_streamed() -> None:
    body = (
        "from calc import add\n\n"
        "def test_adds():\n    assert add(1, 2) == 3\n\n"
        "def test_wrong():\n    assert add(1, 1) == 3\n"
    )
    streamed: list[str] = []

    async def collect(text: str) -> None:
        streamed.append(text)

    result = await run_pytest({"calc.py": CALC, "test_it.py": body}, LIMITS, collect)

    assert (result.passed, result.failed, result.errors) == (1, 1, 0)
    assert not result.ok and not result.timed_out
    assert "1 failed, 1 passed" in result.output
    assert "".join(streamed) == result.output


async def test_the_network_is_out_of_reach() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        body = (
            "import socket\n\n"
            "def test_reach_out():\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        )
        result = await run(body)

    assert result.isolated_network
    assert result.failed == 1
    assert "unreachable" in result.output or "refused" in result.output


async def test_a_fork_bomb_is_capped_and_every_process_killed() -> None:
    body = "import os\n\ndef test_fork_forever():\n    while True:\n        os.fork()\n"
    began = time.monotonic()
    result = await run(body, LIMITS.model_copy(update={"wall_s": 8.0}))

    assert result.process_cap
    assert time.monotonic() - began < 15
    assert not result.ok


async def test_unbounded_memory_is_refused() -> None:
    body = "def test_hog():\n    hog = bytearray(4 * 1024 ** 3)\n    assert hog\n"
    result = await run(body)

    assert result.failed == 1 and "MemoryError" in result.output


async def test_a_test_that_sleeps_forever_is_stopped_and_the_loop_stays_responsive() -> None:
    body = "import time\n\ndef test_sleep():\n    time.sleep(3600)\n"
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await run(body, LIMITS.model_copy(update={"wall_s": 3.0}))
    finally:
        ticker.cancel()

    assert result.timed_out and result.exit_code is None
    assert result.duration_s >= 3.0
    assert "time limit" in result.summary()
    # The event loop kept running all along (a loop blocked on the run would show one gap of
    # the run's whole length).
    assert len(gaps) >= 20 and max(gaps) < 1.5


async def test_output_beyond_the_cap_is_counted_not_kept() -> None:
    body = "def test_loud():\n    print('x' * 1_000_000)\n    assert False\n"
    result = await run(body, LIMITS.model_copy(update={"output_bytes": 4096}))

    assert result.truncated and len(result.output) <= 4096
    assert result.failed == 1  # the counts come from the report, not the cut output


@pytest.mark.parametrize("path", ["../escape.py", "/etc/evil.py"])
async def test_files_cannot_be_written_outside_the_run_folder(path: str) -> None:
    result = await run_pytest(
        {path: "x = 1\n", "test_it.py": "def test_ok():\n    assert True\n"}, LIMITS
    )
    assert result.passed == 1
