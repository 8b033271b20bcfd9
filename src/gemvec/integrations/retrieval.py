"""What every retriever adapter shares: opening a collection, a hit's metadata and id, filters.

Each framework's retriever calls :meth:`gemvec.store.Collection.search` and turns the hits into
its own documents; the pieces here keep those documents alike across frameworks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from gemvec.embedder import Embedder
from gemvec.errors import InputError
from gemvec.store import Collection, Hit
from gemvec.store.search import MODES

CollectionRef = Collection | str | os.PathLike[str]
# The hit's own fields a document's metadata carries (beside what was stored with it).
_HIT_FIELDS = ("source", "path", "title", "chunk", "start", "end", "document_id", "chunk_id")


def open_collection(collection: CollectionRef, embedder: Embedder | None = None) -> Collection:
    """``collection`` itself, or the collection of that name or path (its own model unless ``embedder``)."""
    if isinstance(collection, Collection):
        return collection
    return Collection.open(collection, embedder=embedder)


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """The metadata stored with the hit's document, plus where the hit lies (source, path, title,
    chunk, start, end, ids); a stored key of the same name wins, unset fields are left out."""
    located = {name: getattr(hit, name) for name in _HIT_FIELDS if getattr(hit, name) is not None}
    return {**located, **hit.metadata}


def hit_id(hit: Hit) -> str:
    """A stable id for the hit's chunk: ``source#chunk``."""
    return f"{hit.source}#{hit.chunk}"


def check_mode(mode: str) -> str:
    """``mode`` if gemvec searches that way, else an error naming the modes (before any work)."""
    if mode not in MODES:
        raise InputError(f"Unknown search mode {mode!r}; choose one of {', '.join(MODES)}.")
    return mode


def conditions_to_filters(conditions: Iterable[tuple[str, str, Any]], framework: str) -> dict[str, Any]:
    """gemvec filters from (key, operator, value) conditions that must all hold: ``==`` or ``in``.

    Other operators, and two conditions on one key, have no gemvec equivalent: the error says so
    and shows the filter gemvec takes instead (``framework`` names whose syntax it was).
    """
    filters: dict[str, Any] = {}
    for key, operator, value in conditions:
        if operator not in ("==", "in"):
            raise InputError(
                f"{framework} filter on {key!r}: gemvec supports equality and 'in' joined by AND, "
                f"not {operator!r}. Pass a gemvec filter instead, e.g. {{{key!r}: [value, ...]}}."
            )
        if key in filters:
            raise InputError(f"{framework} filter: {key!r} appears twice; list its values with 'in' instead.")
        filters[key] = list(value) if operator == "in" and not isinstance(value, str) else value
    return filters
