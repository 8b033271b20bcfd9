"""A gemvec collection as a LangChain ``VectorStore`` (extra: ``pip install 'gemvec[langchain]'``).

    from gemvec.integrations.langchain_store import GemvecVectorStore

    store = GemvecVectorStore("notes")                  # a collection's name or path, or a Collection
    store.add_texts(["Mars is the Red Planet."], metadatas=[{"title": "Mars", "lang": "en"}])
    store.similarity_search_with_score("Which planet is red?", k=3, filter={"lang": "en"})
    store.as_retriever(search_kwargs={"k": 3, "mode": "dense"}).invoke("Which planet is red?")

Search runs :meth:`gemvec.store.Collection.search`: ``mode`` ``hybrid`` (default), ``dense`` or
``keyword``, ``filter`` in gemvec's form (``{"lang": ["en", "fr"]}``; ``path``, ``title`` and
``source`` test the document itself). Scores are cosines in dense mode, BM25 in keyword mode and
rank-fusion scores in hybrid mode; relevance scores (``similarity_score_threshold``) need dense.

Texts are stored as documents (chunked if long) whose source is their id: the ids you pass, else
``text:`` and a hash of the text, as :meth:`~gemvec.store.Collection.add_texts` names them. A
collection stores each content once: a text already stored under another id is skipped.
``metadata["title"]`` becomes the document's title, which the document prompt carries. Found
chunks come back with their document's id.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

from gemvec.embedder import Embedder
from gemvec.errors import InputError, require
from gemvec.integrations.langchain import GemvecEmbeddings
from gemvec.integrations.retrieval import CollectionRef, check_mode, hit_metadata, open_collection
from gemvec.store import Collection

_feature = "The LangChain vector store"
VectorStore = require("langchain_core.vectorstores", "langchain", _feature).VectorStore
Document = require("langchain_core.documents", "langchain", _feature).Document


class GemvecVectorStore(VectorStore):
    """LangChain's VectorStore over a gemvec collection: add, search (with scores, filters, mode), delete.

    ``collection``: a :class:`~gemvec.store.Collection`, or its name or path (opened with its own
    model, or ``embedder``). ``mode``: the default search mode.
    """

    def __init__(
        self,
        collection: CollectionRef,
        *,
        embedder: Embedder | None = None,
        mode: str = "hybrid",
        title_key: str = "title",
    ) -> None:
        self.collection = open_collection(collection, embedder)
        self.mode = check_mode(mode)
        self.title_key = title_key
        self._embeddings: GemvecEmbeddings | None = None

    @property
    def embeddings(self) -> GemvecEmbeddings:
        """LangChain embeddings with the collection's model and size (documents and queries alike)."""
        if self._embeddings is None:
            self._embeddings = GemvecEmbeddings(self.collection.embedder, dim=self.collection.encode_dim)
        return self._embeddings

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Store ``texts`` (embedded by the collection) and return their ids; an id already stored
        is replaced."""
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        if len(metadatas) != len(texts) or (ids is not None and len(ids) != len(texts)):
            raise InputError(f"Got {len(texts)} texts; pass as many metadatas and ids, or none.")
        given = ids if ids is not None else [None] * len(texts)
        ids = [i if i is not None else _text_id(t) for i, t in zip(given, texts, strict=True)]
        titles = [_title(m.get(self.title_key)) for m in metadatas]
        self.collection.add_texts(texts, ids=ids, titles=titles, metadata=metadatas)
        return list(ids)

    def similarity_search(
        self,
        query: str,
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, mode=mode)]

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """The top ``k`` chunks and their scores (higher is better: see the module docstring)."""
        hits = self.collection.search(query, k=k, mode=mode or self.mode, filters=filter)
        return [(Document(id=h.source, page_content=h.text, metadata=hit_metadata(h)), h.score) for h in hits]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Cosine similarities, floored at 0: only dense search scores on that scale."""
        mode = kwargs.pop("mode", None) or self.mode
        if mode != "dense":
            raise InputError(
                f"Relevance scores are cosines, which only dense search gives; pass mode='dense' "
                f"(this search would run in {mode!r} mode)."
            )
        found = self.similarity_search_with_score(query, k, mode=mode, **kwargs)
        return [(doc, max(0.0, score)) for doc, score in found]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete the documents with these ids (every document when ``ids`` is None)."""
        if ids is None:
            ids = [d.source for d in self.collection.documents()]
        self.collection.delete(ids)
        return True

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Any,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        collection: str | os.PathLike[str] | None = None,
        mode: str = "hybrid",
        **kwargs: Any,
    ) -> GemvecVectorStore:
        """A store over ``collection`` (a name or path; created with ``embedding``'s model and
        ``dim`` unless it exists) holding ``texts``. ``embedding``: a :class:`GemvecEmbeddings`."""
        if not isinstance(embedding, GemvecEmbeddings):
            raise InputError("GemvecVectorStore embeds with gemvec: pass embedding=GemvecEmbeddings(...).")
        if collection is None:
            raise InputError("Pass collection= (a name or path) for GemvecVectorStore.from_texts.")
        created = Collection.create(collection, embedder=embedding.embedder, dim=embedding.dim, exist_ok=True)
        store = cls(created, mode=mode)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _text_id(text: str) -> str:
    """The source :meth:`gemvec.store.Collection.add_texts` gives a text without an id."""
    return "text:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _title(value: Any) -> str | None:
    return None if value is None else str(value)
