"""A collection's search SQL: dense (FAISS + exact rescoring), keyword (BM25 via FTS5), hybrid (RRF).

Metadata filters are a dict: ``{"lang": "en"}`` (equality), ``{"lang": ["en", "fr"]}`` (any of),
with the special keys ``path`` (a glob when it holds ``*``), ``title`` and ``source``; every other
key is looked up in the document's metadata. :class:`gemvec.store.Collection` puts these together.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gemvec.errors import InputError
from gemvec.store.db import read_vectors
from gemvec.store.vectors import RESCORE_FACTOR, VectorIndex, rescore

MODES = ("dense", "keyword", "hybrid")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
EXACT_FILTER_MAX = 20_000  # filtered dense search scores the allowed chunks exactly up to this many
MAX_FILTER_VALUES = 100_000  # values in one filter key: more is a request to split
_COLUMNS = {"path": "d.path", "title": "d.title", "source": "d.source"}
_WORD = re.compile(r"\w+", re.UNICODE)
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Hit:
    """One search result: a chunk and the document it belongs to."""

    score: float
    text: str
    path: str | None
    title: str | None
    chunk: int  # chunk position within the document (0-based)
    document_id: int
    chunk_id: int
    source: str
    start: int  # character offsets of the chunk in the document text
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_query(query: object, k: int, mode: str) -> None:
    """Refuse an unknown mode, an empty query or k < 1 with a message that says what to send."""
    if mode not in MODES:
        raise InputError(f"Unknown search mode {mode!r}; choose one of {', '.join(MODES)}.")
    if not isinstance(query, str) or not query.strip():
        raise InputError("The query is empty.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an integer of at least 1, got {k!r}.")


def _filter_value(key: str, value: object) -> str | int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise InputError(f"Filter {key!r}: {value} is outside the 64-bit integer range stored values use.")
    if isinstance(value, (str, int, float)):
        return value
    return json.dumps(value)


def filter_sql(filters: dict[str, Any] | None) -> tuple[str, list[Any]]:
    """A SQL condition over ``documents d`` for the filters (``1`` when there are none).

    Each key's values travel as one JSON array (``IN (SELECT value FROM json_each(?))``), so a
    filter may list many values without reaching SQLite's limit on bound variables.
    """
    if not filters:
        return "1", []
    if not isinstance(filters, dict):
        raise InputError("Filters must be an object of key -> value or list of values.")
    clauses, params = [], []
    for key, value in filters.items():
        column = _COLUMNS.get(key)
        if column is None:
            if not re.fullmatch(r"[\w.-]+", key):
                raise InputError(f"Filter key {key!r} may only hold letters, digits, '_', '-' and '.'.")
            column = f"json_extract(d.metadata, '$.\"{key}\"')"
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if not values:
            raise InputError(f"Filter {key!r} has an empty list of values.")
        if len(values) > MAX_FILTER_VALUES:
            raise InputError(
                f"Filter {key!r} lists {len(values)} values; the limit is {MAX_FILTER_VALUES}. "
                "Filter on a coarser key (e.g. a folder glob on path) or split the request."
            )
        values = [_filter_value(key, v) for v in values]
        if key == "path" and any(isinstance(v, str) and "*" in v for v in values):
            clauses.append("(" + " OR ".join(f"{column} GLOB ?" for _ in values) + ")")
            params += values
        else:
            clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(values))
    return " AND ".join(clauses), params


def allowed_ids(conn: sqlite3.Connection, filters: dict[str, Any] | None) -> np.ndarray | None:
    """The chunk ids the filters let through; None when there are no filters."""
    if not filters:
        return None
    where, params = filter_sql(filters)
    rows = conn.execute(
        f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}", params
    )
    return np.fromiter((r[0] for r in rows), dtype=np.int64)


def dense(
    conn: sqlite3.Connection,
    index: VectorIndex,
    vector: np.ndarray,
    k: int,
    filters: dict[str, Any] | None = None,
) -> list[tuple[int, float]]:
    """(chunk id, cosine) best first. Candidates are rescored with the stored float32 vectors."""
    dim = index.spec.dim
    allowed = allowed_ids(conn, filters)
    if allowed is not None and len(allowed) <= EXACT_FILTER_MAX:
        ids, vectors = read_vectors(conn, allowed.tolist(), dim)
        scores, ids = rescore(vector, ids, vectors, k)
        return list(zip(ids.tolist(), scores.tolist(), strict=True))
    factor = RESCORE_FACTOR[index.spec.precision.value]
    _, cand = index.search(vector[None, :], k * factor + 5, allowed=allowed)
    cand = cand[0][cand[0] >= 0]
    # Always rescore from SQLite: exact scores, and ids deleted since the index was built drop out.
    ids, vectors = read_vectors(conn, cand.tolist(), dim)
    scores, ids = rescore(vector, ids, vectors, k)
    return list(zip(ids.tolist(), scores.tolist(), strict=True))


def fts_query(text: str) -> str | None:
    """A safe FTS5 query: every word quoted, OR-ed (BM25 ranks documents with more/rarer words first)."""
    words = _WORD.findall(text)
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words)) if words else None


def keyword(
    conn: sqlite3.Connection, query: str, k: int, filters: dict[str, Any] | None = None
) -> list[tuple[int, float]]:
    """(chunk id, BM25 score, higher is better) via FTS5."""
    match = fts_query(query)
    if match is None:
        return []
    where, params = filter_sql(filters)
    rows = conn.execute(
        f"""SELECT f.rowid, -bm25(chunks_fts) AS score FROM chunks_fts f
            JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id
            WHERE chunks_fts MATCH ? AND {where} ORDER BY bm25(chunks_fts) LIMIT ?""",
        [match, *params, k],
    )
    return [(r[0], float(r[1])) for r in rows]


def rrf(rankings: list[list[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score = sum over rankings of 1 / (RRF_K + rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])[:k]


def hybrid_depth(k: int) -> int:
    """How many results each ranking contributes to the fusion."""
    return max(50, 4 * k)


def hydrate(conn: sqlite3.Connection, scored: list[tuple[int, float]]) -> list[Hit]:
    """Hits for (chunk id, score) pairs, in the same order; ids no longer in the database are dropped."""
    if not scored:
        return []
    ids = [chunk_id for chunk_id, _ in scored]
    rows = conn.execute(
        """SELECT c.id, c.text, d.path, d.title, c.position, d.id, d.source, c.start, c.end, d.metadata
            FROM chunks c JOIN documents d ON d.id = c.document_id
            WHERE c.id IN (SELECT value FROM json_each(?))""",
        [json.dumps(ids)],
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    hits = []
    for chunk_id, score in scored:
        r = by_id.get(chunk_id)
        if r is not None:
            hits.append(
                Hit(float(score), r[1], r[2], r[3], r[4], r[5], r[0], r[6], r[7], r[8], json.loads(r[9]))
            )
    return hits
