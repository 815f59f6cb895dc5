"""Real PostgreSQL (+ pgvector) and Redis for the scale-out tests, started by the project's own
scripts/services.sh on free loopback ports, once per test session.

Each test that runs on the scale-out backend gets a database of its own (a copy of a migrated
template, which is fast) and a Redis key prefix of its own, so tests never see each other's
state. In CI (FAC_REQUIRE_SERVICES=1) a service that cannot start is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from redis import Redis

from facilitair.server.background import free_port
from facilitair.store.base import Store
from facilitair.store.postgres import PostgresStore
from facilitair.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "services.sh"
TEMPLATE = "facilitair_template"
T = TypeVar("T")


def in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end from sync or async code alike (a thread of its own)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def required() -> bool:
    return os.environ.get("FAC_REQUIRE_SERVICES") == "1"


@dataclass
class Services:
    folder: Path
    database_url: str  # the server's maintenance database
    redis_url: str
    pg_port: int
    redis_port: int

    def url(self, database: str) -> str:
        return self.database_url.rsplit("/", 1)[0] + "/" + database

    def admin(self, sql: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(self.url("postgres"))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        in_thread(run)

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url)

    def scaleout_settings(self) -> dict[str, Any]:
        """Settings for one test: its own database and Redis prefix."""
        return {
            "database_url": self.new_database(),
            "redis_url": self.redis_url,
            "redis_prefix": "t" + uuid.uuid4().hex[:10],
        }


async def open_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> Store:
    """A new, empty, open store: "sqlite" in `folder`, or "postgres" in a database of its own
    on the session's server (dropped after the test)."""
    store: Store
    if kind == "sqlite":
        store = SQLiteStore(folder / "store.sqlite3")
    else:
        live: Services = request.getfixturevalue("services")
        url = live.new_database()
        request.addfinalizer(lambda: live.drop_database(url))
        store = PostgresStore(url)
    await store.open()
    return store


def start_services(folder: Path) -> Services:
    pg_port, redis_port = free_port(), free_port()
    env = {**os.environ, "PG_PORT": str(pg_port), "REDIS_PORT": str(redis_port)}
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/services.sh start failed:\n{done.stderr[-2000:]}")
    urls = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    services = Services(
        folder, urls["FAC_DATABASE_URL"], urls["FAC_REDIS_URL"], pg_port, redis_port
    )
    services.admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    services.admin(f"CREATE DATABASE {TEMPLATE}")

    async def migrate() -> None:
        await PostgresStore(services.url(TEMPLATE)).migrate()

    in_thread(migrate)
    return services


def stop_services(folder: Path) -> None:
    subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], check=False, timeout=120)


def new_folder() -> Path:
    """A folder for the services' data. Not under pytest's own temporary folder: that one is
    private to root, and PostgreSQL runs as its own user."""
    folder = Path(tempfile.mkdtemp(prefix="facilitair-services-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    folder = new_folder()
    try:
        started = start_services(folder)
    except Exception as exc:
        stop_services(folder)
        if required():
            pytest.fail(f"PostgreSQL and Redis are required here: {exc}")
        pytest.skip(f"PostgreSQL/Redis unavailable (set FAC_REQUIRE_SERVICES=1 to fail): {exc}")
    try:
        yield started
    finally:
        stop_services(folder)
        shutil.rmtree(folder, ignore_errors=True)
