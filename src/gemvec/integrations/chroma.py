"""A Chroma embedding function backed by gemvec (extra: ``pip install 'gemvec[chroma]'``).

    import chromadb
    from gemvec.integrations.chroma import GemvecEmbeddingFunction

    client = chromadb.PersistentClient("./chroma")
    docs = client.get_or_create_collection("docs", embedding_function=GemvecEmbeddingFunction(dim=256))
    docs.add(ids=["mars"], documents=["Mars is the Red Planet."])
    docs.query(query_texts=["Which planet is red?"], n_results=1)

Chroma embeds what it adds with ``__call__`` (the document prompt, or ``document_task``) and
query texts with ``embed_query`` (the search-query prompt, or ``query_task``), all on one model
thread (:class:`gemvec.integrations.runner.EmbeddingRunner`). The function is registered under
the name ``gemvec``: a persisted collection stores its model folder, precision, ``dim`` and tasks,
and Chroma rebuilds the function from them when the collection is opened again in a process that
has imported this module. Vectors are unit length, so the default space is ``cosine``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gemvec.embedder import Embedder
from gemvec.errors import require
from gemvec.integrations.runner import EmbeddingRunner
from gemvec.prompts import parse_task

_types = require("chromadb.api.types", "chroma", "The Chroma integration")
_functions = require("chromadb.utils.embedding_functions", "chroma", "The Chroma integration")


@_functions.register_embedding_function
class GemvecEmbeddingFunction(_types.EmbeddingFunction[_types.Documents]):
    """Documents with ``document_task``'s prompt, queries with ``query_task``'s; ``dim`` for Matryoshka."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        precision: str | None = None,
        dim: int | None = None,
        query_task: str = "query",
        document_task: str = "document",
        batch_size: int = 32,
    ) -> None:
        self.runner = EmbeddingRunner.load(
            embedder, model=model, precision=precision, dim=dim, batch_size=batch_size
        )
        self.query_task = parse_task(query_task).value
        self.document_task = parse_task(document_task).value

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        return list(self.runner.embed(input, self.document_task))

    def embed_query(self, input: list[str]) -> list[np.ndarray]:
        return list(self.runner.embed(input, self.query_task))

    @staticmethod
    def name() -> str:
        return "gemvec"

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        embedder = self.runner.embedder
        return {
            "model": str(embedder.folder or embedder.model_name),
            "precision": embedder.precision.value,
            "dim": self.runner.dim,
            "query_task": self.query_task,
            "document_task": self.document_task,
            "batch_size": self.runner.batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> GemvecEmbeddingFunction:
        return GemvecEmbeddingFunction(**config)
