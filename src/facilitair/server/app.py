"""The ASGI app: routes, error handling and the container's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from facilitair import __version__
from facilitair.config import Settings
from facilitair.observability import Metrics
from facilitair.runtime import settle_heap
from facilitair.server import routes_stream, routes_v1, routes_ws
from facilitair.server.container import Container
from facilitair.server.errors import install_error_handlers
from facilitair.server.middleware import RequestGuard
from facilitair.server.web import allow_origins, default_web_dir, mount_web

DESCRIPTION = """
Run a team of LLM agents on a software task and stream their collaboration live.

Authenticate with the `X-API-Key` header. A browser's EventSource cannot send headers: get a
short-lived ticket from `POST /api/stream/{stream_id}/ticket` and pass it as `?ticket=`.
The same events are available over a WebSocket at `/api/stream/ws`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = await Container.start(settings, metrics)
        app.state.container = container
        settle_heap()
        try:
            yield
        finally:
            await container.stop()

    metrics = Metrics()
    app = FastAPI(
        title="Facilitair",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_bytes=settings.max_body_bytes, errors=metrics.http_errors)

    app.include_router(routes_stream.router)
    app.include_router(routes_v1.router)
    app.include_router(routes_v1.metrics_router)
    app.include_router(routes_ws.router)
    web_dir = settings.web_dir or default_web_dir()
    if web_dir is not None and (web_dir / "index.html").is_file():
        mount_web(app, web_dir)
    if settings.cors_origins:
        allow_origins(app, settings.cors_origins)
    return app
