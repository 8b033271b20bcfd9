"""Which model a collection was built with, and refusing to mix models, dims or precisions."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from gemvec.errors import CollectionMismatchError
from gemvec.model.fingerprint import model_fingerprint

if TYPE_CHECKING:
    from gemvec.embedder import Embedder


def model_id(embedder: Embedder) -> str:
    """The id a new collection records for its model (see :mod:`gemvec.model.fingerprint`)."""
    return model_fingerprint(embedder.folder, embedder.model_name)


def verify_model(stored_id: str, stored_name: str, collection_name: str, embedder: Embedder) -> str | None:
    """Check ``embedder`` is the model a collection was built with.

    Returns None when ``stored_id`` is its id; the new id when ``stored_id`` is the id older gemvec
    recorded for the same checkpoint (the caller stores the new one: a migration). Raises
    CollectionMismatchError for any other model, a fine-tune of the same shapes included.
    """
    new = model_id(embedder)
    if stored_id == new:
        return None
    if stored_id == legacy_model_id(embedder):
        return new
    raise _mismatch(
        collection_name,
        "model",
        f"{stored_name} (id {stored_id})",
        f"{embedder.model_name} (id {new})",
        f"load {stored_name}, or index into a new collection.",
    )


def legacy_model_id(embedder: Embedder) -> str:
    """The id older collections recorded: config.json plus every safetensors header (names, shapes,
    dtypes, sizes), blind to the weight values. Only to recognise those collections and migrate them."""
    digest = hashlib.sha256()
    folder = embedder.folder
    if folder is None:
        digest.update(embedder.model_name.encode())
        return digest.hexdigest()[:16]
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.name == "config.json":
            digest.update(relative.encode() + path.read_bytes())
        elif path.suffix == ".safetensors":
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                digest.update(relative.encode() + f.read(size) + str(path.stat().st_size).encode())
    return digest.hexdigest()[:16]


def check_same(name: str, what: str, built: object, asked: object, hint: str) -> None:
    if asked is not None and str(asked) != str(built):
        raise _mismatch(name, what, built, asked, hint)


def _mismatch(name: str, what: str, built: object, asked: object, hint: str) -> CollectionMismatchError:
    return CollectionMismatchError(
        f"Collection {name} was built with {what} {built}, not {asked}. Vectors from different "
        f"{what}s cannot be searched together: {hint}"
    )
