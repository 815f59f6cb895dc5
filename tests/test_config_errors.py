"""A wrong service configuration gets one clear line and a non-zero exit, never a traceback;
`facilitair db upgrade` migrates a database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from facilitair.server.background import free_port
from services import Services

CLI = Path(sys.executable).with_name("facilitair")


def facilitair(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **variables}
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, done.stderr  # one sentence, which the terminal may wrap once
    for word in words:
        assert word in done.stderr, done.stderr


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/facilitair"
    done = facilitair("serve", FAC_DATA_DIR=str(tmp_path), FAC_DATABASE_URL=url)
    assert_one_clear_line(done, "cannot reach PostgreSQL", "127.0.0.1")


def test_an_unreachable_redis_is_one_line(tmp_path: Path, services: Services) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = facilitair(
        "serve",
        FAC_DATA_DIR=str(tmp_path),
        FAC_DATABASE_URL=services.new_database(),
        FAC_REDIS_URL=url,
    )
    assert_one_clear_line(done, "cannot reach Redis")


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("FAC_DATABASE_URL", "mysql://root@localhost/db", ("FAC_DATABASE_URL", "postgresql://")),
        ("FAC_REDIS_URL", "http://localhost:6379", ("FAC_REDIS_URL", "redis://")),
    ],
)
def test_a_wrong_url_scheme_is_one_line(
    tmp_path: Path, variable: str, value: str, words: tuple[str, ...]
) -> None:
    done = facilitair("serve", **{"FAC_DATA_DIR": str(tmp_path), variable: value})
    assert_one_clear_line(done, *words)


def test_a_database_without_the_vector_extension_says_how_to_get_it(
    tmp_path: Path, services: Services
) -> None:
    # A role that owns its database but may not create the (untrusted) extension: what a
    # managed PostgreSQL without pgvector enabled looks like to Facilitair.
    role = "r_" + uuid.uuid4().hex[:8]
    services.admin(f"CREATE ROLE {role} LOGIN")
    services.admin(f"CREATE DATABASE {role} OWNER {role}")
    try:
        url = services.url(role).replace("postgres@", f"{role}@")
        done = facilitair("serve", FAC_DATA_DIR=str(tmp_path), FAC_DATABASE_URL=url)
        assert_one_clear_line(done, "`vector` extension", "CREATE EXTENSION vector")
        upgrade = facilitair("db", "upgrade", FAC_DATA_DIR=str(tmp_path), FAC_DATABASE_URL=url)
        assert_one_clear_line(upgrade, "`vector` extension")
    finally:
        services.admin(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        services.admin(f"DROP ROLE IF EXISTS {role}")


def test_db_upgrade_migrates_once(tmp_path: Path, services: Services) -> None:
    name = "u_" + uuid.uuid4().hex[:8]
    services.admin(f"CREATE DATABASE {name}")
    try:
        url = services.url(name)
        first = facilitair("db", "upgrade", FAC_DATA_DIR=str(tmp_path), FAC_DATABASE_URL=url)
        assert first.returncode == 0, first.stderr
        assert "applied migration(s) 1, 2, 3" in first.stderr
        again = facilitair("db", "upgrade", FAC_DATA_DIR=str(tmp_path), FAC_DATABASE_URL=url)
        assert again.returncode == 0 and "up to date" in again.stderr
    finally:
        services.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    sqlite = facilitair("db", "upgrade", FAC_DATA_DIR=str(tmp_path))
    assert sqlite.returncode == 0 and "SQLiteStore: applied migration(s) 1, 2, 3" in sqlite.stderr
