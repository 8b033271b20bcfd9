"""LangChain ``Embeddings`` backed by a local gemvec Embedder (extra: ``pip install 'gemvec[langchain]'``).

    from gemvec.integrations.langchain import GemvecEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(texts, embedding=GemvecEmbeddings(dim=256))
    store.similarity_search("query")

Documents get the document prompt and queries the search-query prompt, as EmbeddingGemma
was trained. To use a running ``gemvec serve`` instead, point LangChain's OpenAI embeddings
at ``http://127.0.0.1:8000/v1`` (with ``check_embedding_ctx_length=False``: gemvec takes text,
not token ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gemvec.errors import require

if TYPE_CHECKING:
    from gemvec.embedder import Embedder

Embeddings = require("langchain_core.embeddings", "langchain", "The LangChain adapter").Embeddings


class GemvecEmbeddings(Embeddings):
    """``embed_documents`` = ``encode_document``, ``embed_query`` = ``encode_query`` (or another task)."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        precision: str | None = None,
        dim: int | None = None,
        query_task: str = "query",
        batch_size: int = 32,
    ) -> None:
        if embedder is None:
            from gemvec.embedder import Embedder

            embedder = Embedder.load(model, precision)
        self.embedder = embedder
        self.dim = dim
        self.query_task = query_task
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.embedder.encode_document(list(texts), dim=self.dim, batch_size=self.batch_size)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.encode(text, task=self.query_task, dim=self.dim).tolist()
