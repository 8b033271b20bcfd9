"""The FAISS side of a collection: one index over chunk ids, in the precision chosen at creation.

SQLite keeps every chunk's float32 vector; this index is a derived, rebuildable cache used
for speed. Quantised precisions (int8, binary) return *candidates* whose scores are
approximate; :func:`rescore` ranks them again with the exact float32 vectors.

Kinds: ``flat`` (exact scan) for small collections, ``hnsw`` past :data:`ANN_THRESHOLD`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import faiss
import numpy as np

from gemvec.errors import InputError

ANN_THRESHOLD = 50_000  # vectors; above this an HNSW graph replaces the exact scan
INT8_RETRAIN_GROWTH = 4  # retrain the int8 quantiser when the collection grows this much
RESCORE_FACTOR = {"float32": 1, "int8": 4, "binary": 10}  # candidates fetched per result


class VectorPrecision(str, Enum):
    """How vectors are stored in the FAISS index (SQLite always keeps float32)."""

    FLOAT32 = "float32"
    INT8 = "int8"  # per-dimension scalar quantisation, rescored with float32
    BINARY = "binary"  # one sign bit per dimension (Hamming), rescored with float32


def parse_vector_precision(value: str | VectorPrecision | None) -> VectorPrecision:
    if value is None:
        return VectorPrecision.FLOAT32
    try:
        return VectorPrecision(str(getattr(value, "value", value)).lower())
    except ValueError:
        choices = ", ".join(p.value for p in VectorPrecision)
        raise InputError(f"Unknown vector precision {value!r}; choose one of {choices}.") from None


@dataclass(frozen=True)
class IndexSpec:
    dim: int
    precision: VectorPrecision = VectorPrecision.FLOAT32
    kind: str = "flat"  # "flat" or "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128

    def for_size(self, n: int) -> IndexSpec:
        """The same spec with the kind chosen for a collection of ``n`` vectors."""
        return replace(self, kind="hnsw" if n > ANN_THRESHOLD else "flat")


def _new_faiss_index(spec: IndexSpec):
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.precision is VectorPrecision.BINARY:
        if spec.dim % 8:
            raise InputError(f"Binary vectors need a dim divisible by 8, got {spec.dim}.")
        inner = (
            faiss.IndexBinaryHNSW(spec.dim, spec.hnsw_m)
            if spec.kind == "hnsw"
            else faiss.IndexBinaryFlat(spec.dim)
        )
        if spec.kind == "hnsw":
            inner.hnsw.efConstruction = spec.ef_construction
        return faiss.IndexBinaryIDMap2(inner)
    if spec.precision is VectorPrecision.INT8:
        qt = faiss.ScalarQuantizer.QT_8bit
        if spec.kind == "hnsw":
            inner = faiss.IndexHNSWSQ(spec.dim, qt, spec.hnsw_m, ip)
            faiss.downcast_index(inner.storage).sq.rangestat_arg = 0.2
        else:
            inner = faiss.IndexScalarQuantizer(spec.dim, qt, ip)
            inner.sq.rangestat_arg = 0.2  # widen the trained min/max by 20% for later additions
    else:
        inner = (
            faiss.IndexHNSWFlat(spec.dim, spec.hnsw_m, ip)
            if spec.kind == "hnsw"
            else faiss.IndexFlatIP(spec.dim)
        )
    if spec.kind == "hnsw":
        inner.hnsw.efConstruction = spec.ef_construction
    return faiss.IndexIDMap2(inner)


def _codes(spec: IndexSpec, vectors: np.ndarray) -> np.ndarray:
    """What the FAISS index stores: float32 rows, or packed sign bits for binary."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if spec.precision is VectorPrecision.BINARY:
        return np.packbits(vectors > 0, axis=1)
    return vectors


