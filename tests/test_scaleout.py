"""Several real `facilitair serve` processes on one PostgreSQL + Redis: any process serves any
stream, cancels any task, shares the cache, the rate limit and the ticket secret, and a process
that dies loses nobody's events."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from facilitair.config import Settings
from facilitair.server.background import free_port
from fakes.openai_server import FakeOpenAI, Reply
from processes import ApiProcess, WorkerProcess
from services import Services, in_thread
from support import (
    Received,
    collect,
    iter_events,
    make_settings,
    names,
    new_key,
    read_until_tokens,
    script_happy_path,
    service_env,
    start_task,
)

Cluster = Callable[..., list[ApiProcess]]


@pytest.fixture
def scaleout(services: Services, fake: FakeOpenAI, tmp_path: Path) -> Iterator[Settings]:
    overrides = services.scaleout_settings()
    yield make_settings(tmp_path / "data", fake, **overrides)
    services.drop_database(overrides["database_url"])


@pytest.fixture
def cluster(scaleout: Settings, fake: FakeOpenAI, tmp_path: Path) -> Iterator[Cluster]:
    """Start N API processes sharing the test's database and Redis prefix."""
    started: list[ApiProcess] = []

    def start(count: int = 2, kind: type[ApiProcess] = ApiProcess, **variables: str) -> list[Any]:
        env = {
            **os.environ,
            **service_env(scaleout),
            "FAC_LLM_BASE_URL": fake.base_url,
            "FAC_LLM_API_KEY": "test-key",
            "FAC_LLM_RETRY_BASE_S": "0.01",
            **variables,
        }
        processes = [kind(env, tmp_path / f"process{len(started) + n}.log") for n in range(count)]
        started.extend(processes)
        return [p.wait_ready() for p in processes]

    yield start
    for process in started:
        process.stop()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[ApiProcess], httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []

    def client_for(process: ApiProcess) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=process.base_url, timeout=30)
        made.append(client)
        return client

    yield client_for
    for client in made:
        await client.aclose()


def seqs(events: list[Received]) -> list[int]:
    return [e.seq for e in events if e.event != "heartbeat"]


async def test_a_task_started_through_one_process_streams_live_through_another(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    one, two = cluster()
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=2, coder_delay_s=0.3)
    stream_id = (await start_task(clients(one), key))["stream_id"]
    events = await collect(clients(two), stream_id, key)
    assert seqs(events) == list(range(1, len(events) + 1))
    assert names(events)[0] == "task_started" and names(events)[-1] == "task_completed"
    # Live, not a replay after the fact: tokens arrived while the coders were still writing.
    first_token = next(e.at for e in events if e.event == "token_stream")
    assert events[-1].at - first_token > 0.2


async def test_a_client_whose_process_is_killed_resumes_elsewhere_exactly_once(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    (one,) = cluster(1)
    (two,) = cluster(1, FAC_RUN_TASKS="false")  # so the task runs on `one`
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=2)
    fake.set_default("coder", Reply(text="line of code\n" * 40, delay_s=0.02))
    stream_id = (await start_task(clients(one), key))["stream_id"]

    seen: list[Received] = []
    with pytest.raises(httpx.HTTPError):  # the connection dies with the process
        async for event in iter_events(clients(two), stream_id, key=key):
            seen.append(event)
            if sum(e.event == "token_stream" for e in seen) == 5:
                two.kill()
    rest = await collect(clients(one), stream_id, key, last_event_id=seen[-1].seq)
    whole = await collect(clients(one), stream_id, key)
    assert seqs(seen) + seqs(rest) == list(range(1, len(whole) + 1))
    assert [e.data for e in seen + rest] == [e.data for e in whole]
    assert rest[-1].event == "task_completed"


