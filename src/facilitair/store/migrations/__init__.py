"""Versioned schema migrations: numbered SQL files, one folder per dialect.

`NNNN_what.sql` files in `sqlite/` and `postgres/` are applied in order, each in its own
transaction together with its row in `schema_migrations`, by the store that owns the dialect
(`Store.migrate`, run at startup and by `facilitair db upgrade`). A file, once released, never
changes: a schema change is a new file in both folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    folder = resources.files(__name__).joinpath(dialect)
    found = []
    for item in folder.iterdir():
        stem, dot, suffix = item.name.partition(".")
        number, _, name = stem.partition("_")
        if suffix == "sql" and dot and number.isdigit():
            found.append(Migration(int(number), name, item.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if len({m.version for m in found}) != len(found):
        raise RuntimeError(f"two {dialect} migrations share a version number")
    return found


def pending(dialect: Dialect, applied: set[int]) -> list[Migration]:
    return [m for m in migrations(dialect) if m.version not in applied]
