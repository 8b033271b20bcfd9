"""Pure ASGI middleware: request metrics, API-key check, request-body size limit."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gemvec.server.errors import error_body
from gemvec.server.metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIXES = ("/v1/", "/metrics", "/docs", "/redoc", "/openapi.json")


async def send_error(send: Send, status: int, message: str, code: str | None = None, **headers: str) -> None:
    body = json.dumps(error_body(status, message, None, code)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Counts requests by route and status, times them to the last byte, tracks how many are in flight."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.inc(amount=-1)
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.requests.inc(scope["method"], path, str(status))
            self.metrics.latency.observe(time.perf_counter() - start, path)


class AuthMiddleware:
    """``Authorization: Bearer KEY`` on the API, metrics and API docs, compared in constant time.

    Other paths (the page, ``/health``) stay open; ``scope["state"]["authenticated"]`` tells them
    whether the key was sent, so ``/health`` says more to a caller who has it.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        authenticated = scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        scope.setdefault("state", {})["authenticated"] = authenticated
        if authenticated or not scope["path"].startswith(PROTECTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        message = "Missing API key: send 'Authorization: Bearer KEY'." if not header else "Invalid API key."
        await send_error(send, 401, message, "invalid_api_key", www_authenticate="Bearer")


class BodyLimitMiddleware:
    """Reads the body (up to ``limit`` bytes) before the app runs; more gets 413, not a half-read request."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = (
            f"The request body is larger than the {self.limit}-byte limit; send fewer or shorter inputs."
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_error(send, 413, too_big, "request_too_large")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await send_error(send, 413, too_big, "request_too_large")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later reads wait for the client to disconnect, as usual

        await self.app(scope, replay, send)
