"""Run the server in a background thread on a free loopback port (tests, benchmarks, notebooks).

with BackgroundServer(create_app(embedder)) as server:
    OpenAI(base_url=server.url + "/v1", api_key="unused").embeddings.create(...)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from gemvec.server.connections import uvicorn_options


class BackgroundServer:
    """uvicorn serving ``app`` on ``host`` (port 0: any free port) until the ``with`` block ends."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        config.setdefault("log_level", "warning")
        config.setdefault("timeout_graceful_shutdown", 30)
        settings = getattr(getattr(app, "state", None), "settings", None)
        if settings is not None:  # an app from create_app: its connection limits
            config = {**uvicorn_options(settings), **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
        self.host = host
        self.port = port
        self._thread = threading.Thread(target=self.server.run, name="gemvec-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop like SIGTERM does: stop accepting, let in-flight requests finish, run shutdown."""
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
