"""Durable state behind the `Store` interface; the implementation is chosen by settings:
SQLite in the data dir by default, PostgreSQL (+ pgvector) when FAC_DATABASE_URL says so."""

from __future__ import annotations

from pathlib import Path

from facilitair.cache.index import MemoryVectorIndex, VectorIndex
from facilitair.config import Settings
from facilitair.store.base import ApiKey, Store, StoreUnavailable
from facilitair.store.sqlite import SQLiteStore

__all__ = ["ApiKey", "Store", "StoreUnavailable", "build_store", "build_vector_index"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def build_store(settings: Settings) -> Store:
    url = settings.database_url
    if url is None:
        return SQLiteStore(settings.sqlite_path)
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(POSTGRES_SCHEMES):
        from facilitair.store.postgres import PostgresStore  # asyncpg loads only when used

        return PostgresStore(url, pool_size=settings.database_pool_size)
    raise StoreUnavailable(
        f"FAC_DATABASE_URL must start with postgresql:// or sqlite:/// "
        f"(got {url.split(':', 1)[0]}://…)"
    )


def build_vector_index(store: Store) -> VectorIndex:
    """The cache's vectors: in pgvector beside the rows when the store is PostgreSQL (shared by
    every process), else in this process's memory."""
    from facilitair.store.postgres import PgVectorIndex, PostgresStore

    if isinstance(store, PostgresStore):
        return PgVectorIndex(store)
    return MemoryVectorIndex(store)
