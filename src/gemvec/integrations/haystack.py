"""Haystack components backed by gemvec (extra: ``pip install 'gemvec[haystack]'``).

    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from gemvec.integrations.haystack import GemvecDocumentEmbedder, GemvecTextEmbedder

    store = InMemoryDocumentStore()
    docs = GemvecDocumentEmbedder(dim=256).run([Document(content="...", meta={"title": "..."})])
    store.write_documents(docs["documents"])
    query = Pipeline()
    query.add_component("embed", GemvecTextEmbedder(dim=256))
    query.add_component("retrieve", InMemoryEmbeddingRetriever(store))
    query.connect("embed.embedding", "retrieve.query_embedding")
    query.run({"embed": {"text": "a question"}})

:class:`GemvecDocumentEmbedder` gives documents the document prompt with their title (from
``meta["title"]``, or the ``title_field`` you name); :class:`GemvecTextEmbedder` gives a query
the search-query prompt (or another ``task``). Both embed on one model thread
(:class:`gemvec.integrations.runner.EmbeddingRunner`); the model loads in ``warm_up`` (which a
Pipeline calls) unless an :class:`~gemvec.embedder.Embedder` was passed.

:class:`GemvecRetriever` searches a gemvec collection (dense, keyword or hybrid) and takes gemvec
filters (``{"lang": "en"}``, ``{"lang": ["en", "fr"]}``) or Haystack's, as far as they are
equality or ``in`` tests joined by AND.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from gemvec.embedder import Embedder
from gemvec.errors import InputError, require
from gemvec.integrations.retrieval import (
    CollectionRef,
    check_mode,
    conditions_to_filters,
    hit_id,
    hit_metadata,
    open_collection,
)
from gemvec.integrations.runner import EmbeddingRunner
from gemvec.prompts import Task, parse_task

_haystack = require("haystack", "haystack", "The Haystack integration")
component, Document = _haystack.component, _haystack.Document


class _GemvecEmbedderBase:
    """The model settings both embedders take, and the model they load in ``warm_up``."""

    def __init__(
        self,
        embedder: Embedder | None,
        model: str | os.PathLike[str] | None,
        precision: str | None,
        dim: int | None,
        task: str,
        batch_size: int,
    ) -> None:
        self.embedder = embedder
        self.model = model
        self.precision = precision
        self.dim = dim
        self.task = parse_task(task).value
        self.batch_size = batch_size
        self._runner: EmbeddingRunner | None = None

    def warm_up(self) -> None:
        """Load the model (unless one was passed) and check ``dim`` against it."""
        if self._runner is None:
            self._runner = EmbeddingRunner.load(
                self.embedder,
                model=self.model,
                precision=self.precision,
                dim=self.dim,
                batch_size=self.batch_size,
            )

    @property
    def runner(self) -> EmbeddingRunner:
        self.warm_up()
        assert self._runner is not None
        return self._runner

    def _meta(self) -> dict[str, Any]:
        return {"model": self.runner.embedder.model_name, "dim": self.runner.out_dim, "task": self.task}


@component
class GemvecTextEmbedder(_GemvecEmbedderBase):
    """Embeds one text (a query) with ``task``'s prompt: ``{"embedding": [...], "meta": {...}}``."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        precision: str | None = None,
        dim: int | None = None,
        task: str = "query",
        batch_size: int = 32,
    ) -> None:
        # (not super(): @component rebuilds the class)
        _GemvecEmbedderBase.__init__(self, embedder, model, precision, dim, task, batch_size)

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    def run(self, text: str) -> dict[str, Any]:
        return {"embedding": self.runner.embed([text], self.task)[0].tolist(), "meta": self._meta()}

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    async def run_async(self, text: str) -> dict[str, Any]:
        vectors = await self.runner.aembed([text], self.task)
        return {"embedding": vectors[0].tolist(), "meta": self._meta()}


@component
class GemvecDocumentEmbedder(_GemvecEmbedderBase):
    """Sets each document's ``embedding``: its content with the document prompt and the title in
    ``meta[title_field]`` (or with ``task``'s prompt, without titles, for another task)."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        precision: str | None = None,
        dim: int | None = None,
        task: str = "document",
        title_field: str | None = "title",
        batch_size: int = 32,
    ) -> None:
        _GemvecEmbedderBase.__init__(self, embedder, model, precision, dim, task, batch_size)
        self.title_field = title_field

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        texts, titles = self._inputs(documents)
        return self._output(documents, self.runner.embed(texts, self.task, titles))

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        texts, titles = self._inputs(documents)
        return self._output(documents, await self.runner.aembed(texts, self.task, titles))

    def _inputs(self, documents: list[Document]) -> tuple[list[str], list[str | None] | None]:
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError(
                "GemvecDocumentEmbedder takes a list of Documents; embed a string with GemvecTextEmbedder."
            )
        texts = [d.content or "" for d in documents]
        if self.title_field is None or parse_task(self.task) is not Task.DOCUMENT:
            return texts, None
        titles = [d.meta.get(self.title_field) for d in documents]
        return texts, [None if t is None else str(t) for t in titles]

    def _output(self, documents: list[Document], vectors) -> dict[str, Any]:
        embedded = [replace(d, embedding=v.tolist()) for d, v in zip(documents, vectors, strict=True)]
        return {"documents": embedded, "meta": self._meta()}


@component
class GemvecRetriever:
    """The top ``top_k`` chunks of a gemvec collection for a query, as Documents with ``score``.

    ``collection``: a :class:`~gemvec.store.Collection`, or its name or path (opened with its own
    model, or ``embedder``). ``filters`` given to ``run`` replace those given here.
    """

    def __init__(
        self,
        collection: CollectionRef,
        *,
        embedder: Embedder | None = None,
        top_k: int = 10,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
    ) -> None:
        self.collection = open_collection(collection, embedder)
        self.top_k = top_k
        self.mode = check_mode(mode)
        self.filters = filters

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        mode: str | None = None,
    ) -> dict[str, Any]:
        hits = self.collection.search(
            query,
            k=top_k or self.top_k,
            mode=mode or self.mode,
            filters=gemvec_filters(filters if filters is not None else self.filters),
        )
        documents = [
            Document(id=hit_id(h), content=h.text, meta=hit_metadata(h), score=h.score) for h in hits
        ]
        return {"documents": documents}


def gemvec_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """gemvec filters as they are; Haystack's (``{"field": "meta.lang", "operator": "==", ...}``,
    joined by ``AND``) turned into gemvec's where they test metadata with ``==`` or ``in``."""
    if not filters or "operator" not in filters:
        return filters
    parts = filters.get("conditions", [filters]) if filters["operator"] == "AND" else [filters]
    conditions = []
    for part in parts:
        field = part.get("field") or ""
        if not field.startswith("meta."):
            raise InputError(
                "Haystack filters: gemvec tests document metadata (fields 'meta.*') with '==' or 'in', "
                f"joined by AND; got {part!r}. Or pass a gemvec filter, e.g. {{'lang': ['en', 'fr']}}."
            )
        conditions.append((field.removeprefix("meta."), part["operator"], part.get("value")))
    return conditions_to_filters(conditions, "Haystack")
