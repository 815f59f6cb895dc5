"""The `facilitair` command, driven as a user would: a subprocess (or a real pseudo-terminal)
against the real server and the fake OpenAI provider (SPEC §8).

Exit codes: 0 completed, 1 task failed, 2 usage error, 3 server unreachable, 130 Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest

from facilitair.cli.artifacts import UnsafeArtifacts, plan_writes, write_artifacts
from fakes.openai_server import FakeOpenAI, Reply
from fakes.tcp_proxy import TcpProxy
from support import (
    COUNCIL,
    ServerThread,
    answer_of,
    code_reply,
    new_key,
    script_council,
    script_happy_path,
)

FACILITAIR = str(Path(sys.executable).parent / "facilitair")
TIMEOUT_S = 60
TERMINAL = {"task_completed", "task_error", "task_cancelled"}
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]")


# --- running the command -------------------------------------------------------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """stdout as NDJSON; fails unless every line is one `{id, event, data}` object."""
        events = []
        for line in self.stdout.splitlines():
            event = json.loads(line)
            assert isinstance(event, dict) and set(event) == {"id", "event", "data"}, line
            events.append(event)
        return events

    @property
    def message(self) -> str:
        """stderr as one line (Rich wraps long sentences at 80 columns)."""
        return " ".join(self.stderr.split())


def cli_env(**variables: str) -> dict[str, str]:
    """This process's environment without any FAC_* setting, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAC_")}
    env.update(variables)
    return env


def against(server: ServerThread | str, key: str, **variables: str) -> dict[str, str]:
    base = server if isinstance(server, str) else server.base_url
    return cli_env(FAC_API_BASE=base, FAC_API_KEY=key, **variables)


