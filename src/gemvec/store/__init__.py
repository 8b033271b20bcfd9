"""Collections: a folder with a SQLite database (documents, chunks, vectors, FTS5) and a FAISS index."""

from gemvec.errors import (
    CollectionDamagedError,
    CollectionError,
    CollectionLockedError,
    CollectionMismatchError,
    CollectionNotFoundError,
)
from gemvec.store.collection import Collection, StoredDocument
from gemvec.store.creation import delete_collection
from gemvec.store.paths import collections_dir, list_collections, resolve_collection
from gemvec.store.search import Hit
from gemvec.store.writer import IngestReport

__all__ = [
    "Collection",
    "CollectionDamagedError",
    "CollectionError",
    "CollectionLockedError",
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "Hit",
    "IngestReport",
    "StoredDocument",
    "collections_dir",
    "delete_collection",
    "list_collections",
    "resolve_collection",
]
