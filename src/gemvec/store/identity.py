"""Which model a collection was built with, and refusing to mix models, dims or precisions."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from gemvec.errors import CollectionError, CollectionMismatchError

if TYPE_CHECKING:
    from gemvec.embedder import Embedder


def model_fingerprint(embedder: Embedder) -> str:
    """A short id of the weights: config.json plus every safetensors header (names, shapes, dtypes, sizes).

    Cheap (no weights are read) and stable across copies of the same checkpoint.
    """
    digest = hashlib.sha256()
    folder: Path | None = getattr(embedder, "folder", None)
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
        raise CollectionMismatchError(
            f"Collection {name} was built with {what} {built}, not {asked}. Vectors from different "
            f"{what}s cannot be searched together: {hint}"
        )
