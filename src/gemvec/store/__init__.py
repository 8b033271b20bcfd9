"""Collections: a folder with a SQLite database (documents, chunks, vectors, FTS5) and a FAISS index."""

from gemvec.store.collection import Collection, StoredDocument, delete_collection
from gemvec.store.identity import CollectionError, CollectionMismatchError
from gemvec.store.paths import collections_dir, list_collections, resolve_collection
from gemvec.store.writer import IngestReport

__all__ = [
    "Collection",
    "CollectionError",
    "CollectionMismatchError",
    "IngestReport",
    "StoredDocument",
    "collections_dir",
    "delete_collection",
    "list_collections",
    "resolve_collection",
]
