"""Run the app with uvicorn: loopback by default, graceful shutdown that lets answers finish."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import uvicorn

from gemvec.server.app import create_app
from gemvec.server.connections import uvicorn_options
from gemvec.server.settings import ServerSettings

log = logging.getLogger("gemvec.server")
GRACEFUL_SHUTDOWN_S = 30


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    embedder: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    collection: Any = None,
    generator: Any = None,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get up to 30 s to finish."""
    settings = settings or ServerSettings()
    if not is_loopback(host) and not settings.api_key:
        log.warning("listening on %s without an API key: anyone who can reach it can use it", host)
    app = create_app(embedder, settings, collection=collection, generator=generator)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
        **uvicorn_options(settings),
    )
