"""Group texts by meaning: k-means (k given or chosen by silhouette) or HDBSCAN on EmbeddingGemma vectors.

Each cluster comes with its size, keywords (class-based TF-IDF, see :mod:`gemvec.tasks.keywords`)
and its most representative texts (closest to the cluster's mean direction). With gold labels
the result also carries V-measure and the adjusted Rand index.

Typical use::

    result = cluster_texts(embedder, texts)           # k chosen automatically
    for c in result.clusters: print(c.size, c.keywords, c.examples[0])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gemvec.errors import InputError
from gemvec.prompts import Task
from gemvec.tasks.keywords import class_tfidf

if TYPE_CHECKING:
    from gemvec.embedder import Embedder

Method = Literal["kmeans", "hdbscan"]
NOISE = -1  # HDBSCAN's label for texts in no cluster
SILHOUETTE_SAMPLE = 4000  # silhouette is O(n^2): score a fixed random sample beyond this


@dataclass(frozen=True)
class Cluster:
    id: int
    size: int
    keywords: list[str]
    examples: list[str]  # most representative texts, best first
    example_ids: list[str]


@dataclass
class Clustering:
    """Assignments (``NOISE`` = -1 for HDBSCAN outliers), clusters, and how they were found."""

    assignments: np.ndarray  # (N,) int
    clusters: list[Cluster]
    method: Method
    k: int
    silhouette: float | None  # cosine silhouette of the final assignment (noise excluded)
    k_scores: dict[int, float] = field(default_factory=dict)  # silhouette per candidate k (auto k only)
    noise: int = 0
    v_measure: float | None = None
    ari: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "k": self.k,
            "silhouette": self.silhouette,
            "clusters": [
                {"id": c.id, "size": c.size, "keywords": c.keywords, "examples": c.examples}
                for c in self.clusters
            ],
        }
        if self.k_scores:
            out["k_scores"] = {str(k): v for k, v in self.k_scores.items()}
        if self.method == "hdbscan":
            out["noise"] = self.noise
        if self.v_measure is not None:
            out["v_measure"] = self.v_measure
            out["ari"] = self.ari
        return out


def kmeans(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(vectors):
        raise InputError(f"k must be between 1 and the number of texts ({len(vectors)}); got {k}.")
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors).astype(np.int64)


def hdbscan(vectors: np.ndarray, min_cluster_size: int = 5) -> np.ndarray:
    """scikit-learn's HDBSCAN (Euclidean on unit vectors, i.e. monotone in cosine distance)."""
    from sklearn.cluster import HDBSCAN

    if min_cluster_size < 2:
        raise InputError(f"min_cluster_size must be at least 2; got {min_cluster_size}.")
    return HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(vectors).astype(np.int64)


def silhouette(vectors: np.ndarray, assignments: np.ndarray, seed: int = 0) -> float | None:
    """Cosine silhouette over non-noise texts; None when it is undefined (one cluster, or all noise)."""
    from sklearn.metrics import silhouette_score

    keep = assignments != NOISE
    found = len(set(assignments[keep].tolist()))
    if found < 2 or found >= keep.sum():
        return None
    sample = SILHOUETTE_SAMPLE if keep.sum() > SILHOUETTE_SAMPLE else None
    return float(
        silhouette_score(
            vectors[keep], assignments[keep], metric="cosine", sample_size=sample, random_state=seed
        )
    )


def choose_k(
    vectors: np.ndarray, k_min: int = 2, k_max: int = 15, seed: int = 0
) -> tuple[int, dict[int, float]]:
    """The k in [k_min, k_max] whose k-means clustering has the highest cosine silhouette."""
    k_max = min(k_max, len(vectors) - 1)
    if k_min < 2 or k_max < k_min:
        raise InputError(
            f"Cannot choose k from {k_min}..{k_max} for {len(vectors)} texts; pass k explicitly "
            "(automatic k needs at least 3 texts and k_min >= 2)."
        )
    from sklearn.exceptions import ConvergenceWarning

    scores: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        with warnings.catch_warnings():  # fewer distinct points than k: scored as undefined below
            warnings.simplefilter("ignore", ConvergenceWarning)
            score = silhouette(vectors, kmeans(vectors, k, seed), seed)
        if score is not None:
            scores[k] = round(score, 6)
    if not scores:
        raise InputError("No k in the range gave distinct clusters; the texts may be (near) duplicates.")
    return max(scores, key=lambda k: (scores[k], -k)), scores


