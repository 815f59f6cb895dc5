"""The `facilitair` command: run tasks and watch them, serve the API, manage keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from facilitair.bus import BusUnavailable
from facilitair.cli.client import ClientError, FacilitairClient, ServerUnreachable
from facilitair.cli.session import connect
from facilitair.config import NoProviderConfigured, Settings
from facilitair.protocol.events import utc_now
from facilitair.server.auth import create_key, hash_key
from facilitair.store import Store, StoreUnavailable, build_store

if TYPE_CHECKING:
    from facilitair.cache.embeddings import Embedder
    from facilitair.cache.evaluate import Report
    from facilitair.cache.semantic import CachePolicy

app = typer.Typer(
    help="Watch a team of LLM agents build software together.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
cache_app = typer.Typer(
    help="Inspect, clear and evaluate the semantic cache.", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")
db_app = typer.Typer(help="The database's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")


class Exit(IntEnum):
    COMPLETED = 0
    TASK_FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    INTERRUPTED = 130


def _call(
    coroutine: Coroutine[Any, Any, T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run a client coroutine, turning transport and API errors into one sentence."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coroutine)
    except ServerUnreachable as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(Exit.UNREACHABLE) from None
    except ClientError as exc:
        err.print(f"[red]{exc.message}[/]")
        usage = exc.status in (400, 413, 422)
        raise typer.Exit(Exit.USAGE if usage else Exit.TASK_FAILED) from None
    except (NoProviderConfigured, StoreUnavailable, BusUnavailable) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(Exit.USAGE) from None


# --- run and watch ------------------------------------------------------------------------


def _parse_models(pairs: list[str]) -> dict[str, str]:
    models: dict[str, str] = {}
    for pair in pairs:
        role, sep, model = pair.partition("=")
        if not sep or not role.strip() or not model.strip():
            raise typer.BadParameter(f"{pair!r} is not ROLE=MODEL", param_hint="--model")
        models[role.strip()] = model.strip()
    return models


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What to build")],
    language: Annotated[str | None, typer.Option(help="Preferred language")] = None,
    framework: Annotated[
        list[str] | None, typer.Option(help="A framework to use (repeatable)")
    ] = None,
    team_size: Annotated[int | None, typer.Option(min=1, help="Size of the team")] = None,
    workflow: Annotated[str, typer.Option(help="Workflow to run")] = "sequential",
    verbosity: Annotated[
        str, typer.Option(help="filtered (whole lines) or full (every delta)")
    ] = "filtered",
    budget: Annotated[float | None, typer.Option(min=0.0, help="Stop at this cost (USD)")] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="ROLE=MODEL override (repeatable)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the files and RESULT.md here")] = None,
    force: Annotated[bool, typer.Option(help="Replace existing files in --out")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON event per line on stdout")
    ] = False,
    detach: Annotated[bool, typer.Option(help="Print the stream id and return at once")] = False,
) -> None:
    """Run a task and watch the agents work on it."""
    from facilitair.cli.runner import RunOptions, run_task

    if verbosity not in ("filtered", "full"):
        raise typer.BadParameter("must be filtered or full", param_hint="--verbosity")
    context: dict[str, Any] = {}
    if language:
        context["preferred_language"] = language
    if framework:
        context["frameworks"] = framework
    if team_size:
        context["team_size"] = team_size
    body: dict[str, Any] = {
        "task": task,
        "context": context,
        "workflow": workflow,
        "verbosity": verbosity,
        "models": _parse_models(model or []),
    }
    if budget:
        body["budget_usd"] = budget
    options = RunOptions(
        json_output=json_output or not sys.stdout.isatty(),
        out=out,
        force=force,
        detach=detach,
    )
    code = _call(run_task(body, options))
    raise typer.Exit(code)


@app.command()
def watch(
    stream_id: Annotated[str, typer.Argument(help="The stream to follow")],
    from_id: Annotated[
        int, typer.Option("--from", min=0, help="Start after this event id (0: from the start)")
    ] = 0,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON event per line on stdout")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write the files and RESULT.md here")] = None,
    force: Annotated[bool, typer.Option(help="Replace existing files in --out")] = False,
) -> None:
    """Follow a stream (live or finished), from the start or from an event id."""
    from facilitair.cli.runner import RunOptions, watch_stream

    options = RunOptions(
        json_output=json_output or not sys.stdout.isatty(), out=out, force=force, detach=False
    )
    raise typer.Exit(_call(watch_stream(stream_id, from_id, options)))


async def _with_client(action: Callable[[FacilitairClient], Awaitable[T]]) -> T:
    async with connect() as target, FacilitairClient(target.base_url, target.api_key) as client:
        return await action(client)


@app.command()
def status(stream_id: Annotated[str, typer.Argument(help="The stream to ask about")]) -> None:
    """Where a task stands."""
    result = _call(_with_client(lambda client: client.status(stream_id)))
    if sys.stdout.isatty():
        table = Table.grid(padding=(0, 2))
        for name, value in result.items():
            table.add_row(name, json.dumps(value) if isinstance(value, dict) else str(value))
        Console().print(table)
    else:
        print(json.dumps(result))


@app.command()
def cancel(stream_id: Annotated[str, typer.Argument(help="The stream to stop")]) -> None:
    """Stop a running task; what it wrote so far is kept."""
    result = _call(_with_client(lambda client: client.cancel(stream_id)))
    err.print(f"Task {result['task_id']} is {result['status']}.")


@app.command()
def tasks(
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Your past tasks, newest first."""
    result = _call(_with_client(lambda client: client.tasks(limit, offset)))
    if not sys.stdout.isatty():
        print(json.dumps(result))
        return
    table = Table("created", "status", "stream", "cost", "task")
    for item in result["items"]:
        cost = "unknown" if item["cost_usd"] is None else f"${item['cost_usd']:.4f}"
        table.add_row(
            item["created_at"][:19],
            item["status"],
            item["stream_id"],
            cost,
            item["task"][:60],
        )
    Console().print(table)
    err.print(f"{len(result['items'])} of {result['total']}")


