from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from facilitair.config import Settings
from fakes.openai_server import FakeOpenAI
from support import ServerThread, make_settings, new_key


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
def make_server(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Callable[..., ServerThread]]:
    """Start the real app with settings overridden as given; every server is stopped after."""
    servers: list[ServerThread] = []

    def make(**overrides: Any) -> ServerThread:
        settings = make_settings(tmp_path / f"data{len(servers)}", fake, **overrides)
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
