"""The FAISS side of a collection: one index over chunk ids, in the precision chosen at creation.

SQLite keeps every chunk's float32 vector; this index is a derived, rebuildable cache used
for speed. Quantised precisions (int8, binary) return *candidates* whose scores are
approximate; :func:`rescore` ranks them again with the exact float32 vectors.

Kinds: ``flat`` (exact scan) for small collections, ``hnsw`` past :data:`ANN_THRESHOLD`, ``ivf``
(lists on disk, :mod:`gemvec.store.ivf_layers`) once an HNSW graph would hold more than
:data:`HNSW_RAM_LIMIT` of vectors in RAM, or when the collection asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import faiss
import numpy as np

from gemvec.errors import InputError
from gemvec.store import ivf
from gemvec.store.ivf_layers import LayeredIvf

ANN_THRESHOLD = 50_000  # vectors; above this an HNSW graph replaces the exact scan
# "auto" moves to an IVF index on disk past this many bytes of vectors in an HNSW graph (RAM): 5.2M
# chunks at 256 dims in float32, 1.7M at 768, 21M in int8 at 256 (BENCHMARKS.md, "IVF on disk")
HNSW_RAM_LIMIT = 5 * 2**30
INDEX_CHOICES = ("auto", "flat", "hnsw", "ivf")  # or an IVF factory string such as "IVF4096,PQ32"
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


def parse_index_choice(value: str | None, dim: int, precision: VectorPrecision) -> str:
    """A collection's index setting: one of :data:`INDEX_CHOICES` or an IVF factory string (checked)."""
    choice = "auto" if value is None else str(value).strip()
    if choice.lower() in INDEX_CHOICES:
        choice = choice.lower()
    else:
        ivf.new_ivf(dim, choice)  # an InputError saying what is wrong with it
    if precision is VectorPrecision.BINARY and choice not in ("auto", "flat", "hnsw"):
        raise InputError("An IVF index quantises float vectors; binary vectors are indexed 'flat' or 'hnsw'.")
    return choice


@dataclass(frozen=True)
class IndexSpec:
    dim: int
    precision: VectorPrecision = VectorPrecision.FLOAT32
    kind: str = "flat"  # "flat", "hnsw" or "ivf"
    choice: str = "auto"  # the collection's setting (parse_index_choice)
    factory: str = ""  # kind "ivf": the FAISS factory string
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nprobe: int = 0  # kind "ivf": lists searched per query; 0 = ivf.default_nprobe

    def for_size(self, n: int) -> IndexSpec:
        """The same spec with the kind (and IVF factory) chosen for a collection of ``n`` vectors."""
        explicit = self.choice not in INDEX_CHOICES  # a factory string
        if self.choice in ("flat", "hnsw"):
            kind = self.choice
        elif self.choice == "auto":
            per_vector = {VectorPrecision.FLOAT32: 4 * self.dim, VectorPrecision.INT8: self.dim}
            large = n * per_vector.get(self.precision, 0) > HNSW_RAM_LIMIT  # binary: never
            kind = "ivf" if large else "hnsw" if n > ANN_THRESHOLD else "flat"
        else:  # IVF: an exact scan until there are enough vectors to train its lists
            nlist = ivf.factory_nlist(self.choice) if explicit else ivf.choose_nlist(n)
            kind = "ivf" if n >= ivf.MIN_TRAIN_PER_LIST * nlist else "flat"
        factory = (self.choice if explicit else ivf.auto_factory(n)) if kind == "ivf" else ""
        return replace(self, kind=kind, factory=factory)


def _new_faiss_index(spec: IndexSpec):
    if spec.kind == "ivf":
        raise ValueError("An IVF index is trained on its vectors: use VectorIndex.build.")
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
        """A fresh index of the right kind for ``len(ids)`` vectors, trained on them if needed.

        An IVF index built here keeps its lists in RAM until it is saved (:mod:`persist`).
        """
        spec = spec.for_size(len(ids))
        if spec.kind == "ivf":
            rows = np.random.default_rng(0).permutation(len(ids))[: ivf.train_size(spec.factory)]
            trained = ivf.train_ivf(vectors[np.sort(rows)], spec.dim, spec.factory)
            return cls(spec, LayeredIvf.in_ram(trained, ids, vectors), trained_on=len(ids))
        out = cls.empty(spec)
        out.add(ids, vectors)
        return out

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def rescore_factor(self) -> int:
        """Candidates to fetch per result: the approximate scores are rescored with float32 vectors."""
        if self.spec.kind == "ivf":
            return ivf.rescore_factor(self.spec.factory)
        return RESCORE_FACTOR[self.spec.precision.value]

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
        """True when the kind should change for ``total`` vectors, or the int8 ranges or IVF lists
        (sized for the collection they were trained on) are stale."""
        if self.spec.for_size(total).kind != self.spec.kind:
            return True
        if self.spec.kind == "ivf":
            sized_for_total = self.spec.choice in ("auto", "ivf")
            return sized_for_total and total > INT8_RETRAIN_GROWTH * max(self.trained_on, 1)
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
        if self.spec.kind == "ivf":
            return self.index.search(codes, k, self.spec.nprobe or None, allowed)
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
        """The index serialised; for IVF, the header of its base (the lists are in its data file)."""
        if self.spec.kind == "ivf":
            return self.index.header()
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
