"""Clustering: choosing k, HDBSCAN, keywords in any script, representative texts, maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gemvec import Embedder
from gemvec.errors import InputError
from gemvec.tasks.cluster import NOISE, agreement, choose_k, cluster_texts, cluster_vectors
from gemvec.tasks.keywords import class_tfidf, terms
from gemvec.tasks.plots import confusion_png, map_html, map_png, project_2d

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blobs(
    sizes: list[int], dim: int = 24, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes, strict=True)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [f"g{i}" for i, n in enumerate(sizes) for _ in range(n)]


def test_auto_k_recovers_separated_groups() -> None:
    x, gold = blobs([12, 20, 8])
    texts = [f"text {i}" for i in range(len(x))]
    result = cluster_vectors(x, texts, labels=gold, k_range=(2, 8))
    assert result.k == 3 and set(result.k_scores) == set(range(2, 9))
    assert result.v_measure == pytest.approx(1.0) and result.ari == pytest.approx(1.0)
    assert [c.size for c in result.clusters] == [20, 12, 8]  # numbered by size
    assert result.silhouette is not None and result.silhouette > 0.5
    for cluster in result.clusters:
        members = {texts[i] for i in np.flatnonzero(result.assignments == cluster.id)}
        assert len(cluster.examples) == 3 and set(cluster.examples) <= members
    summary = result.to_dict()
    assert summary["k"] == 3 and summary["v_measure"] == pytest.approx(1.0) and "noise" not in summary


def test_given_k_and_hdbscan() -> None:
    x, gold = blobs([15, 15, 15, 15])
    texts = [str(i) for i in range(len(x))]
    assert cluster_vectors(x, texts, k=2).k == 2
    found = cluster_vectors(x, texts, labels=gold, method="hdbscan", min_cluster_size=5)
    assert found.method == "hdbscan" and found.k == 4 and found.v_measure == pytest.approx(1.0)
    assert found.to_dict()["noise"] == found.noise == int((found.assignments == NOISE).sum())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 50}, "k must be between"),
        ({"method": "hdbscan", "k": 3}, "do not pass k"),
        ({"method": "spectral"}, "Unknown clustering method"),
        ({"k_range": (1, 4)}, "Cannot choose k"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    x, _ = blobs([5, 5])
    with pytest.raises(InputError, match=message):
        cluster_vectors(x, [str(i) for i in range(10)], **kwargs)


def test_choose_k_refuses_identical_texts() -> None:
    with pytest.raises(InputError, match="duplicates"):
        choose_k(np.ones((6, 4), np.float32), 2, 4)


def test_agreement_counts_noise_as_a_group() -> None:
    v, ari = agreement(["a", "a", "b", "b"], np.array([0, 0, NOISE, NOISE]))
    assert v == pytest.approx(1.0) and ari == pytest.approx(1.0)


def test_terms_without_whitespace() -> None:
    assert terms("The Quick brown fox, don't 2024!") == ["quick", "brown", "fox", "don"]
    assert terms("足球比赛") == ["足球", "球比", "比赛"]
    assert terms("東京オリンピックは開催されました") == ["東京", "オリンピック", "開催"]
    assert terms("สวัสดี")[:2] == ["สวั", "วัส"]
    assert terms("대한민국 대통령") == ["대한민국", "대통령"]
    assert terms("प्रधानमंत्री ने कहा") == ["प्रधानमंत्री", "ने", "कहा"]  # vowel signs stay in the word


def test_class_tfidf_in_chinese_and_english() -> None:
    chinese = [
        ["足球比赛很精彩", "他们在足球场上", "足球队赢了"],
        ["总统选举开始了", "选举结果公布", "选民参加选举"],
    ]
    keywords = class_tfidf(chinese, top=2)
    assert keywords[0][0] == "足球" and keywords[1][0] == "选举"
    english = [["the match and the goal", "a late goal"], ["the vote count", "a vote for the bill"]]
    assert class_tfidf(english, top=1) == [["goal"], ["vote"]]


def test_maps_and_confusion_png(tmp_path: Path) -> None:
    x, _ = blobs([10, 10])
    clusters = np.array([0] * 10 + [1] * 9 + [NOISE])
    points = project_2d(x, "tsne")
    assert points.shape == (20, 2) and project_2d(x, "pca").shape == (20, 2)
    texts = [f"<b>text {i}</b> & more" for i in range(20)]
    page = map_html(points, clusters, texts, tmp_path / "map.html", names={0: "zero <x>"}).read_text()
    assert page.count("<circle") == 20 and "&lt;b&gt;text 3&lt;/b&gt; &amp; more" in page
    assert "zero &lt;x&gt;" in page and "noise (1)" in page
    assert "http" not in page.replace("http://www.w3.org", "")  # self-contained: nothing fetched
    assert map_png(points, clusters, tmp_path / "map.png").read_bytes().startswith(PNG_MAGIC)
    confusion = np.array([[3, 1], [0, 4]])
    assert confusion_png(confusion, ["a", "b"], tmp_path / "cm.png").read_bytes().startswith(PNG_MAGIC)


def test_cluster_texts_on_tiny_model(tiny_embedder: Embedder) -> None:
    texts = ["fox", "the fox", "a fox", "Mars", "red Mars", "Mars planet"]
    result, vectors = cluster_texts(tiny_embedder, texts, k=2, labels=["a"] * 3 + ["b"] * 3)
    assert vectors.shape == (6, tiny_embedder.dim) and result.k == 2
    assert sum(c.size for c in result.clusters) == 6 and result.v_measure is not None


@pytest.mark.real_model
def test_real_model_separates_topics(real_embedder: Embedder) -> None:
    texts = [
        "The striker scored twice in the cup final.",
        "Der Torwart hielt den Elfmeter in der Nachspielzeit.",
        "球队在决赛中点球获胜。",
        "Preheat the oven and whisk the eggs with sugar.",
        "Faites mijoter la sauce tomate avec l'ail.",
        "鍋に水を入れてパスタを茹でます。",
    ]
    result, _ = cluster_texts(real_embedder, texts, k=2, dim=256, labels=["sport"] * 3 + ["food"] * 3)
    assert result.v_measure == pytest.approx(1.0)
