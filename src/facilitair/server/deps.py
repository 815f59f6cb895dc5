"""FastAPI dependencies: the container and the caller's identity."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header, Request

from facilitair.server.auth import Principal, TicketError, authenticate
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


async def principal_from_ticket(container: Container, ticket: str) -> tuple[str, Principal]:
    """The one stream a ticket opens, and who for; 401 when it is forged, expired, or its key
    has been revoked since."""
    try:
        stream_id, principal = container.tickets.verify(ticket)
    except TicketError as exc:
        raise ApiError(401, str(exc)) from None
    if not await container.keys.active(principal.key_id, fresh=True):
        raise ApiError(401, "the key that asked for this ticket has been revoked")
    return stream_id, principal


class KeyWatch:
    """Ends a long-lived stream when the key that opened it is revoked: `revoked()` is asked
    on every event and looks the key up at most every `key_check_s`."""

    def __init__(self, container: Container, principal: Principal) -> None:
        self._keys = container.keys
        self._key_id = principal.key_id
        self._every = container.settings.key_check_s
        self._next = time.monotonic() + self._every
        self._exempt = container.settings.no_auth or principal == LOCAL

    async def revoked(self, *, now: bool = False) -> bool:
        if self._exempt:
            return False
        moment = time.monotonic()
        if moment < self._next and not now:
            return False
        self._next = moment + self._every
        return not await self._keys.active(self._key_id, fresh=now)


KEY_REVOKED = "the API key that opened this stream has been revoked"