def cluster_vectors(
    vectors: np.ndarray,
    texts: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    method: Method = "kmeans",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 15),
    min_cluster_size: int = 5,
    keywords: int = 8,
    examples: int = 3,
    seed: int = 0,
) -> Clustering:
    """Cluster precomputed (L2-normalised) vectors of ``texts`` and describe each cluster."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) != len(texts):
        raise InputError(f"Got {len(vectors)} vectors for {len(texts)} texts.")
    if len(texts) < 2:
        raise InputError("Clustering needs at least two texts.")
    k_scores: dict[int, float] = {}
    if method == "hdbscan":
        if k is not None:
            raise InputError("HDBSCAN finds the number of clusters itself; do not pass k with it.")
        assignments = hdbscan(vectors, min_cluster_size)
    elif method == "kmeans":
        if k is None:
            k, k_scores = choose_k(vectors, *k_range, seed=seed)
        assignments = kmeans(vectors, k, seed)
    else:
        raise InputError(f"Unknown clustering method {method!r}; use 'kmeans' or 'hdbscan'.")
    assignments = _renumber_by_size(assignments)
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(texts))]
    result = Clustering(
        assignments=assignments,
        clusters=describe_clusters(vectors, texts, ids, assignments, keywords, examples),
        method=method,
        k=len(set(assignments.tolist()) - {NOISE}),
        silhouette=silhouette(vectors, assignments, seed),
        k_scores=k_scores,
        noise=int((assignments == NOISE).sum()),
    )
    if labels is not None:
        result.v_measure, result.ari = agreement(labels, assignments)
    return result


def cluster_texts(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    dim: int | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
    **options: Any,
) -> tuple[Clustering, np.ndarray]:
    """Embed ``texts`` with the clustering prompt, then :func:`cluster_vectors`; returns the vectors too."""
    vectors = embedder.encode(
        list(texts), task=Task.CLUSTERING, dim=dim, batch_size=batch_size, show_progress=show_progress
    )
    return cluster_vectors(vectors, texts, **options), vectors


def describe_clusters(
    vectors: np.ndarray,
    texts: Sequence[str],
    ids: Sequence[str],
    assignments: np.ndarray,
    keywords: int = 8,
    examples: int = 3,
) -> list[Cluster]:
    """Size, c-TF-IDF keywords and the texts nearest each cluster's mean direction (noise excluded)."""
    cluster_ids = sorted(set(assignments.tolist()) - {NOISE})
    members = [np.flatnonzero(assignments == c) for c in cluster_ids]
    words = class_tfidf([[texts[i] for i in rows] for rows in members], top=keywords)
    clusters = []
    for cluster_id, rows, terms in zip(cluster_ids, members, words, strict=True):
        centre = vectors[rows].mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        best = rows[np.argsort(-(vectors[rows] @ centre), kind="stable")[:examples]]
        clusters.append(
            Cluster(int(cluster_id), len(rows), terms, [texts[i] for i in best], [ids[i] for i in best])
        )
    return clusters


def agreement(labels: Sequence[str], assignments: np.ndarray) -> tuple[float, float]:
    """V-measure and adjusted Rand index against gold labels (noise counts as one more cluster)."""
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    if len(labels) != len(assignments):
        raise InputError(f"Got {len(labels)} labels for {len(assignments)} texts.")
    gold = [str(label) for label in labels]
    return float(v_measure_score(gold, assignments)), float(adjusted_rand_score(gold, assignments))


def _renumber_by_size(assignments: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest, then 1, ...; ties by first appearance; noise stays -1."""
    found = [c for c in dict.fromkeys(assignments.tolist()) if c != NOISE]
    sizes = {c: int((assignments == c).sum()) for c in found}
    order = sorted(found, key=lambda c: -sizes[c])  # stable: first appearance breaks ties
    mapping = {old: new for new, old in enumerate(order)} | {NOISE: NOISE}
    return np.array([mapping[c] for c in assignments.tolist()], dtype=np.int64)