@app.command()
def models(
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
) -> None:
    """What each role runs, where its requests go, and the models shipped for offline use."""
    from facilitair.config import load_agent_config
    from facilitair.llm import provider_endpoint
    from facilitair.llm.local import runtime_available, shipped_model_installed

    settings = Settings()
    config = load_agent_config(settings.config).resolved(settings)
    roles: list[dict[str, Any]] = []
    for key, role in config.roles.items():
        endpoint = provider_endpoint(role.provider, settings, config)
        max_tokens = role.max_tokens
        if endpoint.local:
            cap = config.local.structured_max_tokens if role.output_schema else None
            max_tokens = min(max_tokens, cap or config.local.max_tokens)
        roles.append(
            {
                "role": key,
                "name": role.name,
                "model": role.model,
                "provider": role.provider,
                "endpoint": "local" if endpoint.local else endpoint.base_url,
                "structured_output": bool(role.output_schema) and endpoint.structured_output,
                "temperature": role.temperature,
                "max_tokens": max_tokens,
                "fallbacks": role.fallbacks,
            }
        )
    local = config.local
    shipped: list[dict[str, Any]] = [
        {
            "model": name,
            "package": entry.package,
            "license": entry.license,
            "installed": shipped_model_installed(entry),
            "selected": name == local.model and not local.model_path,
        }
        for name, entry in local.shipped.items()
    ]
    if json_output:
        print(json.dumps({"roles": roles, "local_models": shipped}, indent=2))
        return
    table = Table("role", "model", "provider", "endpoint", "JSON schema", "max tokens")
    for row in roles:
        table.add_row(
            row["role"],
            row["model"],
            row["provider"],
            row["endpoint"],
            "yes" if row["structured_output"] else "-",
            str(row["max_tokens"]),
        )
    Console().print(table)
    offline = Table("offline model", "package", "license", "installed", title="Shipped models")
    for row in shipped:
        mark = " (selected)" if row["selected"] else ""
        offline.add_row(
            row["model"] + mark, row["package"], row["license"], "yes" if row["installed"] else "no"
        )
    Console().print(offline)
    if not runtime_available():
        err.print("[yellow]xllamacpp is not installed: run bash scripts/setup.sh[/]")
    if any(r["endpoint"] == "local" for r in roles):
        err.print(
            "Roles on the default provider run the offline model (llama.cpp in this process). "
            "Point them at a real one with FAC_LLM_BASE_URL and FAC_LLM_API_KEY (any "
            "OpenAI-compatible endpoint), or pick another offline model with \\[local] "
            'model = "..." in a FAC_CONFIG file.'
        )


# --- eval ---------------------------------------------------------------------------------


