"""The app container: every long-lived part, built once at startup from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from facilitair.agents.runner import TaskRunner
from facilitair.bus import Bus, EventLog, build_bus
from facilitair.cache.embeddings import Embedder, EmbeddingError, LocalEmbedder, OpenAIEmbedder
from facilitair.cache.semantic import CachePolicy, SemanticCache
from facilitair.cache.verifier import LLMVerifier
from facilitair.config import AgentConfig, Settings, load_agent_config
from facilitair.llm import ProviderSet, build_providers
from facilitair.observability import Metrics
from facilitair.protocol.events import iso_utc
from facilitair.server.auth import KeyStatus, Tickets
from facilitair.store import Store, build_store, build_vector_index

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    agents: AgentConfig
    store: Store
    bus: Bus
    providers: ProviderSet
    runner: TaskRunner
    tickets: Tickets
    keys: KeyStatus
    metrics: Metrics
    cache: SemanticCache | None
    _expiry: asyncio.Task[None] | None = None

    @property
    def events(self) -> EventLog:
        return self.bus.events

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics | None = None) -> Container:
        """Build and connect everything; StoreUnavailable / BusUnavailable say what is wrong
        with the configured services."""
        agents = load_agent_config(settings.config).resolved(settings)
        providers = build_providers(settings, agents)
        store = build_store(settings)
        await store.open()
        try:
            bus = await build_bus(settings, store)
        except BaseException:
            await store.close()
            raise
        metrics = metrics or Metrics()
        cache = await _build_cache(settings, agents, store, providers)
        runner = TaskRunner(
            store,
            bus.events,
            providers,
            agents,
            metrics,
            cache,
            queue=bus.queue,
            lease_s=settings.lease_s,
            runs_tasks=settings.run_tasks,
            concurrency=settings.task_concurrency,
        )
        await bus.control.start(runner.cancel, bus.queue.wake)
        interrupted = await runner.start()
        if interrupted:
            log.warning("%d task(s) had lost their process and were ended", interrupted)
        # The ticket secret lives in the database, so a ticket from one process opens the
        # stream on any other.
        signing_key = (
            settings.secret_key.get_secret_value()
            if settings.secret_key
            else await store.secret("ticket_signing_key", secrets.token_urlsafe(32))
        )
        container = cls(
            settings=settings,
            agents=agents,
            store=store,
            bus=bus,
            providers=providers,
            runner=runner,
            tickets=Tickets(signing_key, settings.ticket_ttl_s),
            keys=KeyStatus(store, ttl_s=min(1.0, settings.key_check_s / 2)),
            metrics=metrics,
            cache=cache,
        )
        container._expiry = asyncio.create_task(container._expire_streams_forever())
        return container

    async def _expire_streams_forever(self) -> None:
        ttl = self.settings.stream_ttl_s
        while True:
            stamp = iso_utc(datetime.now(UTC) - timedelta(seconds=ttl))
            try:
                await self.store.expire_events(stamp)
                if self.cache is not None:
                    await self.cache.evict()
            except Exception:
                log.exception("could not expire old streams")
            await asyncio.sleep(min(600.0, ttl / 10))

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        await self.bus.control.stop()
        await self.runner.stop()
        await self.bus.close()
        await self.store.close()
        await self.providers.aclose()
        if self.cache is not None:
            await self.cache.aclose()


def build_verifier(agents: AgentConfig, providers: ProviderSet) -> LLMVerifier:
    """The cache's verifier asks the Reviewer's model, priced from the same table."""
    reviewer = agents.roles["reviewer"]
    return LLMVerifier(providers.get(reviewer.provider), reviewer.model, pricer=agents.price_usd)


async def _build_cache(
    settings: Settings, agents: AgentConfig, store: Store, providers: ProviderSet
) -> SemanticCache | None:
    if not settings.cache_enabled:
        return None
    embedder: Embedder
    try:
        if settings.embeddings == "openai":
            base_url = settings.embeddings_base_url or settings.llm_base_url
            if base_url is None:
                raise EmbeddingError("FAC_EMBEDDINGS=openai needs FAC_EMBEDDINGS_BASE_URL")
            key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
            embedder = OpenAIEmbedder(base_url, key, settings.embeddings_model)
        else:
            embedder = LocalEmbedder(
                settings.embeddings_model_path, settings.embeddings_tokenizer_path
            )
    except EmbeddingError as exc:
        log.warning("semantic cache disabled: %s", exc)
        return None
    verifier = build_verifier(agents, providers) if settings.cache_verify else None
    policy = CachePolicy(
        threshold=settings.cache_threshold,
        granularity=settings.cache_granularity,
        ttl_s=settings.cache_ttl_s,
        max_entries=settings.cache_max_entries,
        verify_band=settings.cache_verify_band if settings.cache_verify else 0.0,
    )
    cache = SemanticCache(store, build_vector_index(store), embedder, policy, verifier=verifier)
    loaded = await cache.load()
    log.info("semantic cache: %d entries loaded", loaded)
    return cache
