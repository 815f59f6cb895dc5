"""A TCP proxy on 127.0.0.1 that can cut every open connection at once, to test reconnects.

The proxy runs its own event loop in a daemon thread, like the fake OpenAI server:

    with TcpProxy.to_url(server.base_url) as proxy:
        ...  # point a client at proxy.url
        proxy.drop_all()  # every current connection is reset; new ones work as before
        proxy.hold_requests()  # nothing more reaches the server until release_requests()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fakes.loop_server import LoopServer

__all__ = ["TcpProxy"]

T = TypeVar("T")

_READ_SIZE = 65536


class _Link:
    """One proxied connection: the client's side and the upstream side."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        """Drop both sides at once, without flushing what is buffered (a reset, not a FIN)."""
        self.client.transport.abort()
        self.upstream.transport.abort()

    def close(self) -> None:
        """Close both sides after sending what is buffered."""
        for writer in (self.client, self.upstream):
            if not writer.is_closing():
                writer.close()


class TcpProxy(LoopServer):
    """Forwards 127.0.0.1:<random port> to (target_host, target_port), byte for byte."""

    thread_name = "tcp-proxy"

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__()
        self.target_host = target_host
        self.target_port = target_port
        self.drops = 0  # connections cut by drop_all(), in total
        self._links: set[_Link] = set()
        self._forwarding: asyncio.Event | None = None  # set: client bytes go upstream

    @classmethod
    def to_url(cls, url: str) -> TcpProxy:
        """A proxy for the host and port of an http:// URL."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r} has no host and port")
        return cls(parts.hostname, parts.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- control ---------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """How many connections are open right now."""
        return self._call(self._count)

    def drop_all(self) -> int:
        """Reset every open connection (both sides); returns how many were cut. Connections
        made afterwards are proxied as usual."""
        return self._call(self._drop_all)

    def hold_requests(self) -> None:
        """Stop passing what clients send to the server (answers still flow back), as if
        the network to the server hung; bytes are kept and sent on release_requests()."""
        self._call(self._hold)

    def release_requests(self) -> None:
        self._call(self._release)

    def _call(self, action: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("TcpProxy is not running")
        return asyncio.run_coroutine_threadsafe(action(), loop).result(10)

    async def _hold(self) -> None:
        assert self._forwarding is not None
        self._forwarding.clear()

    async def _release(self) -> None:
        assert self._forwarding is not None
        self._forwarding.set()

    async def _count(self) -> int:
        return len(self._links)

    async def _drop_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.difference_update(links)
        self.drops += len(links)
        return len(links)

    # --- serving ---------------------------------------------------------------------------

    async def _on_start(self) -> None:
        self._forwarding = asyncio.Event()
        self._forwarding.set()

    async def _on_stop(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, self._forwarding)),
            asyncio.create_task(self._pump(up_reader, writer, None)),
        ]
        try:
            # Either side closing ends the link (HTTP clients do not half-close).
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            if link in self._links:
                self._links.discard(link)
                link.close()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event | None
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_READ_SIZE):
                if gate is not None:
                    await gate.wait()
                writer.write(data)
                await writer.drain()
