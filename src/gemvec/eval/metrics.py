"""Evaluation metrics, as MTEB computes them, on plain numpy arrays.

Every function is deterministic and small enough to check by hand (see tests/test_eval_metrics.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, v_measure_score


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``: (len(a), len(b))."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first; ties keep the lower index first."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k]


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains (trec_eval / pytrec_eval ``ndcg_cut``): sum rel / log2(rank + 1)."""
    dcg = sum(relevant.get(doc, 0) / np.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / np.log2(rank + 2) for rank, rel in enumerate(ideal))
    return float(dcg / idcg) if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    if not relevant:
        return 0.0
    return sum(1 for doc in ranked[:k] if relevant.get(doc, 0) > 0) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document within the top k, else 0."""
    for rank, doc in enumerate(ranked[:k], 1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


RETRIEVAL_CUTOFFS = {"ndcg_at": (10,), "recall_at": (1, 10, 100), "mrr_at": (10,)}
_RETRIEVAL_FUNCTIONS = {"ndcg_at": ndcg_at_k, "recall_at": recall_at_k, "mrr_at": mrr_at_k}


def retrieval_scores(
    rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """Mean over queries of nDCG@10, recall@1/10/100 and MRR@10, keyed as MTEB (``ndcg_at_10``...)."""
    totals: dict[str, float] = {}
    for query, ranked in rankings.items():
        for name, cutoffs in RETRIEVAL_CUTOFFS.items():
            for k in cutoffs:
                key = f"{name}_{k}"
                totals[key] = totals.get(key, 0.0) + _RETRIEVAL_FUNCTIONS[name](ranked, qrels[query], k)
    return {key: value / len(rankings) for key, value in totals.items()}


def sts_scores(similarities: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman (MTEB's main score) and Pearson correlation of cosine similarities with gold scores."""
    return {
        "cosine_spearman": float(spearmanr(similarities, gold).statistic),
        "cosine_pearson": float(pearsonr(similarities, gold).statistic),
    }


def classification_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 (``f1``) and weighted F1, as MTEB's classification tasks record them."""
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(gold, predicted, average="weighted", zero_division=0)),
    }


def bitext_scores(nearest: np.ndarray) -> dict[str, float]:
    """Mining scores when sentence i's gold translation is i: MTEB's weighted precision/recall/F1."""
    gold = np.arange(len(nearest))
    return {
        "f1": float(f1_score(gold, nearest, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(gold, nearest)),
        "precision": float(precision_score(gold, nearest, average="weighted", zero_division=0)),
        "recall": float(recall_score(gold, nearest, average="weighted", zero_division=0)),
    }


def v_measure(gold: Sequence[str], clusters: Sequence[int]) -> float:
    """Harmonic mean of homogeneity and completeness (sklearn's ``v_measure_score``)."""
    return float(v_measure_score(gold, clusters))
