"""MTEB's evaluation protocols, one function per task type.

Each protocol receives the data, an ``embed`` function (prompted texts -> L2-normalised float32
rows at the requested dimension) and the prompts, and returns a flat dict of metrics whose
keys follow MTEB's result files. Protocols embed only the texts they use.
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from gemvec.eval.datasets import LabelledData, PairData, RetrievalData
from gemvec.eval.metrics import (
    bitext_scores,
    classification_scores,
    retrieval_scores,
    sts_scores,
    top_k,
    v_measure,
)
from gemvec.eval.prompts import EvalPrompts

Embed = Callable[[list[str]], np.ndarray]
Metrics = dict[str, float | int | list[float]]
Sampling = Literal["v1", "v2"]

RETRIEVAL_DEPTH = 100
QUERY_CHUNK = 256


def evaluate_retrieval(data: RetrievalData, embed: Embed, prompts: EvalPrompts) -> Metrics:
    """Rank the whole corpus by cosine for each query; nDCG@10 (main), recall@1/10/100, MRR@10."""
    queries = embed([prompts.query + text for text in data.query_texts])
    docs = embed(prompts.documents(data.doc_titles, data.doc_texts))
    rankings: dict[str, list[str]] = {}
    for start in range(0, len(queries), QUERY_CHUNK):
        best = top_k(queries[start : start + QUERY_CHUNK] @ docs.T, RETRIEVAL_DEPTH)
        for offset, row in enumerate(best):
            rankings[data.query_ids[start + offset]] = [data.doc_ids[j] for j in row]
    return retrieval_scores(rankings, data.qrels) | {"queries": len(queries), "documents": len(docs)}


def evaluate_sts(data: PairData, embed: Embed, prompts: EvalPrompts) -> Metrics:
    """Cosine similarity of each pair against the gold score: Spearman (main) and Pearson."""
    if data.scores is None:
        raise ValueError("STS data needs gold scores")
    first = embed([prompts.sts + s for s in data.sentences1])
    second = embed([prompts.sts + s for s in data.sentences2])
    return sts_scores(np.sum(first * second, axis=1), data.scores) | {"pairs": len(first)}


def evaluate_bitext(data: PairData, embed: Embed, prompts: EvalPrompts) -> Metrics:
    """For each sentence1, its nearest sentence2 by cosine must be its translation: F1 (main), accuracy."""
    first = embed([prompts.bitext + s for s in data.sentences1])
    second = embed([prompts.bitext + s for s in data.sentences2])
    nearest = np.concatenate(
        [top_k(first[i : i + QUERY_CHUNK] @ second.T, 1)[:, 0] for i in range(0, len(first), QUERY_CHUNK)]
    )
    return bitext_scores(nearest) | {"pairs": len(first)}


@dataclass(frozen=True)
class ClassificationOptions:
    samples_per_label: int = 8
    experiments: int = 10
    seed: int = 42
    sampling: Sampling = "v2"  # how MTEB re-shuffles between experiments (v1: mteb 1.x, v2: mteb 2.x)
    max_iter: int = 100


def sample_train_sets(labels: Sequence[str], options: ClassificationOptions) -> list[list[int]]:
    """The train rows of each experiment: walk a seeded permutation, keep the first k per label.

    MTEB 2.x re-shuffles the previous permutation with a fresh ``RandomState(seed)`` every
    experiment; MTEB 1.x shuffles it again with the global NumPy generator seeded once.
    """
    order: list[int] | np.ndarray
    if options.sampling == "v1":
        generator = np.random.RandomState(options.seed)
        order = np.arange(len(labels))
    else:
        order = list(range(len(labels)))
    chosen: list[list[int]] = []
    for _ in range(options.experiments):
        if options.sampling == "v1":
            generator.shuffle(order)
        else:
            np.random.RandomState(options.seed).shuffle(order)
        counts: dict[str, int] = defaultdict(int)
        picked = []
        for i in order:
            if counts[labels[i]] < options.samples_per_label:
                picked.append(int(i))
                counts[labels[i]] += 1
        chosen.append(picked)
    return chosen


def evaluate_classification(
    data: LabelledData, embed: Embed, prompts: EvalPrompts, options: ClassificationOptions
) -> Metrics:
    """MTEB few-shot protocol: per experiment, fit LogisticRegression on the sampled train rows and
    predict the whole test split; report the mean over experiments (accuracy is the main score)."""
    train_sets = sample_train_sets(data.train_labels, options)
    used = sorted({i for rows in train_sets for i in rows})
    position = {row: n for n, row in enumerate(used)}
    train_vectors = embed([prompts.classification + data.train_texts[i] for i in used])
    test_vectors = embed([prompts.classification + text for text in data.test_texts])
    per_experiment = []
    for rows in train_sets:
        classifier = LogisticRegression(max_iter=options.max_iter, random_state=options.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(train_vectors[[position[i] for i in rows]], [data.train_labels[i] for i in rows])
        per_experiment.append(classification_scores(data.test_labels, list(classifier.predict(test_vectors))))
    metrics: Metrics = {key: float(np.mean([s[key] for s in per_experiment])) for key in per_experiment[0]}
    accuracies = [s["accuracy"] for s in per_experiment]
    return metrics | {
        "accuracy_std": float(np.std(accuracies)),
        "accuracy_per_experiment": accuracies,
        "train_texts_embedded": len(used),
        "test_texts": len(test_vectors),
    }


@dataclass(frozen=True)
class ClusteringOptions:
    experiments: int = 10
    max_documents_per_sample: int = 16_384
    seed: int = 42
    kmeans_batch_size: int = 512


def evaluate_clustering(
    data: LabelledData, embed: Embed, prompts: EvalPrompts, options: ClusteringOptions
) -> Metrics:
    """MTEB's clustering protocol on the test split: per experiment, draw a bootstrap sample (with
    replacement, at most ``max_documents_per_sample``), run MiniBatchKMeans with k = the number of
    labels, score V-measure; report the mean (main) and standard deviation."""
    vectors = embed([prompts.clustering + text for text in data.test_texts])
    labels = np.array(data.test_labels)
    n_labels = len(set(data.test_labels))
    rng = random.Random(options.seed)
    size = min(len(labels), options.max_documents_per_sample)
    scores = []
    for _ in range(options.experiments):
        sample = rng.choices(range(len(labels)), k=size)
        model = MiniBatchKMeans(
            n_clusters=n_labels,
            batch_size=options.kmeans_batch_size,
            init="k-means++",
            n_init=1,
            random_state=options.seed,
        )
        scores.append(v_measure(labels[sample], model.fit_predict(vectors[sample])))
    return {"v_measure": float(np.mean(scores)), "v_measure_std": float(np.std(scores)), "texts": len(labels)}
