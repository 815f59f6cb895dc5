"""Durable state behind the `Store` interface; the implementation is chosen by settings."""

from __future__ import annotations

from pathlib import Path

from facilitair.config import Settings
from facilitair.store.base import ApiKey, Store
from facilitair.store.sqlite import SQLiteStore

__all__ = ["ApiKey", "Store", "build_store"]


def build_store(settings: Settings) -> Store:
    url = settings.database_url
    if url is None:
        return SQLiteStore(settings.sqlite_path)
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    raise ValueError(
        f"FAC_DATABASE_URL {url.split(':', 1)[0]}://… is not supported yet; "
        "use sqlite:///PATH or leave it unset"
    )