@app.command("eval")
def eval_command(
    arm: Annotated[
        list[str] | None,
        typer.Option(
            "--arm",
            help="An arm to run (repeatable): single, repair, vote, sequential, council; "
            "default: all five",
        ),
    ] = None,
    problems: Annotated[
        Path | None,
        typer.Option(help="JSONL in HumanEval's format; default: HumanEval's 164", exists=True),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N problems")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Problems solved at once")] = 4,
    budget_match: Annotated[
        bool,
        typer.Option(
            help="Give vote and repair the token budget the workflows spent (they run first)"
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option(help="Results JSON (and a .md table beside it); a rerun resumes it")
    ] = Path("eval-results.json"),
    json_output: Annotated[
        bool, typer.Option("--json", help="The summary as JSON on stdout")
    ] = False,
) -> None:
    """Does a workflow beat one model? pass@1 of each arm on hidden tests, with cost and time."""
    from facilitair.cli.evaluate import EvalRequest, print_results, problems_source, run_eval
    from facilitair.evaluation.arms import ARMS
    from facilitair.evaluation.problems import load_problems
    from facilitair.evaluation.run import Plan

    arms = list(dict.fromkeys(arm or ARMS))
    unknown = [name for name in arms if name not in ARMS]
    if unknown:
        raise typer.BadParameter(
            f"{', '.join(unknown)}: arms are {', '.join(ARMS)}", param_hint="--arm"
        )
    try:
        loaded = load_problems(problems)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(Exit.USAGE) from None
    request = EvalRequest(
        problems=loaded[:limit] if limit else loaded,
        source=problems_source(problems),
        plan=Plan(arms=arms, concurrency=concurrency, budget_match=budget_match, out=out),
        json_output=json_output,
    )
    try:
        results = _call(run_eval(request))
    except ValueError as exc:  # a results file of another setup, a budget with no workflow
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(Exit.USAGE) from None
    print_results(results, json_output)


