"""``vectors=`` (how a collection stores vectors) and ``precision=`` (how its model computes).

Before 0.2, ``Collection.create/open(precision=...)`` meant the stored vector precision and
``compute_precision=`` the model's. ``compute_precision=`` still works, with a warning, and so
does ``precision="binary"`` (a vector precision only); ``precision="int8"`` or ``"float32"``
now means the model's precision, as in ``Embedder.load`` (CHANGELOG.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from gemvec.store.vectors import VectorPrecision, parse_vector_precision

_VECTOR_ONLY = {"binary"}


@dataclass(frozen=True)
class StoreOptions:
    vectors: VectorPrecision
    vectors_given: bool
    precision: str | None  # compute precision for the embedder, None = the CPU's default

    def open_kwargs(self) -> dict[str, Any]:
        return {"vectors": self.vectors.value if self.vectors_given else None, "precision": self.precision}


def resolve_options(
    vectors: str | None, precision: str | None, deprecated: dict[str, Any], where: str
) -> StoreOptions:
    """Apply the deprecated spellings (with a warning) and parse the vector precision."""
    deprecated = dict(deprecated)
    compute = deprecated.pop("compute_precision", None)
    if deprecated:
        raise TypeError(f"Collection.{where}() got unexpected keyword(s): {', '.join(deprecated)}")
    if compute is not None:
        _warn(f"Collection.{where}(compute_precision=...) is now precision=...")
        if precision is not None and vectors is None:  # the old pair: precision meant the vectors
            vectors, precision = precision, None
        precision = compute
    elif precision is not None and vectors is None and str(precision).lower() in _VECTOR_ONLY:
        _warn(f"Collection.{where}(precision={precision!r}) is now vectors={precision!r}")
        vectors, precision = precision, None
    return StoreOptions(parse_vector_precision(vectors), vectors is not None, precision)


def _warn(what: str) -> None:
    warnings.warn(f"{what} (see CHANGELOG.md).", DeprecationWarning, stacklevel=4)
