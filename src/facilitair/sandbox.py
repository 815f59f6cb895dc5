"""Run generated code's tests where it cannot hurt the server: a fresh folder, a subprocess in
its own process group, and limits the kernel enforces.

- **No network**: the child gets a new, empty network namespace (`unshare --net`) when the
  server runs as root, or as an unprivileged user with user namespaces
  (`unshare --net --map-root-user`); when neither works the run says `isolated_network=False`.
- **Limits** (`Limits`): CPU seconds, address space, open files and file size (`prlimit`), and
  a cap on processes. The kernel never counts root's processes against
  RLIMIT_NPROC, so as root the cap is a pids cgroup made for the run (v1 or v2); as another
  user it is RLIMIT_NPROC. When neither is available the run says `process_cap=False`.
- **A wall-clock timeout** kills the whole process group, grandchildren included.
- **Output** streams as it comes, up to `output_bytes`; the rest is counted, not kept.

Everything waits with asyncio: the server's event loop never blocks on a test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

READ_SIZE = 4096


class Limits(BaseModel):
    """What one run may use; `[workflow.tester.limits]` in the configuration."""

    model_config = ConfigDict(frozen=True)

    cpu_s: int = Field(default=20, ge=1)  # CPU seconds
    memory_mb: int = Field(default=512, ge=64)  # address space
    processes: int = Field(default=32, ge=4)
    open_files: int = Field(default=256, ge=16)
    file_mb: int = Field(default=20, ge=1)  # the largest file it may write
    wall_s: float = Field(default=60.0, gt=0)  # then the whole process group is killed
    output_bytes: int = Field(default=64 * 1024, ge=1024)


@dataclass(frozen=True)
class SandboxRun:
    passed: int
    failed: int
    errors: int
    duration_s: float
    exit_code: int | None
    output: str
    timed_out: bool = False
    truncated: bool = False
    isolated_network: bool = True
    process_cap: bool = True

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.failed == 0 and self.errors == 0 and self.passed > 0

    def summary(self) -> str:
        if self.timed_out:
            return f"stopped after {self.duration_s:.1f} s (time limit)"
        counts = f"{self.passed} passed, {self.failed} failed, {self.errors} errors"
        return f"{counts} in {self.duration_s:.1f} s"


OnOutput = Callable[[str], Awaitable[None]]


async def run_pytest(
    files: dict[str, str], limits: Limits, on_output: OnOutput | None = None
) -> SandboxRun:
    """Write `files` (relative path → text) to a fresh folder and run pytest there."""
    folder = await asyncio.to_thread(_prepare, files)
    as_root = os.geteuid() == 0
    group = await asyncio.to_thread(_PidsCgroup.make, limits.processes) if as_root else None
    try:
        wrapper, isolated = await asyncio.to_thread(_network_wrapper, as_root)
        report = folder / ".report.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            str(folder),
        ]
        command = [*_limits_prefix(limits), *command]
        if group is not None:
            command = [*group.entry_prefix(), *command]
        return await _run([*wrapper, *command], folder, report, limits, on_output, isolated, group)
    finally:
        if group is not None:
            await asyncio.to_thread(group.close)
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _prepare(files: dict[str, str]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="facilitair-tests-")).resolve()
    for relative, text in files.items():
        target = (folder / relative).resolve()
        if not target.is_relative_to(folder):
            continue  # a path that climbs out is not written
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder


async def _run(
    command: list[str],
    folder: Path,
    report: Path,
    limits: Limits,
    on_output: OnOutput | None,
    isolated: bool,
    group: _PidsCgroup | None,
) -> SandboxRun:
    began = time.monotonic()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
        # Plain pytest, whatever plugins the server's environment holds: generated tests get
        # the same runner everywhere, and a run starts in 0.3 s instead of 2 s with the dev
        # tools' plugins (hypothesis, schemathesis) loaded.
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: one kill stops everything it started
    )
    kept: list[str] = []
    size = 0
    truncated = False
    timed_out = False

    async def pump() -> None:
        nonlocal size, truncated
        assert process.stdout is not None
        while chunk := await process.stdout.read(READ_SIZE):
            if size >= limits.output_bytes:
                truncated = True
                continue
            text = chunk[: limits.output_bytes - size].decode("utf-8", "replace")
            size += len(chunk)
            kept.append(text)
            if on_output is not None:
                await on_output(text)

    try:
        async with asyncio.timeout(limits.wall_s):
            await pump()
            await process.wait()
    except TimeoutError:
        timed_out = True
    finally:
        _kill_group(process.pid)
        if group is not None:
            await asyncio.to_thread(group.kill_all)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    passed, failed, errors = _counts(report)
    return SandboxRun(
        passed=passed,
        failed=failed,
        errors=errors,
        duration_s=round(time.monotonic() - began, 3),
        exit_code=None if timed_out else process.returncode,
        output="".join(kept),
        timed_out=timed_out,
        truncated=truncated,
        isolated_network=isolated,
        process_cap=group is not None or os.geteuid() != 0,
    )


def _limits_prefix(limits: Limits) -> list[str]:
    """`prlimit` sets the limits and execs the command. Not a preexec_fn: that would make the
    server fork in full on its event loop's thread instead of spawning."""
    mb = 1024 * 1024
    return [
        shutil.which("prlimit") or "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * mb}",
        f"--nofile={limits.open_files}",
        f"--fsize={limits.file_mb * mb}",
        f"--nproc={limits.processes}",
        "--core=0",
        "--",
    ]


class _PidsCgroup:
    """A pids cgroup for one run: at most `limit` processes, all of them killed at the end."""

    ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def make(cls, limit: int) -> _PidsCgroup | None:
        for root in cls.ROOTS:
            if not (root / "cgroup.procs").exists() or not os.access(root, os.W_OK):
                continue
            path = root / f"facilitair-{os.getpid()}-{time.monotonic_ns()}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return cls(path)
        return None

    def entry_prefix(self) -> list[str]:
        """A shell that moves itself into the cgroup, then execs the command: everything the
        command starts is in it from its first instruction."""
        procs = str(self.path / "cgroup.procs")
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs]

    def kill_all(self) -> None:
        for _ in range(50):  # a fork bomb keeps forking while it is being killed
            try:
                pids = (self.path / "cgroup.procs").read_text().split()
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.01)

    def close(self) -> None:
        self.kill_all()
        with contextlib.suppress(OSError):
            self.path.rmdir()


@functools.cache  # the answer does not change while the process runs: probe once
def _network_wrapper(as_root: bool) -> tuple[tuple[str, ...], bool]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return (), False
    if as_root:
        return (unshare, "--net", "--"), True
    probe = subprocess.run(
        [unshare, "--net", "--map-root-user", "true"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return (unshare, "--net", "--map-root-user", "--"), True
    return (), False


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, errors) from pytest's JUnit XML; zeros when it wrote none."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return 0, 0, 0
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failures = errors = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests - failures - errors - skipped, failures, errors
