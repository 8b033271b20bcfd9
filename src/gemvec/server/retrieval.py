"""``POST /v1/search`` and ``POST /v1/ask`` over the collection given at start-up.

Retrieval embeds the query, so it runs on the model worker's thread between batches.
Generation can take seconds to minutes, so it runs on its own thread, one answer at a
time (a local model is not safe to share), and never holds up embeddings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from starlette.responses import Response, StreamingResponse

from gemvec.batching import BatchWorker
from gemvec.errors import GemvecError
from gemvec.server.errors import APIError
from gemvec.server.responses import json_response, sse
from gemvec.server.schemas import AskRequest, SearchRequest

_DONE = object()


class RetrievalService:
    """``generator``: a gemvec.llm Generator, or a spec for make_generator (None: its default),
    built on the first ask."""

    def __init__(self, collection: Any, generator: Any, worker: BatchWorker) -> None:
        self.collection = collection
        self.generator = generator
        self.worker = worker
        self._generating = anyio.CapacityLimiter(1)

    @property
    def collection_name(self) -> str | None:
        return None if self.collection is None else self.collection.name

    @property
    def can_ask(self) -> bool:
        return self.collection is not None

    async def _llm(self) -> Any:
        from gemvec.llm import Generator, make_generator

        if not isinstance(self.generator, Generator):
            try:
                self.generator = await anyio.to_thread.run_sync(make_generator, self.generator)
            except GemvecError as exc:
                raise APIError(
                    503, f"The LLM for /v1/ask is unavailable: {exc}", code="llm_unavailable"
                ) from None
        return self.generator

    def _need_collection(self) -> Any:
        if self.collection is None:
            raise APIError(
                503,
                "No collection configured: start the server with `gemvec serve -c COLLECTION`.",
                code="no_collection",
            )
        return self.collection

    async def search(self, request: SearchRequest) -> dict:
        coll = self._need_collection()
        hits = await self.worker.call(
            lambda: coll.search(request.query, k=request.k, mode=request.mode, filters=request.filters)
        )
        return {
            "object": "list",
            "query": request.query,
            "collection": coll.name,
            "data": [hit.to_dict() for hit in hits],
        }

    async def ask(self, request: AskRequest) -> Response:
        coll = self._need_collection()
        llm = None if request.answer_mode == "extractive" else await self._llm()
        # Retrieval only: the returned stream has not generated anything yet.
        stream = await self.worker.call(
            lambda: coll.ask(
                request.question,
                llm,
                k=request.k,
                mode=request.mode,
                filters=request.filters,
                stream=True,
                max_tokens=request.max_tokens,
                temperature=float(request.temperature),
                answer_mode=request.answer_mode,
            )
        )
        if request.stream:
            return StreamingResponse(
                self._events(stream), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        async with self._generating:
            try:
                await anyio.to_thread.run_sync(lambda: list(stream))
            except Exception as exc:
                raise APIError(502, f"The LLM failed: {type(exc).__name__}: {exc}", code="llm_error") from exc
        return json_response(self._answer(stream, coll.name))

    @staticmethod
    def _answer(stream: Any, collection: str) -> dict:
        return {"object": "answer", "collection": collection, **stream.answer.to_dict()}

    async def _events(self, stream: Any) -> AsyncIterator[str]:
        """``sources`` first, then one ``delta`` per piece, then ``answer`` (or ``error``)."""
        yield sse("sources", {"sources": [s.to_dict() for s in stream.sources]})
        async with self._generating:
            pieces: Iterator[str] = iter(stream)
            try:
                while (piece := await anyio.to_thread.run_sync(next, pieces, _DONE)) is not _DONE:
                    yield sse("delta", {"text": piece})
            except Exception as exc:  # the response has started: report in-band
                yield sse("error", {"message": f"{type(exc).__name__}: {exc}"})
                return
        yield sse("answer", self._answer(stream, self.collection_name or ""))