# --- serve and keys -----------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Development only: accept requests without a key")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(min=1, help="API processes sharing the port (scale-out: needs FAC_REDIS_URL)"),
    ] = 1,
    api_only: Annotated[
        bool,
        typer.Option(
            "--api-only",
            help="Only accept, stream and cancel; `facilitair worker` processes run the tasks",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Start the API server."""
    import os

    import uvicorn

    from facilitair.server.app import create_app

    # Settings come from the environment, in this process and in each of uvicorn's workers.
    if no_auth:
        os.environ["FAC_NO_AUTH"] = "true"
    if api_only:
        os.environ["FAC_RUN_TASKS"] = "false"
    settings = Settings()
    if settings.no_auth:
        err.print(
            "[bold yellow]WARNING: authentication is OFF (--no-auth): anyone who can reach "
            f"{host}:{port} can run tasks and read every stream.[/]"
        )
    if (workers > 1 or api_only) and not settings.redis_url:
        err.print(
            "[red]--workers and --api-only need the scale-out backends: set FAC_REDIS_URL and "
            "FAC_DATABASE_URL (bash scripts/services.sh start prints local ones).[/]"
        )
        raise typer.Exit(Exit.USAGE)
    # Check the configured services first, so a wrong URL is one clear line, not a traceback
    # from inside the server's startup.
    _call(_check_services(settings))
    try:
        if workers > 1:
            uvicorn.run(
                "facilitair.server.app:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
            )
        else:
            uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
    except NoProviderConfigured as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(Exit.USAGE) from None


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Tasks this process runs at once [default: FAC_TASK_CONCURRENCY, 100]"
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Run queued tasks (scale-out: next to `facilitair serve --api-only` processes, on the
    same FAC_DATABASE_URL and FAC_REDIS_URL)."""
    import logging

    settings = Settings(run_tasks=True)
    if concurrency is not None:
        settings = settings.model_copy(update={"task_concurrency": concurrency})
    if not settings.redis_url:
        err.print(
            "[red]A worker takes tasks from the shared queue: set FAC_REDIS_URL and "
            "FAC_DATABASE_URL (bash scripts/services.sh start prints local ones).[/]"
        )
        raise typer.Exit(Exit.USAGE)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    # uvloop, as uvicorn uses for the API processes: a worker writes to Redis for every token,
    # and uvloop's socket writes cost less CPU than asyncio's (py-spy, bench/stream_overhead.py).
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    _call(_work(settings), factory)


async def _work(settings: Settings) -> None:
    import signal

    from facilitair.runtime import settle_heap
    from facilitair.server.container import Container

    container = await Container.start(settings)
    settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    err.print(f"worker {container.runner.instance_id}: taking tasks")
    try:
        await stop.wait()
    finally:
        await container.stop()  # running tasks end as interrupted, queued ones stay queued


async def _check_services(settings: Settings) -> None:
    from facilitair.bus import build_bus

    store = build_store(settings)
    await store.open()
    try:
        bus = await build_bus(settings, store)
        await bus.close()
    finally:
        await store.close()


async def _evaluate_pairs(
    pairs: list[dict[str, Any]],
    embedder: Embedder,
    policy: CachePolicy,
    settings: Settings,
    verify: bool,
) -> Report:
    from facilitair.cache.evaluate import evaluate

    if not verify:
        return await evaluate(pairs, embedder, policy)
    from facilitair.config import load_agent_config
    from facilitair.llm import build_providers
    from facilitair.server.container import build_verifier

    agents = load_agent_config(settings.config).resolved(settings)
    providers = build_providers(settings, agents)
    try:
        return await evaluate(pairs, embedder, policy, build_verifier(agents, providers))
    finally:
        await providers.aclose()


async def _with_store(action: Callable[[Store], Awaitable[T]]) -> T:
    store = build_store(Settings())
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations the database does not have yet (servers also do this when
    they start)."""

    async def upgrade() -> tuple[str, list[int]]:
        store = build_store(Settings())
        try:
            return type(store).__name__, await store.migrate()
        finally:
            await store.close()

    name, applied = _call(upgrade())
    if applied:
        err.print(f"{name}: applied migration(s) {', '.join(map(str, applied))}.")
    else:
        err.print(f"{name}: the schema is up to date.")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key, e.g. who uses it")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant the key belongs to (default: the name)")
    ] = None,
) -> None:
    """Create a key. It is printed once, alone on the last line; only its hash is stored."""
    key, secret = _call(_with_store(lambda store: create_key(store, name, tenant)))
    err.print(f"Created key {key.key_id} ({key.name}) for tenant {key.tenant_id}. Keep it safe:")
    sys.stdout.write(secret + "\n")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    keys = _call(_with_store(lambda store: store.list_keys()))
    table = Table("id", "name", "tenant", "prefix", "created", "revoked")
    for key in keys:
        table.add_row(
            key.key_id,
            key.name,
            key.tenant_id,
            key.prefix + "…",
            key.created_at,
            key.revoked_at or "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The full key, or its id, name or prefix")],
) -> None:
    """Revoke keys; requests with them get 401 from then on, and streams they opened close."""
    key = key.strip()
    count = _call(_with_store(lambda store: store.revoke_key(key, hash_key(key), utc_now())))
    if count == 0:
        err.print(f"No active key matches {key!r}.")
        raise typer.Exit(1)
    err.print(f"Revoked {count} key(s).")


# --- cache ----------------------------------------------------------------------------------


@cache_app.command("stats")
def cache_stats() -> None:
    """Entries, hits, misses and what the cache saved you."""
    stats = _call(_with_client(lambda client: client.cache_stats()))
    if not sys.stdout.isatty():
        print(json.dumps(stats))
        return
    if not stats["enabled"]:
        err.print("The semantic cache is disabled on this server.")
        return
    Console(highlight=False).print(
        f"{stats['entries']} entries · {stats['hits']} hits, {stats['misses']} misses "
        f"({stats['hit_rate']:.0%}) · saved ${stats['saved_usd']:.4f} and "
        f"{stats['saved_s']:.1f} s · threshold {stats['threshold']} · {stats['embedder']}"
    )


@cache_app.command("clear")
def cache_clear() -> None:
    """Forget every cached result of your tenant."""
    result = _call(_with_client(lambda client: client.cache_clear()))
    err.print(f"Deleted {result['deleted']} cache entries.")


@cache_app.command("eval")
def cache_eval(
    pairs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="JSONL files of {a, b, same_answer} pairs; none: the shipped coding-task "
            "halves (tune, test) and the fow-cache pairs when installed",
            exists=True,
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Cosine threshold (default: the server's)")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also ask the LLM verifier (the Reviewer's model) about matches within "
            "FAC_CACHE_VERIFY_BAND above the threshold, and report its calls, time and cost",
        ),
    ] = False,
) -> None:
    """Measure the real matcher on labelled pairs: served should-hits, wrong traps, latency."""
    from facilitair.cache.embeddings import EmbeddingError, LocalEmbedder
    from facilitair.cache.evaluate import default_pair_files, read_pairs
    from facilitair.cache.semantic import CachePolicy

    settings = Settings()
    policy = CachePolicy(
        threshold=threshold if threshold is not None else settings.cache_threshold,
        granularity=settings.cache_granularity,
        verify_band=settings.cache_verify_band if verify else 0.0,
    )
    files = pairs or default_pair_files()
    try:
        sets = [(path, read_pairs(path)) for path in files]
        embedder = LocalEmbedder()
    except (ValueError, EmbeddingError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(Exit.USAGE) from None
    for number, (path, items) in enumerate(sets):
        report = asyncio.run(_evaluate_pairs(items, embedder, policy, settings, verify))
        print(("\n" if number else "") + f"== {path.name}")
        for line in report.lines(policy.threshold):
            print(line)
