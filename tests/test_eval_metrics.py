"""Evaluation metrics and protocols against values worked out by hand on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gemvec.eval.datasets import LabelledData, PairData, RetrievalData
from gemvec.eval.metrics import (
    bitext_scores,
    classification_scores,
    cosine_matrix,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    retrieval_scores,
    sts_scores,
    top_k,
    v_measure,
)
from gemvec.eval.prompts import EvalPrompts
from gemvec.eval.protocols import (
    ClassificationOptions,
    ClusteringOptions,
    evaluate_bitext,
    evaluate_classification,
    evaluate_clustering,
    evaluate_retrieval,
    evaluate_sts,
    sample_train_sets,
)
from gemvec.model.head import truncate_and_normalize

LOG2_3 = math.log2(3)


def test_ndcg_binary_relevance() -> None:
    # relevant at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4); ideal = 1 + 1/log2(3)
    expected = (1 / LOG2_3 + 0.5) / (1 + 1 / LOG2_3)
    assert ndcg_at_k(["d1", "d2", "d3"], {"d2": 1, "d3": 1}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.693426, abs=1e-6)


def test_ndcg_graded_relevance_and_cutoff() -> None:
    # b (rel 1) first, a (rel 2) second: DCG = 1 + 2/log2(3); ideal = 2 + 1/log2(3)
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10) == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
    # the only relevant document falls outside the cutoff
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert ndcg_at_k(["a"], {"a": 1}, 10) == 1.0


def test_recall_and_mrr() -> None:
    ranked, relevant = ["d1", "d2", "d3"], {"d2": 1, "d3": 1}
    assert recall_at_k(ranked, relevant, 1) == 0.0
    assert recall_at_k(ranked, relevant, 2) == 0.5
    assert recall_at_k(ranked, relevant, 10) == 1.0
    assert mrr_at_k(ranked, relevant, 10) == 0.5
    assert mrr_at_k(ranked, relevant, 1) == 0.0


def test_retrieval_scores_average_over_queries() -> None:
    scores = retrieval_scores({"q1": ["a", "b"], "q2": ["b", "a"]}, {"q1": {"a": 1}, "q2": {"a": 1}})
    assert scores["recall_at_1"] == 0.5
    assert scores["mrr_at_10"] == pytest.approx((1 + 0.5) / 2)
    assert scores["ndcg_at_10"] == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert set(scores) == {"ndcg_at_10", "recall_at_1", "recall_at_10", "recall_at_100", "mrr_at_10"}


def test_sts_spearman_and_pearson() -> None:
    scores = sts_scores(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 2.0, 4.0, 10.0]))
    assert scores["cosine_spearman"] == pytest.approx(1.0)  # same order
    # Pearson by hand: deviations x (-1.5, -.5, .5, 1.5), y (-3.25, -2.25, -.25, 5.75)
    assert scores["cosine_pearson"] == pytest.approx(14.5 / math.sqrt(5 * 48.75))
    swapped = sts_scores(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 4.0, 3.0]))
    assert swapped["cosine_spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))  # d = (0, 0, 1, -1)


def test_classification_scores() -> None:
    scores = classification_scores(["a", "a", "a", "b"], ["a", "a", "b", "b"])
    assert scores["accuracy"] == 0.75
    f1_a, f1_b = 0.8, 2 / 3  # a: P 1, R 2/3; b: P 1/2, R 1
    assert scores["f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert scores["f1_weighted"] == pytest.approx((3 * f1_a + f1_b) / 4)


def test_bitext_scores() -> None:
    # sentence 1 is mined wrongly (to 0): label 0 has P 1/2 R 1, label 1 nothing, label 2 perfect
    scores = bitext_scores(np.array([0, 0, 2]))
    assert scores["accuracy"] == pytest.approx(2 / 3)
    assert scores["precision"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_v_measure_by_entropies() -> None:
    def entropy(*p: float) -> float:
        return -sum(x * math.log(x) for x in p if x)

    # gold a a b b, clusters 0 0 0 1
    homogeneity = 1 - (3 / 4 * entropy(2 / 3, 1 / 3)) / entropy(0.5, 0.5)
    completeness = 1 - (1 / 2 * entropy(0.5, 0.5)) / entropy(3 / 4, 1 / 4)
    expected = 2 * homogeneity * completeness / (homogeneity + completeness)
    assert v_measure(["a", "a", "b", "b"], [0, 0, 0, 1]) == pytest.approx(expected)
    assert v_measure(["a", "a", "b", "b"], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_cosine_top_k_and_matryoshka() -> None:
    sims = cosine_matrix(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]))
    assert sims[0] == pytest.approx([1.0, 0.0, math.sqrt(0.5)])
    assert top_k(np.array([[0.5, 0.9, 0.5, 0.1]]), 3).tolist() == [[1, 0, 2]]  # tie: lower index first
    cut = truncate_and_normalize(np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 1.0]]), 2)
    assert cut.dtype == np.float32 and cut == pytest.approx(np.array([[0.6, 0.8], [0.0, 0.0]]))


@pytest.mark.parametrize("dim", [None, 2, 5])
def test_numpy_truncation_is_the_model_heads(dim: int | None) -> None:
    import torch

    rows = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    rows[1] = 0.0
    for normalize in (True, False):
        expected = truncate_and_normalize(torch.from_numpy(rows), dim, normalize).numpy()
        got = truncate_and_normalize(rows, dim, normalize)
        assert isinstance(got, np.ndarray) and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not np.shares_memory(truncate_and_normalize(rows, None, False), rows)


# -- protocols with a fake, deterministic embedding ------------------------------------------


def fake_embed(log: list[str] | None = None):
    """Texts become one-hot vectors of their first letter after the prompt ("| " separated)."""

    def embed(texts: list[str]) -> np.ndarray:
        if log is not None:
            log.extend(texts)
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, text in enumerate(texts):
            body = text.rsplit(": ", 1)[-1]
            out[i, ord(body[0].lower()) - ord("a")] = 1.0
            out[i, (ord(body[-1].lower()) - ord("a")) % 26] += 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


PROMPTS = EvalPrompts.defaults()


def test_sample_train_sets_follow_mteb_sampling() -> None:
    labels = ["a", "a", "a", "b", "b", "b"]
    options = ClassificationOptions(samples_per_label=1, experiments=2, seed=42, sampling="v2")
    first_order = np.random.RandomState(42).permutation(6).tolist()
    expected_first = sorted(
        [next(i for i in first_order if labels[i] == x) for x in "ab"], key=first_order.index
    )
    v2 = sample_train_sets(labels, options)
    assert v2[0] == expected_first
    second_order = [
        first_order[j] for j in np.random.RandomState(42).permutation(6)
    ]  # v2: same shuffle again
    assert v2[1] == sorted(
        [next(i for i in second_order if labels[i] == x) for x in "ab"], key=second_order.index
    )
    v1 = sample_train_sets(labels, ClassificationOptions(samples_per_label=2, experiments=3, sampling="v1"))
    assert v1[0] == [
        i for i in first_order if sum(labels[j] == labels[i] for j in first_order[: first_order.index(i)]) < 2
    ]
    assert all(sorted(labels[i] for i in rows) == ["a", "a", "b", "b"] for rows in v1)


def test_classification_protocol_embeds_only_sampled_rows() -> None:
    train = [f"{x}{i}" for x in "abc" for i in range(10)]
    data = LabelledData(train, [t[0] for t in train], ["a-test", "b-test", "c-test"], ["a", "b", "c"])
    log: list[str] = []
    options = ClassificationOptions(samples_per_label=2, experiments=3)
    metrics = evaluate_classification(data, fake_embed(log), PROMPTS, options)
    assert metrics["accuracy"] == 1.0 and metrics["f1"] == 1.0
    assert len(metrics["accuracy_per_experiment"]) == 3
    embedded_train = [t for t in log if "test" not in t]
    assert len(embedded_train) == metrics["train_texts_embedded"] <= 3 * 2 * 3
    assert all(t.startswith(PROMPTS.classification) for t in log)


def test_clustering_protocol_separable() -> None:
    texts = ["apple", "avocado", "apricot", "banana", "blueberry", "blackberry"]
    data = LabelledData([], [], texts, [t[0] for t in texts])
    metrics = evaluate_clustering(data, fake_embed(), PROMPTS, ClusteringOptions(experiments=3))
    assert metrics["v_measure"] == pytest.approx(1.0)


def test_retrieval_sts_bitext_protocols() -> None:
    data = RetrievalData(
        ["d1", "d2"],
        ["", "Title"],
        ["apple pie", "banana bread"],
        ["q1"],
        ["bake an apple"],
        {"q1": {"d1": 1}},
    )
    log: list[str] = []
    metrics = evaluate_retrieval(data, fake_embed(log), PROMPTS)
    assert metrics["ndcg_at_10"] == 1.0 and metrics["recall_at_1"] == 1.0
    assert PROMPTS.document + "Title banana bread" in log  # MTEB joins title and text
    sts = evaluate_sts(
        PairData(["ax", "ay", "bz"], ["ax", "by", "cw"], np.array([5.0, 2.0, 0.0])), fake_embed(), PROMPTS
    )
    assert sts["cosine_spearman"] == pytest.approx(1.0)
    bitext = evaluate_bitext(
        PairData(["apple", "banana", "cherry"], ["avocado", "berry", "citrus"]), fake_embed(), PROMPTS
    )
    assert bitext["f1"] == 1.0 and bitext["accuracy"] == 1.0
