"""The server side of the web UI: static files with the right caching and CSP, and CORS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from support import ServerThread


def built_ui(folder: Path) -> Path:
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text('<script type="module" src="/assets/app-1a2b.js"></script>')
    (folder / "assets" / "app-1a2b.js").write_text("console.log('hi')")
    (folder / "favicon.svg").write_text("<svg/>")
    return folder


async def test_the_built_ui_is_served_with_caching_headers_and_a_csp(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    server = make_server(web_dir=built_ui(tmp_path / "dist"))
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        page = await client.get("/")
        asset = await client.get("/assets/app-1a2b.js")
        icon = await client.get("/favicon.svg")
        missing = await client.get("/assets/nope.js")
        api = await client.get("/api/v1/tasks")

    assert page.status_code == 200 and "app-1a2b.js" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert icon.status_code == 200
    assert missing.status_code == 404
    assert api.status_code == 401  # the API is unaffected


async def test_cors_is_off_by_default_and_allows_only_configured_origins(
    make_server: Callable[..., ServerThread],
) -> None:
    preflight = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type",
    }
    closed = make_server()
    opened = make_server(cors_origins=["http://localhost:5173"])
    async with httpx.AsyncClient() as client:
        refused = await client.options(f"{closed.base_url}/api/stream/task", headers=preflight)
        allowed = await client.options(f"{opened.base_url}/api/stream/task", headers=preflight)
        other = await client.options(
            f"{opened.base_url}/api/stream/task",
            headers={**preflight, "Origin": "http://evil.test"},
        )

    assert "access-control-allow-origin" not in refused.headers
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
