"""The FastAPI application: routes, middleware and the model worker's lifetime.

Build it with :func:`create_app` (tests do, on the tiny model) and serve it with
uvicorn (``gemvec serve`` does, see :mod:`gemvec.server.run`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, Response

from gemvec import __version__
from gemvec.batching import BatchWorker
from gemvec.model.openmp import release_openmp_threads
from gemvec.server.embeddings import EmbeddingService
from gemvec.server.errors import install_error_handlers
from gemvec.server.metrics import ServerMetrics
from gemvec.server.middleware import AuthMiddleware, BodyLimitMiddleware, MetricsMiddleware
from gemvec.server.responses import json_response
from gemvec.server.retrieval import RetrievalService
from gemvec.server.schemas import AskRequest, EmbeddingRequest, SearchRequest
from gemvec.server.settings import ServerSettings

if TYPE_CHECKING:
    from gemvec.embedder import Embedder

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def create_app(
    embedder: Embedder,
    settings: ServerSettings | None = None,
    *,
    collection: Any = None,
    generator: Any = None,
) -> FastAPI:
    """The server for ``embedder``; ``collection`` (a gemvec Collection) enables search, and with a
    ``generator`` (a gemvec.llm Generator or spec string), ask."""
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    worker = BatchWorker(
        embedder,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_inputs=settings.max_batch_inputs,
        gather_s=settings.batch_gather_s,
        observer=metrics,
    )
    embeddings = EmbeddingService(embedder, worker, settings)
    retrieval = RetrievalService(collection, generator, worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # From here on only the model thread runs torch. This thread usually loaded the model, and
        # the OpenMP pool it keeps would make libgomp throttle the model thread's (model.openmp).
        release_openmp_threads()
        worker.start()
        try:
            yield
        finally:
            # uvicorn has already let in-flight requests finish; finish what is queued, then stop.
            await anyio.to_thread.run_sync(worker.stop)

    app = FastAPI(
        title="gemvec",
        version=__version__,
        description="EmbeddingGemma embeddings (OpenAI-compatible), search and ask over a collection.",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)

    @app.post("/v1/embeddings")
    async def create_embeddings(request: EmbeddingRequest) -> Response:
        return json_response(await embeddings.create(request))

    @app.get("/v1/models")
    async def list_models() -> Response:
        model = {"id": embeddings.model_id, "object": "model", "created": 0, "owned_by": "gemvec"}
        return json_response({"object": "list", "data": [model]})

    @app.post("/v1/search")
    async def search(request: SearchRequest) -> Response:
        return json_response(await retrieval.search(request))

    @app.post("/v1/ask", response_model=None)
    async def ask(request: AskRequest) -> Response:
        return await retrieval.ask(request)

    @app.get("/health")
    async def health(request: Request) -> Response:
        """Liveness for anyone; the model and collection only for a caller with the key (when one is set)."""
        # Whether a key is needed is no secret (every 401 says it), and the page asks for one by it.
        status = {"status": "ok" if worker.alive else "stopping", "auth": settings.api_key is not None}
        if settings.api_key and not request.scope.get("state", {}).get("authenticated"):
            return json_response(status, 200 if worker.alive else 503)
        body = {
            **status,
            "model": embeddings.model_id,
            "dim": embedder.dim,
            "collection": retrieval.collection_name,
            "ask": retrieval.can_ask,
            "version": __version__,
        }
        return json_response(body, 200 if worker.alive else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=PROMETHEUS_TYPE)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page_html())

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    # Outermost last: metrics see everything, CORS answers preflights before the key is asked for.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _page_html() -> str:
    return resources.files("gemvec.server").joinpath("static/index.html").read_text(encoding="utf-8")


__all__ = ["create_app"]