@pytest.mark.parametrize("runs_it", ["another API process", "a worker"])
async def test_cancel_through_one_process_stops_the_task_where_it_runs(
    runs_it: str, cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    (api,) = cluster(1, FAC_RUN_TASKS="false")  # accepts, streams and cancels only
    cluster(1, WorkerProcess if runs_it == "a worker" else ApiProcess)
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(text="partial line\n" * 200, delay_s=0.05))
    stream_id = (await start_task(clients(api), key))["stream_id"]
    seen = await read_until_tokens(clients(api), stream_id, key, 3, role="coder")
    cancelled_at = time.monotonic()
    response = await clients(api).post(
        f"/api/stream/{stream_id}/cancel", headers={"X-API-Key": key}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    coder = fake.requests_for("coder")[0]
    assert await fake.wait_for_async(lambda: coder.disconnected_at is not None, 2)
    assert coder.disconnected_at is not None and coder.disconnected_at - cancelled_at < 1.0
    rest = await collect(clients(api), stream_id, key, last_event_id=seen[-1].seq)
    assert rest[-1].event == "task_cancelled"
    detail = await clients(api).get(
        f"/api/v1/tasks/{seen[0].data['task_id']}", headers={"X-API-Key": key}
    )
    assert "partial line" in detail.json()["partial"]["c1"]


async def test_a_result_cached_through_one_process_is_a_hit_through_another(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    one, two = cluster()
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    body = {"task": "Build a REST API with JWT authentication", "context": {"frameworks": ["x"]}}
    first = await clients(one).post("/api/v1/collaborate", json=body, headers={"X-API-Key": key})
    assert first.json()["status"] == "completed"
    calls = len(fake.requests)
    stream_id = (await start_task(clients(two), key, body))["stream_id"]
    events = await collect(clients(two), stream_id, key)
    assert events[1].data["kind"] == "cache_hit"
    assert events[-1].data["metrics"]["cached"] is True
    assert len(fake.requests) == calls
    # Deleted through one process, gone for the other at once.
    stats = (await clients(two).get("/api/v1/cache/stats", headers={"X-API-Key": key})).json()
    assert stats["entries"] == 1 and stats["hits"] == 1
    cleared = await clients(one).delete("/api/v1/cache", headers={"X-API-Key": key})
    assert cleared.json()["deleted"] == 1
    stream_id = (await start_task(clients(two), key, body))["stream_id"]
    again = await collect(clients(two), stream_id, key)
    assert "cache_hit" not in [e.data.get("kind") for e in again]


async def test_the_rate_limit_counts_starts_across_processes(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    one, two = cluster(FAC_RATE_LIMIT_PER_MINUTE="5", FAC_CACHE_ENABLED="false")
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    for process in (one, two, one, two, one):
        await start_task(clients(process), key)
    for process in (two, one):
        refused = await clients(process).post(
            "/api/stream/task", json={"task": "t"}, headers={"X-API-Key": key}
        )
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    other = new_key(scaleout, "bob")  # limits are per key
    await start_task(clients(two), other)


async def test_a_ticket_issued_by_one_process_opens_the_stream_on_another(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    one, two = cluster()
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    stream_id = (await start_task(clients(one), key))["stream_id"]
    ticket = await clients(one).post(f"/api/stream/{stream_id}/ticket", headers={"X-API-Key": key})
    events = await collect(clients(two), stream_id, "", params={"ticket": ticket.json()["ticket"]})
    assert names(events)[-1] == "task_completed"


async def test_a_finished_stream_replays_identically_after_redis_loses_everything(
    cluster: Cluster, scaleout: Settings, services: Services, fake: FakeOpenAI, clients: Any
) -> None:
    one, two = cluster()
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=2)
    stream_id = (await start_task(clients(one), key))["stream_id"]
    before = await collect(clients(one), stream_id, key)
    redis = services.redis()
    assert redis.exists(f"{scaleout.redis_prefix}:events:{stream_id}")
    redis.flushall()
    after = await collect(clients(two), stream_id, key)
    tail = await collect(clients(one), stream_id, key, last_event_id=4)
    assert [(e.id, e.event, e.data) for e in after] == [(e.id, e.event, e.data) for e in before]
    assert [e.data for e in tail] == [e.data for e in before[4:]]
    done = await clients(two).get(
        f"/api/stream/events/{stream_id}",
        headers={"X-API-Key": key, "Last-Event-ID": str(len(before))},
    )
    assert done.status_code == 204


async def test_a_process_killed_mid_task_ends_its_stream_within_the_lease(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    (one,) = cluster(1, FAC_LEASE_S="2")
    (two,) = cluster(1, FAC_LEASE_S="2", FAC_RUN_TASKS="false")  # so the task runs on `one`
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(text="x = 1\n" * 500, delay_s=0.05))
    stream_id = (await start_task(clients(one), key))["stream_id"]
    seen = await read_until_tokens(clients(two), stream_id, key, 1)
    killed_at = time.monotonic()
    one.kill()
    rest = await asyncio.wait_for(
        collect(clients(two), stream_id, key, last_event_id=seen[-1].seq), 15
    )
    assert rest[-1].event == "task_error" and rest[-1].data["code"] == "interrupted"
    assert time.monotonic() - killed_at < 2 + 2  # the lease, plus one renewal period
    assert seqs(rest) == list(range(seen[-1].seq + 1, seen[-1].seq + 1 + len(rest)))
    status = await clients(two).get(f"/api/stream/status/{stream_id}", headers={"X-API-Key": key})
    assert status.json()["status"] == "failed"


async def test_starting_a_process_leaves_the_tasks_of_running_ones_alone(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    (one,) = cluster(1)
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1, coder_delay_s=0.02)
    fake.set_default("coder", Reply(text="y = 2\n" * 100, delay_s=0.02))
    stream_id = (await start_task(clients(one), key))["stream_id"]
    (two,) = cluster(1)  # starts while the task runs
    events = await collect(clients(two), stream_id, key)
    assert names(events)[-1] == "task_completed"


# --- behind nginx ---------------------------------------------------------------------------

NGINX = Path("/usr/sbin/nginx")
SITE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[list[ApiProcess]], str]]:
    """deploy/nginx.conf, as shipped but for its ports, in front of the given processes."""
    if not NGINX.exists():
        if os.environ.get("FAC_REQUIRE_SERVICES") == "1":
            pytest.fail("nginx is required here (scripts/services.sh install)")
        pytest.skip("nginx is not installed (scripts/services.sh install)")
    started: list[subprocess.Popen[bytes]] = []

    def start(upstreams: list[ApiProcess]) -> str:
        port = free_port()
        servers = "".join(f"    server 127.0.0.1:{p.port};\n" for p in upstreams)
        site = re.sub(
            r"(upstream facilitair \{\n)(    server .*\n)+", rf"\1{servers}", SITE.read_text()
        )
        site = site.replace("listen 8000;", f"listen 127.0.0.1:{port};")
        temp = tmp_path / "nginx"
        temp.mkdir()
        main = f"""
            daemon off;
            worker_processes 1;
            {"user root;" if os.geteuid() == 0 else ""}
            pid {temp}/nginx.pid;
            error_log {temp}/error.log warn;
            events {{ worker_connections 512; }}
            http {{
                access_log off;
                client_body_temp_path {temp}/body;
                proxy_temp_path {temp}/proxy;
                fastcgi_temp_path {temp}/fastcgi;
                uwsgi_temp_path {temp}/uwsgi;
                scgi_temp_path {temp}/scgi;
                {site}
            }}
        """
        (temp / "nginx.conf").write_text(main)
        process = subprocess.Popen(
            [str(NGINX), "-p", str(temp), "-c", str(temp / "nginx.conf")],
            stderr=subprocess.PIPE,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/metrics", timeout=1)
                return url
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {(temp / 'error.log').read_text()}")

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


async def test_behind_nginx_streams_flow_live_and_survive_the_loss_of_a_process(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, nginx: Any
) -> None:
    one, two = cluster(FAC_LEASE_S="2")
    base = nginx([one, two])
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=2)
    fake.set_default("coder", Reply(text="row = 1\n" * 60, delay_s=0.02))
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        stream_id = (await start_task(client, key))["stream_id"]
        seen = await read_until_tokens(client, stream_id, key, 5)
        # Tokens arrive one by one through the proxy, not in one buffered block at the end.
        tokens = [e for e in seen if e.event == "token_stream"]
        assert tokens[-1].at - tokens[0].at > 0.02
        # Whichever process ran the task or served the stream: the client carries on through
        # nginx, and gets the rest exactly once (the task's end, or `interrupted` if it ran
        # on the killed process).
        two.kill()
        rest = await collect(client, stream_id, key, last_event_id=seen[-1].seq)
        whole = await collect(client, stream_id, key)
    assert seqs(seen) + seqs(rest) == list(range(1, len(whole) + 1))
    assert rest[-1].event in ("task_completed", "task_error")


async def test_behind_nginx_the_websocket_starts_and_follows_a_task(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, nginx: Any
) -> None:
    one, two = cluster()
    base = nginx([one, two])
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    url = base.replace("http://", "ws://") + "/api/stream/ws"
    async with websockets.connect(url, additional_headers={"X-API-Key": key}) as socket:
        await socket.send(json.dumps({"action": "start", "task": "Build a tiny key-value store"}))
        received = []
        while not received or received[-1]["event"] not in ("task_completed", "task_error"):
            received.append(json.loads(await asyncio.wait_for(socket.recv(), 15)))
    assert received[0]["event"] == "task_created"
    assert [m["id"] for m in received[1:]] == list(range(1, len(received)))
    assert received[-1]["event"] == "task_completed"


# --- API processes that only accept, and worker processes that run -------------------------


def owners(services: Services, settings: Settings) -> dict[str, str]:
    """task_id → the process that holds (or held) it, `host:pid:…`."""

    async def query() -> dict[str, str]:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT task_id, owner FROM tasks")
        finally:
            await conn.close()
        return {row["task_id"]: row["owner"] for row in rows}

    return in_thread(query)


def pid_of(owner: str) -> int:
    return int(owner.split(":")[1])


async def test_workers_run_what_api_processes_accept(
    cluster: Cluster, scaleout: Settings, services: Services, fake: FakeOpenAI, clients: Any
) -> None:
    api = cluster(2, FAC_RUN_TASKS="false")
    workers = cluster(2, WorkerProcess, FAC_TASK_CONCURRENCY="3")  # 6 tasks: both must work
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1, coder_delay_s=0.5)
    created = [
        await start_task(clients(api[n % 2]), key, {"task": f"t{n}", "cache": "off"})
        for n in range(6)
    ]
    for n, task in enumerate(created):
        events = await collect(clients(api[(n + 1) % 2]), task["stream_id"], key)
        assert names(events)[-1] == "task_completed"
    held = owners(services, scaleout)
    assert {pid_of(held[t["task_id"]]) for t in created} <= {w.process.pid for w in workers}
    assert len({pid_of(held[t["task_id"]]) for t in created}) == 2  # both workers took some


