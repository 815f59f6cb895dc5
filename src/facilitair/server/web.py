"""Serving the built web UI (web/dist) and, when configured, CORS for other origins."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'"
)


def default_web_dir() -> Path | None:
    """web/dist of a source checkout, when it has been built."""
    candidate = Path(__file__).resolve().parents[3] / "web" / "dist"
    return candidate if (candidate / "index.html").is_file() else None


class HashedAssets(StaticFiles):
    """Vite names built assets by content hash: they can be cached for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_web(app: FastAPI, web_dir: Path) -> None:
    index = web_dir / "index.html"
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if (web_dir / "assets").is_dir():
        app.mount("/assets", HashedAssets(directory=web_dir / "assets"), name="assets")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(index, headers=headers)

    for extra in web_dir.iterdir():
        if extra.is_file() and extra.name != "index.html":
            _serve_file(app, extra, headers)


def _serve_file(app: FastAPI, path: Path, headers: dict[str, str]) -> None:
    async def serve() -> FileResponse:
        return FileResponse(path, headers=headers)

    app.add_api_route(f"/{path.name}", serve, include_in_schema=False, methods=["GET"])


def allow_origins(app: FastAPI, origins: list[str]) -> None:
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["X-API-Key", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After"],
    )
