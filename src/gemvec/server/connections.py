"""Connection limits uvicorn lacks: a deadline to receive each request, and where to apply the cap.

uvicorn times out idle keep-alive connections, but not a client that connects and sends nothing,
nor one that drips its headers or body a byte at a time: such connections stayed open for ever.
:class:`ReadDeadlineProtocol` gives every request ``read_timeout_s`` from its first byte (or from
the connection) to arrive whole, then closes the connection. ``limit_concurrency`` caps
connections: past it, requests get uvicorn's 503.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from gemvec.server.settings import ServerSettings


class ReadDeadlineProtocol(H11Protocol):
    """h11 with a deadline for receiving each request (headers and body)."""

    read_timeout_s = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and not self._request_received():
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self._request_received():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _request_received(self) -> bool:
        return self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self._request_received() and not self.transport.is_closing():
            self.logger.info(
                "closing a connection that sent no complete request in %.0f s", self.read_timeout_s
            )
            self.transport.close()


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """The uvicorn ``Config`` keywords that apply ``settings``' connection limits."""
    protocol = type(
        "ReadDeadlineProtocol", (ReadDeadlineProtocol,), {"read_timeout_s": settings.read_timeout_s}
    )
    return {
        "http": protocol,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
    }
