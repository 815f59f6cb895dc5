"""FastAPI dependencies: the container and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from facilitair.server.auth import Principal, authenticate
from facilitair.server.container import Container
from facilitair.server.errors import ApiError

LOCAL = Principal(tenant_id="local", key_id="local")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def principal_from_key(container: Container, api_key: str | None) -> Principal:
    if container.settings.no_auth:
        return LOCAL
    if not api_key:
        raise ApiError(401, "missing API key: send it in the X-API-Key header")
    principal = await authenticate(container.store, api_key)
    if principal is None:
        raise ApiError(401, "invalid or revoked API key")
    return principal


async def require_key(
    container: ContainerDep,
    x_api_key: Annotated[str | None, Header(description="Your API key")] = None,
) -> Principal:
    return await principal_from_key(container, x_api_key)


PrincipalDep = Annotated[Principal, Depends(require_key)]