def cli(*args: str, env: dict[str, str]) -> Result:
    done = subprocess.run(
        [FACILITAIR, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def cli_all(*commands: list[str], env: dict[str, str]) -> list[Result]:
    """Independent commands, run at the same time."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: cli(*args, env=env), commands))


def assert_one_sentence(result: Result, *fragments: str) -> None:
    """A failed command explains itself briefly on stderr: no traceback, nothing on stdout."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.message, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


def spawn(*args: str, env: dict[str, str]) -> pexpect.spawn:
    """The command in a real pseudo-terminal of 40 rows by 120 columns."""
    return pexpect.spawn(
        FACILITAIR,
        list(args),
        env={**env, "TERM": "xterm-256color"},
        dimensions=(40, 120),
        encoding="utf-8",
        codec_errors="replace",
        timeout=TIMEOUT_S,
    )


def read_until(child: pexpect.spawn, done: Callable[[str], bool], timeout: float = 20) -> str:
    """Keep reading the terminal (so the child never blocks on a full pty) until `done` holds
    for the text read so far, without escape codes."""
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while not done(plain("".join(output))):
        assert time.monotonic() < deadline, "timed out; screen so far:\n" + plain("".join(output))
        try:
            output.append(child.read_nonblocking(65536, timeout=0.05))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            break
    return "".join(output)


def read_to_exit(child: pexpect.spawn, timeout: float = 30) -> tuple[int | None, str]:
    """Everything the child still writes, then its exit status."""
    child.expect(pexpect.EOF, timeout=timeout)
    output = child.before or ""
    child.close()
    return child.exitstatus, output


def plain(screen: str) -> str:
    return ANSI.sub("", screen)


# --- reading the events --------------------------------------------------------------------


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["id"] for e in events]


def turns(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(chunk_id, the text its token_stream events spelled, its chunk_completed content)."""
    streaming: dict[str, str] = {}
    done = []
    for event in events:
        data = event["data"]
        if event["event"] == "chunk_started":
            streaming[data["chunk_id"]] = ""
        elif event["event"] == "token_stream":
            streaming[data["chunk_id"]] += data["tokens"]
        elif event["event"] == "chunk_completed":
            done.append((data["chunk_id"], streaming.pop(data["chunk_id"]), data["content"]))
    return done


def assert_whole_stream(events: list[dict[str, Any]], last: str = "task_completed") -> None:
    """Ids 1..N without gap or repeat, one terminal event at the end, every turn's tokens
    adding up to its content."""
    assert ids(events) == list(range(1, len(events) + 1))
    assert events[0]["event"] == "task_started"
    assert events[-1]["event"] == last
    assert [n for n in names(events) if n in TERMINAL] == [last]
    for chunk_id, streamed, content in turns(events):
        assert streamed == content, chunk_id


def final_result(events: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = events[-1]["data"]
    return result


def task_list(server: ServerThread, key: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.base_url}/api/v1/tasks", headers={"X-API-Key": key})
    response.raise_for_status()
    return list(response.json()["items"])


def stream_status(server: ServerThread, key: str, stream_id: str) -> str:
    url = f"{server.base_url}/api/stream/status/{stream_id}"
    response = httpx.get(url, headers={"X-API-Key": key})
    response.raise_for_status()
    return str(response.json()["status"])


def slow_coder(fake: FakeOpenAI, *, lines: int = 200, delay_s: float = 0.05) -> None:
    """Every coder turn writes `lines` lines of Python, one token each `delay_s`."""

    def reply(request: Any) -> Reply:
        chunk = re.search(r"Your chunk: (\S+)", request.messages[-1]["content"])
        path = f"pkg/{chunk.group(1) if chunk else 'main'}.py"
        body = "\n".join(f"value_{n} = {n}" for n in range(lines))
        return Reply(text=code_reply(path, body), delay_s=delay_s)

    fake.set_default("coder", reply)


# --- run --json against a server --------------------------------------------------------------


def test_run_json_prints_the_whole_stream_as_ndjson(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2)

    result = cli("run", "--json", "Build a tiny key-value store", env=against(server, key))

    assert result.code == 0, result.stderr
    events = result.events
    assert_whole_stream(events)
    assert names(events)[:3] == ["task_started", "task_progress", "chunk_started"]
    started = [e["data"] for e in events if e["event"] == "chunk_started"]
    assert [s["role"] for s in started] == ["architect", "coder", "coder", "reviewer", "documenter"]
    assert sorted(s["chunk_id"] for s in started if s["role"] == "coder") == ["c1", "c2"]
    assert len(turns(events)) == len(started)
    paths = {a["path"] for a in final_result(events)["artifacts"]}
    assert {"pkg/c1.py", "pkg/c2.py"} <= paths
    # Human messages go to stderr, never between the JSON lines.
    assert "Traceback" not in result.stderr
    assert server.base_url in result.message


def test_run_a_council_from_the_cli(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "council.toml"
    config.write_text(COUNCIL, encoding="utf-8")
    server = make_server(config=config)
    script_council(fake, lambda request: answer_of(request.model))
    key = new_key(server.settings, "alice")

    result = cli("run", "--json", "--workflow", "council", "Build a CLI", env=against(server, key))

    assert result.code == 0, result.stderr
    started = [e["data"] for e in result.events if e["event"] == "chunk_started"]
    assert [s["phase"] for s in started] == ["propose"] * 3 + ["review"] * 3 + ["synthesize"]
    consensus = final_result(result.events)["metrics"]["consensus"]
    assert [r["model"] for r in consensus["ranking"]] == ["model-a", "model-b", "model-c"]


def test_run_embedded_server_completes_and_keeps_its_local_key(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    data = tmp_path / "data"
    env = cli_env(
        FAC_DATA_DIR=str(data),
        FAC_LLM_BASE_URL=fake.base_url,
        FAC_LLM_API_KEY="k",
        FAC_CACHE_ENABLED="false",  # no local embedding model needed; both runs reach the fake
    )

    script_happy_path(fake, chunks=1)
    first = cli("run", "--json", "Build a tiny key-value store", env=env)
    assert first.code == 0, first.stderr
    assert_whole_stream(first.events)
    assert "embedded server" in first.message
    key_file = data / "cli-api-key"
    local_key = key_file.read_text()
    assert local_key.strip()
    assert key_file.stat().st_mode & 0o077 == 0  # readable by this user only

    script_happy_path(fake, chunks=1)
    second = cli("run", "--json", "Build a tiny queue", env=env)
    assert second.code == 0, second.stderr
    assert_whole_stream(second.events)
    assert key_file.read_text() == local_key


# --- exit codes and error messages ------------------------------------------------------------


def test_task_error_exits_1_with_one_sentence(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(llm_max_retries=0)
    key = new_key(server.settings, "alice")
    fake.set_default("*", Reply(status=500))

    result = cli("run", "--json", "Build a tiny key-value store", env=against(server, key))

    assert result.code == 1, result.stderr
    assert_whole_stream(result.events, last="task_error")
    assert "Traceback" not in result.stderr
    assert "Task failed:" in result.message
    assert " ".join(final_result(result.events)["error"].split()) in result.message


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "nonsense"], "'nonsense' is not ROLE=MODEL"),
        (["--verbosity", "loud"], "must be filtered or full"),
        (["--model", "wizard=x"], "unknown role(s) in models: wizard"),
    ],
    ids=["model-without-equals", "unknown-verbosity", "unknown-role"],
)
def test_usage_errors_exit_2(
    server: ServerThread, key: str, fake: FakeOpenAI, args: list[str], says: str
) -> None:
    result = cli("run", *args, "Build a tiny key-value store", env=against(server, key))

    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert says in result.message
    assert task_list(server, key) == []  # nothing was started
    assert fake.requests == []


def test_unreachable_server_exits_3() -> None:
    result = cli("run", "Build a tiny key-value store", env=against("http://127.0.0.1:9", "k"))

    assert result.code == 3, result.stderr
    assert_one_sentence(result, "cannot reach the server at http://127.0.0.1:9")


def test_wrong_key_is_one_sentence(server: ServerThread, key: str) -> None:
    for args in (["run", "Build a tiny key-value store"], ["tasks"]):
        result = cli(*args, env=against(server, "fac_wrong"))
        assert result.code != 0
        assert_one_sentence(result)
        assert "key" in result.message.lower(), result.stderr


# --- Ctrl-C in a real terminal ------------------------------------------------------------------


SLOW_CODER = Reply(text="x\n" * 200, delay_s=0.05)  # ten seconds of tokens


def test_ctrl_c_cancels_the_task_on_the_server(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", SLOW_CODER)
    child = spawn("run", "Build a slow thing", env=against(server, key))

    read_until(child, lambda _: bool(fake.requests_for("coder")))
    streaming_since = time.monotonic()
    read_until(child, lambda _: time.monotonic() - streaming_since > 0.3)
    child.sendintr()
    status, screen = read_to_exit(child)

    assert status == 130, plain(screen)
    assert "Traceback" not in screen
    (task,) = task_list(server, key)
    assert fake.wait_for(lambda: stream_status(server, key, task["stream_id"]) == "cancelled")
    # The coder's request was aborted: no more tokens are paid for.
    (coder,) = fake.requests_for("coder")
    assert fake.wait_for(lambda: coder.disconnected_at is not None)


def interrupt_twice(server: ServerThread, key: str, fake: FakeOpenAI) -> tuple[int | None, str]:
    """Ctrl-C while the cancel request cannot reach the server, then Ctrl-C again, which
    must end the command at once; returns its exit status and everything it drew."""
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", SLOW_CODER)
    with TcpProxy.to_url(server.base_url) as proxy:
        child = spawn("run", "Build a slow thing", env=against(proxy.url, key))
        screen = read_until(child, lambda _: bool(fake.requests_for("coder")))
        proxy.hold_requests()
        child.sendintr()
        screen += read_until(child, lambda text: "Cancelling on the server" in text)
        child.sendintr()
        interrupted_at = time.monotonic()
        status, rest = read_to_exit(child, timeout=10)
        assert time.monotonic() - interrupted_at < 2, "the second Ctrl-C did not quit at once"
    (task,) = task_list(server, key)
    assert stream_status(server, key, task["stream_id"]) == "running"  # nobody cancelled it
    httpx.post(
        f"{server.base_url}/api/stream/{task['stream_id']}/cancel", headers={"X-API-Key": key}
    )
    return status, screen + rest


def test_second_ctrl_c_quits_at_once(server: ServerThread, key: str, fake: FakeOpenAI) -> None:
    status, screen = interrupt_twice(server, key, fake)

    assert status == 130, plain(screen)
    assert "Traceback" not in screen


def test_second_ctrl_c_gives_the_cursor_back(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    """The live view hides the cursor; quitting at once must not leave the terminal without."""
    status, screen = interrupt_twice(server, key, fake)

    assert status == 130
    hide, show = "\x1b[?25l", "\x1b[?25h"
    assert hide in screen
    assert screen.rfind(show) > screen.rfind(hide), "the cursor is left hidden"


# --- a dropped connection is resumed -----------------------------------------------------------


def test_dropped_connection_resumes_without_loss_or_repeat(
    server: ServerThread, key: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    script_happy_path(fake, chunks=2)
    slow_coder(fake, lines=30, delay_s=0.02)
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"

    def coder_tokens_printed() -> bool:
        coder_streaming = any(r.first_token_at for r in fake.requests_for("coder"))
        return coder_streaming and '"event": "token_stream"' in stdout.read_text()

    with (
        TcpProxy.to_url(server.base_url) as proxy,
        stdout.open("w") as out,
        stderr.open("w") as err,
    ):
        process = subprocess.Popen(
            [FACILITAIR, "run", "--json", "Build a tiny key-value store"],
            env=against(proxy.url, key),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert fake.wait_for(coder_tokens_printed, timeout=20)
            time.sleep(0.2)  # a few coder lines are through
            assert proxy.drop_all() >= 1
            code = process.wait(TIMEOUT_S)
        finally:
            process.kill()

    result = Result(code, stdout.read_text(), stderr.read_text())
    assert result.code == 0, result.stderr
    events = result.events
    assert_whole_stream(events)
    coder_turns = [t for t in turns(events) if t[0] in ("c1", "c2")]
    assert len(coder_turns) == 2
    assert "reconnecting" in result.message
    assert "Traceback" not in result.stderr


# --- --out: files land in the directory and nowhere else -------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (links not followed) with its content or link target."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            files[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            files[str(path.relative_to(root))] = path.read_text()
    return files


def result_with(*paths: str) -> dict[str, Any]:
    artifacts = [{"path": p, "language": "python", "content": f"# {p}\n"} for p in paths]
    return {"content": "# Result\n", "artifacts": artifacts}


def test_write_artifacts_writes_the_files_and_result_md(tmp_path: Path) -> None:
    out = tmp_path / "out"

    written = write_artifacts(out, result_with("app.py", "pkg/sub/mod.py"))

    assert snapshot(tmp_path) == {
        "out/RESULT.md": "# Result\n",
        "out/app.py": "# app.py\n",
        "out/pkg/sub/mod.py": "# pkg/sub/mod.py\n",
    }
    assert sorted(written) == sorted(out.resolve() / p for p in snapshot(out))


@pytest.mark.parametrize(
    "path",
    ["../evil.py", "{tmp}/evil.py", "a/../../b.py", "..", "", "C:/evil.py", "..\\evil.py"],
)
def test_write_artifacts_refuses_paths_outside_the_directory(tmp_path: Path, path: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)

    with pytest.raises(UnsafeArtifacts, match="refusing to write"):
        write_artifacts(out, result_with("fine.py", path.format(tmp=tmp_path)))

    assert snapshot(tmp_path) == before  # not even fine.py or RESULT.md


def test_plan_writes_refuses_absolute_system_paths(tmp_path: Path) -> None:
    # Only planned, never written: these tests may run as root.
    for path in ("/etc/passwd", "../../../../../../etc/passwd"):
        with pytest.raises(UnsafeArtifacts, match="refusing to write"):
            plan_writes(tmp_path, result_with(path), force=True)


def test_write_artifacts_does_not_follow_a_link_out_of_the_directory(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "linked").symlink_to(outside, target_is_directory=True)
    (out / "dangling.py").symlink_to(outside / "made.py")

    for path in ("linked/evil.py", "dangling.py"):
        with pytest.raises(UnsafeArtifacts, match="refusing to write"):
            write_artifacts(out, result_with(path), force=True)
    assert snapshot(outside) == {}


def test_write_artifacts_does_not_follow_a_result_md_link_out_of_the_directory(
    tmp_path: Path,
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "RESULT.md").symlink_to(outside / "stolen.md")

    with pytest.raises(UnsafeArtifacts):
        write_artifacts(out, result_with("app.py"))
    assert snapshot(outside) == {}


def test_existing_files_are_kept_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "app.py").write_text("mine\n")

    with pytest.raises(UnsafeArtifacts, match="--force"):
        plan_writes(out, result_with("app.py", "new.py"), force=False)
    with pytest.raises(UnsafeArtifacts, match="--force"):
        write_artifacts(out, result_with("app.py", "new.py"))
    assert snapshot(out) == {"app.py": "mine\n"}

    write_artifacts(out, result_with("app.py", "new.py"), force=True)
    assert snapshot(out) == {
        "RESULT.md": "# Result\n",
        "app.py": "# app.py\n",
        "new.py": "# new.py\n",
    }


def run_into(out: Path, server: ServerThread, key: str, fake: FakeOpenAI, *flags: str) -> Result:
    script_happy_path(fake, chunks=2)
    return cli(
        "run", "--json", "--out", str(out), *flags, "Build a tiny kv", env=against(server, key)
    )


def assert_written(out: Path, events: list[dict[str, Any]]) -> None:
    final = final_result(events)
    expected = {a["path"]: a["content"] for a in final["artifacts"]}
    expected["RESULT.md"] = final["content"]
    assert snapshot(out) == expected


def test_run_out_writes_the_artifacts(
    server: ServerThread, key: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    result = run_into(out, server, key, fake)

    assert result.code == 0, result.stderr
    assert {"pkg/c1.py", "pkg/c2.py", "RESULT.md"} <= set(snapshot(out))
    assert_written(out, result.events)
    assert "line_7 = 7" in (out / "pkg/c1.py").read_text()
    assert f"under {out}" in result.message


def test_run_out_refuses_to_overwrite_without_force(
    server: ServerThread, key: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_into(out, server, key, fake).code == 0
    (out / "RESULT.md").write_text("my notes\n")
    before = snapshot(out)

    again = run_into(out, server, key, fake)

    assert again.code != 0
    assert snapshot(out) == before
    assert len(task_list(server, key)) == 1  # refused before a task was started
    assert_one_sentence(again, "already exist", "--force")


def test_run_out_force_replaces_the_files(
    server: ServerThread, key: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_into(out, server, key, fake).code == 0
    (out / "RESULT.md").write_text("my notes\n")
    (out / "pkg/c1.py").write_text("stale\n")

    again = run_into(out, server, key, fake, "--force")

    assert again.code == 0, again.stderr
    assert_written(out, again.events)


# --- detach, watch, status, cancel, tasks ------------------------------------------------------


def test_detach_then_watch_status_tasks_and_cancel(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2)
    env = against(server, key)

    detached = cli("run", "--detach", "Build a tiny key-value store", env=env)
    assert detached.code == 0, detached.stderr
    stream_id = detached.stdout.strip()
    assert re.fullmatch(r"\S+", stream_id)
    assert detached.stdout == stream_id + "\n"

    replay = cli("watch", stream_id, env=env)  # stdout is not a TTY: NDJSON without --json
    assert replay.code == 0, replay.stderr
    assert_whole_stream(replay.events)
    assert {e["data"]["stream_id"] for e in replay.events} == {stream_id}

    later, status, tasks, cancel = cli_all(
        ["watch", stream_id, "--from", "5", "--json"],
        ["status", stream_id],
        ["tasks"],
        ["cancel", stream_id],
        env=env,
    )

    assert later.code == 0, later.stderr
    assert later.events == replay.events[5:]
    assert later.events[0]["id"] == 6

    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "completed"

    assert tasks.code == 0, tasks.stderr
    (item,) = json.loads(tasks.stdout)["items"]
    assert item["stream_id"] == stream_id
    assert item["status"] == "completed"

    assert cancel.code != 0
    assert_one_sentence(cancel)
    assert stream_status(server, key, stream_id) == "completed"


def test_watch_unknown_stream_is_one_sentence(server: ServerThread, key: str) -> None:
    result = cli("watch", "str_nope", "--json", env=against(server, key))

    assert result.code == 1
    assert_one_sentence(result, "str_nope")


# --- the live view ------------------------------------------------------------------------------


def test_tty_run_ends_with_the_result_and_its_files(
    server: ServerThread, key: str, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2)
    child = spawn("run", "Build a tiny key-value store", env=against(server, key))

    status, screen = read_to_exit(child)

    text = plain(screen)
    assert status == 0, text
    assert "Traceback" not in text
    final = text[text.rfind("Artifacts") :]
    assert "pkg/c1.py" in final
    assert "pkg/c2.py" in final
    assert "✓ completed" in text
    assert not re.search(r"^\{\"id\"", text, re.MULTILINE)  # a view, not NDJSON


# --- facilitair models ---------------------------------------------------------------------


def test_models_lists_each_role_with_its_endpoint_and_schema_support(tmp_path: Path) -> None:
    offline = cli("models", "--json", env=cli_env(FAC_DATA_DIR=str(tmp_path)))
    assert offline.code == 0, offline.stderr
    roles = {r["role"]: r for r in json.loads(offline.stdout)["roles"]}
    assert {r["endpoint"] for r in roles.values()} == {"local"}
    assert {r["model"] for r in roles.values()} == {"SmolLM2-135M-Instruct"}
    assert roles["architect"]["structured_output"] and roles["reviewer"]["structured_output"]
    assert not roles["coder"]["structured_output"]  # free text: no schema to send
    assert roles["coder"]["max_tokens"] == 384  # the local model's cap, not the role's 3000
    local = {m["model"]: m for m in json.loads(offline.stdout)["local_models"]}
    smol = local["SmolLM2-135M-Instruct"]
    assert smol["selected"] and smol["installed"]

    # An unknown host is not sent schemas unless its provider says so.
    remote = cli_env(FAC_DATA_DIR=str(tmp_path), FAC_LLM_BASE_URL="http://llm.example:8080/v1")
    roles = {r["role"]: r for r in json.loads(cli("models", "--json", env=remote).stdout)["roles"]}
    assert roles["architect"]["endpoint"] == "http://llm.example:8080/v1"
    assert roles["architect"]["model"] == "gpt-4o-mini"
    assert not roles["architect"]["structured_output"]
    config = tmp_path / "on.toml"
    config.write_text("[providers.default]\nstructured_output = true\n", encoding="utf-8")
    forced = cli("models", "--json", env={**remote, "FAC_CONFIG": str(config)})
    assert json.loads(forced.stdout)["roles"][0]["structured_output"]

    table = cli("models", env={**cli_env(FAC_DATA_DIR=str(tmp_path)), "COLUMNS": "160"})
    assert table.code == 0
    assert "SmolLM2-135M-Instruct (selected)" in table.stdout
    assert "FAC_LLM_BASE_URL" in table.message  # how to point it at a real model
