"""LangChain ``Embeddings`` backed by a local gemvec Embedder (extra: ``pip install 'gemvec[langchain]'``).

    from gemvec.integrations.langchain import GemvecEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(texts, embedding=GemvecEmbeddings(dim=256))
    store.similarity_search("query")

Documents get the document prompt and queries the search-query prompt, as EmbeddingGemma
was trained. To use a running ``gemvec serve`` instead, point LangChain's OpenAI embeddings
at ``http://127.0.0.1:8000/v1`` (with ``check_embedding_ctx_length=False``: gemvec takes text,
not token ids). For a gemvec collection as a LangChain vector store, see
:mod:`gemvec.integrations.langchain_store`.

Every call, sync or async, runs on one model thread with concurrent calls merged into shared
batches (:class:`gemvec.integrations.runner.EmbeddingRunner`), never on the caller's thread or
asyncio's shared pool (LangChain's default for async).
"""

from __future__ import annotations

from gemvec.embedder import Embedder
from gemvec.errors import require
from gemvec.integrations.runner import EmbeddingRunner
from gemvec.prompts import Task

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
        self.runner = EmbeddingRunner.load(
            embedder, model=model, precision=precision, dim=dim, batch_size=batch_size
        )
        self.query_task = query_task

    @property
    def embedder(self) -> Embedder:
        return self.runner.embedder

    @property
    def dim(self) -> int | None:
        return self.runner.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.runner.embed(texts, Task.DOCUMENT).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.runner.embed([text], self.query_task)[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return (await self.runner.aembed(texts, Task.DOCUMENT)).tolist()

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.runner.aembed([text], self.query_task))[0].tolist()
