"""`run` and `watch`: follow a stream to its end, as a live view or as NDJSON, and handle
Ctrl-C (first: cancel on the server; second: leave at once)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from facilitair.cli.artifacts import UnsafeArtifacts, plan_writes, write_artifacts
from facilitair.cli.client import ClientError, FacilitairClient
from facilitair.cli.session import Target, connect
from facilitair.cli.view import RunView, render_final, render_live

EXIT_COMPLETED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class RunOptions:
    json_output: bool
    out: Path | None
    force: bool
    detach: bool


class _Interrupts:
    """SIGINT while following a stream: the first asks the server to cancel, the second exits."""

    def __init__(self, client: FacilitairClient, stream_id: str, console: Console) -> None:
        self.client = client
        self.stream_id = stream_id
        self.console = console
        self.count = 0
        self._cancel: asyncio.Task[Any] | None = None

    def __enter__(self) -> _Interrupts:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _on_sigint(self) -> None:
        self.count += 1
        if self.count > 1:
            Console().show_cursor(True)  # Live hid it, and os._exit skips Live.stop()
            os._exit(EXIT_INTERRUPTED)
        self.console.print("[yellow]Cancelling on the server… (Ctrl-C again to quit now)[/]")
        self._cancel = asyncio.create_task(self._cancel_on_server())

    async def _cancel_on_server(self) -> None:
        try:
            await self.client.cancel(self.stream_id)
        except ClientError as exc:
            self.console.print(f"[red]{exc.message}[/]")


def _describe_models(agents: list[dict[str, Any]], target: Target) -> str:
    models = sorted({a["model"] for a in agents})
    where = "embedded server" if target.embedded else target.base_url
    line = f"Models: {', '.join(models)} ({where})."
    if any(a.get("offline") for a in agents):
        line += (
            " That is a small offline model (llama.cpp on this machine), there so everything "
            "works with no setup, not for quality: set FAC_LLM_BASE_URL and FAC_LLM_API_KEY "
            "(any OpenAI-compatible endpoint) for real results; `facilitair models` shows what "
            "each role runs."
        )
    return line


async def run_task(body: dict[str, Any], options: RunOptions) -> int:
    if options.out is not None:
        try:
            plan_writes(options.out, {"artifacts": []}, force=options.force)  # fail early
        except UnsafeArtifacts as exc:
            Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
            return EXIT_USAGE
    async with connect() as target, FacilitairClient(target.base_url, target.api_key) as client:
        human = Console(stderr=True, highlight=False, soft_wrap=True)
        agents = await client.agents()
        human.print(f"[dim]{_describe_models(agents, target)}[/]")
        created = await client.create_task(body)
        if options.detach:
            print(created["stream_id"])
            if target.embedded:
                human.print(
                    "[yellow]The embedded server stops when this command returns, which ends "
                    "the task; set FAC_API_BASE to a running server to detach for real.[/]"
                )
            return EXIT_COMPLETED
        return await _follow(client, created["stream_id"], 0, body["task"], options)


async def watch_stream(stream_id: str, after: int, options: RunOptions) -> int:
    async with connect() as target, FacilitairClient(target.base_url, target.api_key) as client:
        return await _follow(client, stream_id, after, "", options)


async def _follow(
    client: FacilitairClient, stream_id: str, after: int, task: str, options: RunOptions
) -> int:
    human = Console(stderr=True, highlight=False, soft_wrap=True)
    view = RunView(task)
    view.stream_id = stream_id
    interrupts = _Interrupts(client, stream_id, human)

    def on_reconnect(attempt: int, limit: int) -> None:
        view.set_connection(f"reconnecting (attempt {attempt}/{limit})…" if attempt else None)
        if options.json_output and attempt:
            human.print(f"[yellow]connection lost; reconnecting ({attempt}/{limit})[/]")

    events = client.events(stream_id, after, on_reconnect=on_reconnect)
    with interrupts:
        if options.json_output:
            async for event in events:
                view.apply(event.event, event.data)
                sys.stdout.write(event.as_json() + "\n")
                sys.stdout.flush()
            if view.error is not None:
                human.print(f"[red]Task failed: {view.error.get('error')}[/]")
        else:
            screen = Console(highlight=False)
            with Live(render_live(view), console=screen, refresh_per_second=8) as live:
                ticker = asyncio.create_task(_tick(live, view))
                try:
                    async for event in events:
                        view.apply(event.event, event.data)
                        live.update(render_live(view))
                finally:
                    ticker.cancel()
                live.update(render_live(view))
            screen.print(render_final(view))
    if view.final is not None and options.out is not None:
        try:
            written = write_artifacts(options.out, view.final, force=options.force)
        except UnsafeArtifacts as exc:
            human.print(f"[red]{exc}[/]")
            return EXIT_FAILED
        human.print(f"Wrote {len(written)} file(s) under {options.out}")
    if view.final is not None:
        return EXIT_COMPLETED
    if view.cancelled is not None and interrupts.count:
        return EXIT_INTERRUPTED
    return EXIT_FAILED


async def _tick(live: Live, view: RunView) -> None:
    """Keep the elapsed time moving while no event arrives."""
    while True:
        await asyncio.sleep(0.5)
        live.update(render_live(view))