class VectorIndex:
    """A FAISS index keyed by chunk id. Build with :meth:`build`; persist with :meth:`to_bytes`."""

    def __init__(self, spec: IndexSpec, index, trained_on: int = 0) -> None:
        self.spec = spec
        self.index = index
        self.trained_on = trained_on  # vectors the int8 quantiser was trained on

    @classmethod
    def empty(cls, spec: IndexSpec) -> VectorIndex:
        """An empty index of ``spec.kind``; int8 trains on the first vectors added."""
        return cls(spec, _new_faiss_index(spec))

    @classmethod
    def build(cls, spec: IndexSpec, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """A fresh index of the right kind for ``len(ids)`` vectors, trained on them if needed."""
        out = cls.empty(spec.for_size(len(ids)))
        out.add(ids, vectors)
        return out

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if not self.index.is_trained:
            self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))
            self.trained_on = len(ids)
        self.index.add_with_ids(_codes(self.spec, vectors), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids in place; False when this kind cannot (HNSW), so the caller rebuilds."""
        if self.spec.kind == "hnsw":
            return False
        self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        return True

    def needs_rebuild(self, total: int) -> bool:
        """True when the kind should change for ``total`` vectors or the int8 ranges are stale."""
        if self.spec.for_size(total).kind != self.spec.kind:
            return True
        return (
            self.spec.precision is VectorPrecision.INT8
            and self.trained_on < ANN_THRESHOLD
            and total > INT8_RETRAIN_GROWTH * max(self.trained_on, 1)
        )

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query; ids are -1 where fewer exist. ``allowed`` restricts ids.

        Scores are inner products (float32/int8) or ``1 - 2 * hamming / dim`` (binary).
        """
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            n = len(queries)
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        codes = _codes(self.spec, queries)
        if self.spec.precision is VectorPrecision.BINARY:
            return self._search_binary(codes, k, allowed, ef_search)
        params = None
        if self.spec.kind == "hnsw" or allowed is not None:
            params = faiss.SearchParametersHNSW() if self.spec.kind == "hnsw" else faiss.SearchParameters()
            if self.spec.kind == "hnsw":
                params.efSearch = ef_search or max(self.spec.ef_search, k)
            if allowed is not None:
                selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
                params.sel = selector
                params._selector = selector  # keep the selector alive as long as the params
        return self.index.search(codes, k, params=params) if params else self.index.search(codes, k)

    def _search_binary(
        self, codes: np.ndarray, k: int, allowed: np.ndarray | None, ef_search: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Binary indexes take no search parameters: set efSearch directly, filter by over-fetching."""
        if self.spec.kind == "hnsw":
            faiss.downcast_IndexBinary(self.index.index).hnsw.efSearch = ef_search or max(
                self.spec.ef_search, k
            )
        fetch = k
        if allowed is not None:  # over-fetch in proportion to how much the filter rejects
            fetch = min(self.ntotal, k * 20 * max(1, self.ntotal // max(len(allowed), 1)))
        distances, ids = self.index.search(codes, fetch)
        scores = 1.0 - 2.0 * distances.astype(np.float32) / self.spec.dim
        if allowed is not None:
            keep = np.isin(ids, allowed) & (ids >= 0)
            scores, ids = np.where(keep, scores, -np.inf), np.where(keep, ids, -1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        scores[ids < 0] = -np.inf
        return scores, ids

    def to_bytes(self) -> bytes:
        if self.spec.precision is VectorPrecision.BINARY:
            return faiss.serialize_index_binary(self.index).tobytes()
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, spec: IndexSpec, data: bytes, trained_on: int) -> VectorIndex:
        array = np.frombuffer(data, dtype=np.uint8)
        if spec.precision is VectorPrecision.BINARY:
            return cls(spec, faiss.deserialize_index_binary(array), trained_on)
        return cls(spec, faiss.deserialize_index(array), trained_on)


def rescore(query: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of one query with candidate ``vectors``; the best ``k`` (scores, ids)."""
    if len(ids) == 0:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    scores = vectors @ query.astype(np.float32)
    finite = np.flatnonzero(np.isfinite(scores))  # a NaN must not sort above (or hide) a real hit
    order = finite[np.argsort(-scores[finite], kind="stable")[:k]]
    return scores[order], np.asarray(ids)[order]