async def test_a_worker_killed_mid_task_interrupts_only_its_own_tasks(
    cluster: Cluster, scaleout: Settings, services: Services, fake: FakeOpenAI, clients: Any
) -> None:
    (api,) = cluster(1, FAC_RUN_TASKS="false", FAC_LEASE_S="2")
    # Two tasks each at most, so each of the two workers holds two of the four.
    workers = cluster(2, WorkerProcess, FAC_LEASE_S="2", FAC_TASK_CONCURRENCY="2")
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    fake.set_default("coder", Reply(text="v = 3\n" * 150, delay_s=0.03))
    created = [
        await start_task(clients(api), key, {"task": f"t{n}", "cache": "off"}) for n in range(4)
    ]
    # Wait until every task is running on some worker.
    for task in created:
        await read_until_tokens(clients(api), task["stream_id"], key, 1)
    held = owners(services, scaleout)
    victim = workers[0]
    mine = [t for t in created if pid_of(held[t["task_id"]]) == victim.process.pid]
    others = [t for t in created if t not in mine]
    assert mine and others, "both workers should hold tasks"
    killed_at = time.monotonic()
    victim.kill()
    for task in mine:
        events = await asyncio.wait_for(collect(clients(api), task["stream_id"], key), 15)
        assert events[-1].event == "task_error" and events[-1].data["code"] == "interrupted"
        assert seqs(events) == list(range(1, len(seqs(events)) + 1))
    assert time.monotonic() - killed_at < 2 + 2  # the lease, plus one renewal period
    for task in others:
        events = await collect(clients(api), task["stream_id"], key)
        assert events[-1].event == "task_completed"


