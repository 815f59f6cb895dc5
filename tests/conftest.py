from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from facilitair.config import Settings
from fakes.openai_server import FakeOpenAI
from services import Services, services
from support import ServerThread, make_settings, new_key

__all__ = ["services"]

BACKENDS = ("embedded", "scaleout")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use a server run on the embedded backend (SQLite + in-process), and, in
    modules that set `BACKENDS = ("embedded", "scaleout")`, on PostgreSQL + Redis too."""
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", ("embedded",))
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings overrides that select the backend under test (empty: the embedded default)."""
    name = getattr(request, "param", "embedded")
    if name == "embedded":
        yield {}
        return
    live: Services = request.getfixturevalue("services")
    overrides = live.scaleout_settings()
    yield overrides
    live.drop_database(overrides["database_url"])


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai.reset()
    yield fake_openai
    fake_openai.reset()


@pytest.fixture
def make_server(
    tmp_path: Path, fake: FakeOpenAI, backend: dict[str, Any]
) -> Iterator[Callable[..., ServerThread]]:
    """Start the real app with settings overridden as given; every server is stopped after.
    Servers of one test share its backend (one database, one Redis prefix)."""
    servers: list[ServerThread] = []

    def make(**overrides: Any) -> ServerThread:
        settings = make_settings(tmp_path / f"data{len(servers)}", fake, **{**backend, **overrides})
        server = ServerThread(settings).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


@pytest.fixture
def settings(server: ServerThread) -> Settings:
    return server.settings


@pytest.fixture
def key(settings: Settings) -> str:
    return new_key(settings, "alice")


@pytest.fixture
async def client(server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        yield http
