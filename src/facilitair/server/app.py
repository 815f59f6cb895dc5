"""The ASGI app: routes, error handling and the container's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from facilitair import __version__
from facilitair.config import Settings
from facilitair.server import routes_stream, routes_v1, routes_ws
from facilitair.server.container import Container
from facilitair.server.errors import error_response, install_error_handlers

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
        container = await Container.start(settings)
        app.state.container = container
        try:
            yield
        finally:
            await container.stop()

    app = FastAPI(
        title="Facilitair",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return error_response(
                413, f"request body over {settings.max_body_bytes} bytes", "too_large"
            )
        response = await call_next(request)
        if response.status_code >= 400:
            request.app.state.container.metrics.http_errors.labels(response.status_code).inc()
        return response

    app.include_router(routes_stream.router)
    app.include_router(routes_v1.router)
    app.include_router(routes_v1.metrics_router)
    app.include_router(routes_ws.router)
    return app