async def test_queued_tasks_wait_for_a_worker_and_can_be_cancelled_meanwhile(
    cluster: Cluster, scaleout: Settings, fake: FakeOpenAI, clients: Any
) -> None:
    (api,) = cluster(1, FAC_RUN_TASKS="false")
    key = new_key(scaleout, "alice")
    script_happy_path(fake, chunks=1)
    waiting = (await start_task(clients(api), key, {"task": "a", "cache": "off"}))["stream_id"]
    dropped = (await start_task(clients(api), key, {"task": "b", "cache": "off"}))["stream_id"]
    headers = {"X-API-Key": key}
    status = await clients(api).get(f"/api/stream/status/{waiting}", headers=headers)
    assert status.json()["status"] == "queued"
    cancel = await clients(api).post(f"/api/stream/{dropped}/cancel", headers=headers)
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert names(await collect(clients(api), dropped, key)) == ["task_cancelled"]
    cluster(1, WorkerProcess)  # the queue is durable: a worker that starts later runs it
    events = await collect(clients(api), waiting, key)
    assert names(events)[0] == "task_started" and names(events)[-1] == "task_completed"
    assert len(fake.requests_for("architect")) == 1  # the cancelled task never ran


async def test_two_embedded_processes_on_one_data_dir_leave_each_other_alone(
    fake: FakeOpenAI, tmp_path: Path, clients: Any
) -> None:
    settings = make_settings(tmp_path / "data", fake)
    env = {
        **os.environ,
        **service_env(settings),
        "FAC_LLM_BASE_URL": fake.base_url,
        "FAC_LLM_API_KEY": "k",
    }
    first = ApiProcess(env, tmp_path / "first.log").wait_ready()
    try:
        key = new_key(settings, "alice")
        script_happy_path(fake, chunks=1)
        fake.set_default("coder", Reply(text="w = 4\n" * 60, delay_s=0.02))
        stream_id = (await start_task(clients(first), key))["stream_id"]
        second = ApiProcess(env, tmp_path / "second.log").wait_ready()  # starts mid-task
        try:
            events = await collect(clients(first), stream_id, key)
            assert names(events)[-1] == "task_completed"
            other = (await start_task(clients(second), key, {"task": "x", "cache": "off"}))[
                "stream_id"
            ]
            assert names(await collect(clients(second), other, key))[-1] == "task_completed"
        finally:
            second.stop()
    finally:
        first.stop()
