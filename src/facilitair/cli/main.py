"""The `facilitair` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from facilitair.config import Settings
from facilitair.protocol.events import utc_now
from facilitair.server.auth import create_key
from facilitair.store import Store, build_store

app = typer.Typer(
    help="Watch a team of LLM agents build software together.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
err = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Development only: accept requests without a key")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Start the API server."""
    import uvicorn

    from facilitair.llm import NoProviderConfigured
    from facilitair.server.app import create_app

    settings = Settings(no_auth=True) if no_auth else Settings()
    if settings.no_auth:
        err.print(
            "[bold yellow]WARNING: authentication is OFF (--no-auth): anyone who can reach "
            f"{host}:{port} can run tasks and read every stream.[/]"
        )
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
    except NoProviderConfigured as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


T = TypeVar("T")


async def _with_store(action: Callable[[Store], Awaitable[T]]) -> T:
    store = build_store(Settings())
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key, e.g. who uses it")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant the key belongs to (default: the name)")
    ] = None,
) -> None:
    """Create a key. It is printed once, alone on the last line; only its hash is stored."""
    key, secret = asyncio.run(_with_store(lambda store: create_key(store, name, tenant)))
    err.print(f"Created key {key.key_id} ({key.name}) for tenant {key.tenant_id}. Keep it safe:")
    sys.stdout.write(secret + "\n")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    keys = asyncio.run(_with_store(lambda store: store.list_keys()))
    table = Table("id", "name", "tenant", "prefix", "created", "revoked")
    for key in keys:
        table.add_row(
            key.key_id, key.name, key.tenant_id, key.prefix + "…", key.created_at,
            key.revoked_at or "",
        )  # fmt: skip
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="Key id, name or prefix")]) -> None:
    """Revoke keys by id, name or prefix; requests with them get 401 from then on."""
    count = asyncio.run(_with_store(lambda store: store.revoke_key(key, utc_now())))
    if count == 0:
        err.print(f"No active key matches {key!r}.")
        raise typer.Exit(1)
    err.print(f"Revoked {count} key(s).")
