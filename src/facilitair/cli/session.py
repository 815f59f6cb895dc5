"""Where the CLI's requests go: the server at FAC_API_BASE, or one started in this process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from facilitair.config import Settings
from facilitair.server.auth import authenticate, create_key
from facilitair.store import build_store

LOCAL_KEY_FILE = "cli-api-key"


@dataclass(frozen=True)
class Target:
    base_url: str
    api_key: str | None
    embedded: bool


async def local_key(settings: Settings) -> str:
    """The key the CLI uses against its own embedded server, made on first use and kept in the
    data directory (readable by this user only)."""
    path: Path = settings.data_dir / LOCAL_KEY_FILE
    store = build_store(settings)
    await store.open()
    try:
        secret = _read_key(path)
        if secret and await authenticate(store, secret) is not None:
            return secret
        _, secret = await create_key(store, "cli", "local")
    finally:
        await store.close()
    _write_key(path, secret)
    return secret


def _read_key(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def _write_key(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n", encoding="utf-8")


@asynccontextmanager
async def connect() -> AsyncIterator[Target]:
    base = os.environ.get("FAC_API_BASE")
    if base:
        yield Target(base.rstrip("/"), os.environ.get("FAC_API_KEY"), embedded=False)
        return
    from facilitair.server.background import BackgroundServer

    settings = Settings()
    key = await local_key(settings)
    server = BackgroundServer(settings)
    await asyncio.to_thread(server.start)
    try:
        yield Target(server.base_url, key, embedded=True)
    finally:
        await asyncio.to_thread(server.stop)
