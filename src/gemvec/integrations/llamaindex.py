"""LlamaIndex embedding model and retriever backed by gemvec (extra: ``pip install 'gemvec[llamaindex]'``).

    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from gemvec.integrations.llamaindex import GemvecEmbedding, GemvecRetriever

    index = VectorStoreIndex([TextNode(text=t) for t in texts], embed_model=GemvecEmbedding(dim=256))
    index.as_retriever(similarity_top_k=3).retrieve("a question")
    GemvecRetriever("notes", mode="hybrid").retrieve("a question")   # a gemvec collection

:class:`GemvecEmbedding` maps LlamaIndex's query embeddings to the search-query prompt (or
``query_task``) and its text embeddings, which index nodes, to the document prompt (or
``text_task``); every call runs on one model thread
(:class:`gemvec.integrations.runner.EmbeddingRunner`). LlamaIndex embeds a node's text with its
metadata (``MetadataMode.EMBED``), so titles reach the model as part of the text, not the prompt.

:class:`GemvecRetriever` searches a gemvec collection (dense, keyword or hybrid) and takes
gemvec filters (``{"lang": ["en", "fr"]}``) or LlamaIndex ``MetadataFilters`` of ``==`` and
``in`` tests joined by AND.
"""

from __future__ import annotations

import os
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
from gemvec.prompts import parse_task

_feature = "The LlamaIndex integration"
BaseEmbedding = require("llama_index.core.base.embeddings.base", "llamaindex", _feature).BaseEmbedding
BaseRetriever = require("llama_index.core.base.base_retriever", "llamaindex", _feature).BaseRetriever
_schema = require("llama_index.core.schema", "llamaindex", _feature)
_types = require("llama_index.core.vector_stores.types", "llamaindex", _feature)
PrivateAttr = require("llama_index.core.bridge.pydantic", "llamaindex", _feature).PrivateAttr


class GemvecEmbedding(BaseEmbedding):
    """Query embeddings with ``query_task``'s prompt, text (node) embeddings with ``text_task``'s."""

    dim: int | None = None
    query_task: str = "query"
    text_task: str = "document"
    _runner: EmbeddingRunner = PrivateAttr()

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        precision: str | None = None,
        dim: int | None = None,
        query_task: str = "query",
        text_task: str = "document",
        embed_batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        runner = EmbeddingRunner.load(
            embedder, model=model, precision=precision, dim=dim, batch_size=embed_batch_size
        )
        super().__init__(
            model_name=runner.embedder.model_name,
            embed_batch_size=embed_batch_size,
            dim=runner.dim,
            query_task=parse_task(query_task).value,
            text_task=parse_task(text_task).value,
            **kwargs,
        )
        self._runner = runner

    @classmethod
    def class_name(cls) -> str:
        return "GemvecEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._runner.embed([query], self.query_task)[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._runner.aembed([query], self.query_task))[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._runner.embed(texts, self.text_task).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return (await self._runner.aembed(texts, self.text_task)).tolist()


class GemvecRetriever(BaseRetriever):
    """The top ``similarity_top_k`` chunks of a gemvec collection, as scored TextNodes.

    ``collection``: a :class:`~gemvec.store.Collection`, or its name or path (opened with its
    own model, or ``embedder``).
    """

    def __init__(
        self,
        collection: CollectionRef,
        *,
        embedder: Embedder | None = None,
        similarity_top_k: int = 10,
        mode: str = "hybrid",
        filters: dict[str, Any] | Any | None = None,
        **kwargs: Any,
    ) -> None:
        self.collection = open_collection(collection, embedder)
        self.similarity_top_k = similarity_top_k
        self.mode = check_mode(mode)
        self.filters = gemvec_filters(filters)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: Any) -> list[Any]:
        hits = self.collection.search(
            query_bundle.query_str, k=self.similarity_top_k, mode=self.mode, filters=self.filters
        )
        return [
            _schema.NodeWithScore(
                node=_schema.TextNode(id_=hit_id(h), text=h.text, metadata=hit_metadata(h)), score=h.score
            )
            for h in hits
        ]


def gemvec_filters(filters: dict[str, Any] | Any | None) -> dict[str, Any] | None:
    """gemvec filters as they are; LlamaIndex ``MetadataFilters`` turned into gemvec's where they
    are ``==`` or ``in`` tests joined by AND (anything else is refused with a message)."""
    if filters is None or isinstance(filters, dict):
        return filters
    if filters.condition not in (None, _types.FilterCondition.AND) or any(
        isinstance(f, _types.MetadataFilters) for f in filters.filters
    ):
        raise InputError(
            "LlamaIndex filters: gemvec joins '==' and 'in' tests with AND, without nesting; got "
            f"{filters!r}. Or pass a gemvec filter, e.g. {{'lang': ['en', 'fr']}}."
        )
    return conditions_to_filters(
        ((f.key, _types.FilterOperator(f.operator).value, f.value) for f in filters.filters), "LlamaIndex"
    )
