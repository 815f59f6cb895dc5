"""An async client for the Facilitair API, with stream resumption built in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse

TERMINAL = frozenset({"task_completed", "task_error", "task_cancelled"})


class ClientError(Exception):
    """The server answered with an error; `message` is its sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ServerUnreachable(Exception):
    pass


@dataclass(frozen=True)
class Event:
    id: int | None
    event: str
    data: dict[str, Any]

    def as_json(self) -> str:
        return json.dumps({"id": self.id, "event": self.event, "data": self.data})


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        raise ClientError(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        raise ClientError(
            response.status_code, "http_error", f"server answered {response.status_code}"
        ) from None


class FacilitairClient:
    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url = base_url
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, read=None),
        )

    async def __aenter__(self) -> FacilitairClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach the server at {self.base_url}: {exc}") from exc
        _raise_for_error(response)
        return response.json() if response.content else None

    async def create_task(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/api/stream/task", json=body)
        return result

    async def status(self, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/api/stream/status/{stream_id}")
        return result

    async def cancel(self, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", f"/api/stream/{stream_id}/cancel")
        return result

    async def agents(self) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self._request("GET", "/api/v1/agents")
        return list(result["agents"])

    async def cache_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/api/v1/cache/stats")
        return result

    async def cache_clear(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("DELETE", "/api/v1/cache")
        return result

    async def tasks(self, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        params = {"limit": limit, "offset": offset}
        result: dict[str, Any] = await self._request("GET", "/api/v1/tasks", params=params)
        return result

    async def events(
        self,
        stream_id: str,
        after: int = 0,
        *,
        max_reconnects: int = 5,
        on_reconnect: Callable[[int, int], None] | None = None,
    ) -> AsyncIterator[Event]:
        """Every event after `after`, to the terminal one. A dropped connection is resumed
        from the last event received (Last-Event-ID), so nothing is missed or repeated."""
        last = after
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                async with aconnect_sse(
                    self._http, "GET", f"/api/stream/events/{stream_id}", headers=headers
                ) as source:
                    if source.response.status_code == 204:
                        return
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        _raise_for_error(source.response)
                    if on_reconnect is not None and failures:
                        on_reconnect(0, max_reconnects)
                    failures = 0
                    async for sse in source.aiter_sse():
                        if sse.event == "stream_closed":  # the server ended it (key revoked)
                            notice = json.loads(sse.data)
                            raise ClientError(401, notice["code"], notice["message"])
                        event = Event(
                            int(sse.id) if sse.id else None, sse.event, json.loads(sse.data)
                        )
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.event in TERMINAL:
                            return
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = "the stream closed before the task ended"  # e.g. a server restart
            failures += 1
            if failures > max_reconnects:
                raise ServerUnreachable(
                    f"lost the stream and could not resume it after {max_reconnects} tries "
                    f"({reason})"
                )
            if on_reconnect is not None:
                on_reconnect(failures, max_reconnects)
            await asyncio.sleep(min(8.0, 0.25 * 2 ** (failures - 1)))
