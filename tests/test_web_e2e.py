"""The web UI end to end: Debian's Chromium, driven by playwright-core (web/e2e/run.mjs), against
the real server (serving web/dist) and the scripted OpenAI fake.

Needs `npm ci && npm run build` in web/ and `apt-get install chromium` first (the test command
does both). Without them these tests are skipped, unless FAC_REQUIRE_WEB_E2E=1, when they fail.
Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.openai_server import FakeOpenAI, Reply
from support import (
    COUNCIL,
    ServerThread,
    answer_of,
    collect,
    new_key,
    script_council,
    script_happy_path,
)

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
DIST = WEB / "dist"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("FAC_CHROMIUM", "/usr/bin/chromium")
TASK = "Build a tiny key-value store with a CLI"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing (cd web && npm ci)"
    if not (DIST / "index.html").is_file():
        return "web/dist is not built (cd web && npm run build)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


_why = _missing()
if _why and os.environ.get("FAC_REQUIRE_WEB_E2E") == "1":
    raise RuntimeError(f"web end-to-end tests required but cannot run: {_why}")
pytestmark = [
    pytest.mark.skipif(_why is not None, reason=_why or ""),
    pytest.mark.timeout(180),
]


@pytest.fixture
def web_server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(web_dir=DIST)


def run_scenario(server: ServerThread, key: str, scenario: str, **extra_env: str) -> dict[str, Any]:
    """Runs one scenario of web/e2e/run.mjs; returns its JSON report (and fails on a bad one)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BASE_URL": server.base_url,
        "API_KEY": key,
        "SCENARIO": scenario,
        "SCREENSHOT_DIR": str(SCREENSHOTS),
        "TASK": TASK,
        "CHROMIUM": CHROMIUM,
        "TIMEOUT_MS": "60000",
        **extra_env,
    }
    proc = subprocess.run(
        ["node", str(WEB / "e2e" / "run.mjs")],
        cwd=WEB,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no report from run.mjs (exit {proc.returncode}): {proc.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    # The whole report is kept beside the screenshots, for a failed run above all.
    (SCREENSHOTS / f"{scenario}.json").write_text(json.dumps(report, indent=1))
    assert proc.returncode == 0 and report["ok"], (
        f"{scenario}: {report.get('error')}\n{report.get('failureText', '')[:2000]}"
    )
    # Whatever the scenario: the key only ever travels in a header, the CSP is served and
    # nothing on the page breaks it.
    assert report["keyInAnyUrl"] is False
    for request in report["requests"]:
        if request["path"].startswith("/api/stream/events/"):
            assert "ticket" in request["params"], request
            assert not request["keyHeader"], request
    assert report["page"]["status"] == 200
    assert "default-src 'self'" in (report["page"]["csp"] or "")
    assert report["cspViolations"] == []
    assert report["pageErrors"] == []
    for path in report["screenshots"]:
        assert Path(path).stat().st_size > 0
    return report


def completed_contents(server: ServerThread, key: str, stream_id: str) -> dict[str, str]:
    """Each chunk's final text, as the server sent it in chunk_completed (a full replay)."""

    async def read() -> dict[str, str]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            events = await collect(client, stream_id, key)
        return {
            e.data["chunk_id"]: e.data["content"] for e in events if e.event == "chunk_completed"
        }

    return asyncio.run(read())


def assert_lanes_match(report: dict[str, Any], contents: dict[str, str]) -> None:
    lanes = {lane["chunkId"]: lane for lane in report["lanes"]}
    assert set(lanes) == set(contents)
    for chunk_id, content in contents.items():
        lane = lanes[chunk_id]
        assert lane["done"], chunk_id
        assert not lane["repaired"], f"{chunk_id}: streamed text differed from its content"
        assert lane["text"] == content, chunk_id


def test_server_serves_the_built_ui(web_server: ServerThread) -> None:
    """index.html is revalidated, hashed assets are cached for good, the CSP allows no inline
    script, and the page references only its own origin."""
    with httpx.Client(base_url=web_server.base_url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        assert "<script>" not in page.text  # every script is a file
        for asset in assets:
            response = client.get(asset)
            assert response.status_code == 200
            assert "immutable" in response.headers["cache-control"]


def test_submit_streams_tokens_live_then_shows_files(
    web_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.05)
    key = new_key(web_server.settings, "alice")
    report = run_scenario(web_server, key, "happy")

    live = report["live"]
    assert live["status"] == "running" and live["text"].strip()  # tokens before the run ended
    assert report["finalStatus"] == "completed"
    paths = {f["path"] for f in report["files"]}
    assert {"pkg/c1.py", "pkg/c2.py"} <= paths
    assert all(f["hasCopy"] and f["hasDownload"] and f["highlighted"] for f in report["files"])
    assert report["clipboard"].startswith("line_0 = 0")
    assert report["download"] in {p.rsplit("/", 1)[-1] for p in paths}

    roles = [lane["role"] for lane in report["lanes"]]
    assert roles.count("coder") == 2
    assert {"architect", "reviewer", "documenter"} <= set(roles)
    assert_lanes_match(report, completed_contents(web_server, key, report["run"]["streamId"]))
    assert report["run"]["header"]["progress"].startswith("5 / 5")
    assert report["run"]["duplicatesIgnored"] == 0

    # Phone width: nothing wider than the screen, the two coders stacked.
    assert report["phone"]["scrollWidth"] <= report["phone"]["clientWidth"]
    coders = [lane for lane in report["phoneLanes"] if lane["chunkId"] in {"c1", "c2"}]
    assert coders[0]["box"]["x"] == coders[1]["box"]["x"]
    assert coders[0]["box"]["y"] != coders[1]["box"]["y"]

    # History re-opens the finished stream by replaying it: the same text.
    assert report["replayStatus"] == "completed"
    before = {lane["chunkId"]: lane["text"] for lane in report["lanes"]}
    assert {lane["chunkId"]: lane["text"] for lane in report["replayLanes"]} == before


def test_council_shows_member_lanes_then_the_ranking(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "council.toml"
    config.write_text(COUNCIL, encoding="utf-8")
    council = make_server(web_dir=DIST, config=config)
    script_council(fake, lambda r: Reply(text=answer_of(r.model) * 6, delay_s=0.02))
    key = new_key(council.settings, "alice")
    report = run_scenario(council, key, "council")

    member_lanes = [lane for lane in report["liveLanes"] if lane["chunkId"].startswith("propose-")]
    assert len(member_lanes) == 3  # every member has its own lane while proposing
    assert report["finalStatus"] == "completed"
    assert [row[2] for row in report["ranking"]] == ["model-a", "model-b", "model-c"]
    assert report["agreement"].startswith("Agreement (Kendall's W): 1.00")
    lanes = {lane["chunkId"] for lane in report["lanes"]}
    assert {"propose-1", "review-1", "synthesis"} <= lanes
    assert_lanes_match(report, completed_contents(council, key, report["run"]["streamId"]))


def test_cancel_mid_run(web_server: ServerThread, fake: FakeOpenAI) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.3)
    key = new_key(web_server.settings, "alice")
    report = run_scenario(web_server, key, "cancel")
    assert report["live"]["status"] == "running"
    assert report["finalStatus"] == "cancelled"
    assert report["cancelButtonGone"]
    assert "Cancelled" in report["notice"]
    cancels = [r for r in report["requests"] if r["path"].endswith("/cancel")]
    assert len(cancels) == 1 and cancels[0]["keyHeader"] and cancels[0]["status"] == 200
    # Partial output is kept.
    assert any(lane["text"].strip() for lane in report["lanes"])
    assert not all(lane["done"] for lane in report["lanes"])


def test_dropped_connection_resumes_without_duplicates(
    web_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=2, coder_delay_s=0.08)
    key = new_key(web_server.settings, "alice")
    report = run_scenario(
        web_server, key, "drop", DROP_AFTER_TOKENS="3", DROP_CHUNK="c1", REWIND="3"
    )
    assert report["finalStatus"] == "completed"
    streams = [r for r in report["requests"] if r["path"].startswith("/api/stream/events/")]
    first, second = streams[0], streams[1]
    assert first["droppedAfterTokens"] >= 3 and first["droppedInChunk"] == "c1"  # mid-turn
    assert "last_event_id" not in first["params"]
    # The reconnect asked to resume after the last event it had (with a fresh ticket) ...
    assert int(second["params"]["last_event_id"]) > 0
    tickets = [r for r in report["requests"] if r["path"].endswith("/ticket")]
    assert len(tickets) >= 2
    # ... the proxy made the server send some events again: all were ignored.
    assert report["run"]["reconnects"] >= 1
    assert report["run"]["duplicatesIgnored"] >= 1
    assert_lanes_match(report, completed_contents(web_server, key, report["run"]["streamId"]))


def test_wrong_key_shows_a_clear_error(web_server: ServerThread, fake: FakeOpenAI) -> None:
    script_happy_path(fake)
    report = run_scenario(web_server, "fac_this-key-does-not-exist", "wrong_key")
    assert report["keyFormError"].startswith("Invalid or revoked API key.")
    assert report["keyStored"] is None  # a refused key is not kept
    assert "Invalid or revoked API key." in report["taskError"]
    assert report["taskErrorCode"] == "unauthorized"
    assert report["changeKeyOffered"]
    assert report["alerts"] == 1  # one clear message, not one per panel
    assert not report["runStarted"]


def test_cached_repeat_shows_the_badge(web_server: ServerThread, fake: FakeOpenAI) -> None:
    script_happy_path(fake, chunks=2)
    key = new_key(web_server.settings, "alice")
    report = run_scenario(web_server, key, "cache")
    assert report["firstBadge"] == 0
    assert re.search(r"Cache hit · \d+% match · saved \$", report["badge"]), report["badge"]
    kinds = [m["kind"] for m in report["systemMessages"]]
    assert "cache_hit" in kinds
