"""Classifiers: exact parity with scikit-learn, safe save/load, settings checks, zero-shot, metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from gemvec import Embedder
from gemvec.errors import InputError
from gemvec.model.fingerprint import legacy_eval_fingerprint
from gemvec.tasks.classify import (
    Classifier,
    EmbeddingSettings,
    cross_validate,
    evaluate,
    fit_logistic,
    score_predictions,
    train,
    zero_shot,
)

SETTINGS = EmbeddingSettings(model="m", fingerprint=None, precision="float32", dim=16, task="classification")


def blobs(n_per: int, n_classes: int, dim: int = 16, spread: float = 0.3, seed: int = 0):
    """Unit vectors around random centres; labels 'c0', 'c1', ..."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, [f"c{i}" for i in range(n_classes) for _ in range(n_per)]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_probabilities_match_sklearn(n_classes: int) -> None:
    x, y = blobs(20, n_classes, spread=1.5)  # overlapping, so probabilities are not all ~1
    ours = fit_logistic(x, y, SETTINGS)
    reference = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(x, y)
    assert ours.classes == list(reference.classes_)
    np.testing.assert_allclose(ours.predict_proba(x), reference.predict_proba(x), atol=1e-5)
    assert ours.predict(x) == list(reference.predict(x))


def test_save_load_roundtrip_without_pickle(tmp_path: Path) -> None:
    x, y = blobs(10, 3)
    model = fit_logistic(x, y, SETTINGS)
    path = model.save(tmp_path / "model.clf")  # any suffix: saved exactly there
    assert path.exists() and not (tmp_path / "model.clf.npz").exists()
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert set(data.files) == {"header", "classes", "weights", "bias"}
    loaded = Classifier.load(path)
    assert loaded.settings == SETTINGS and loaded.classes == model.classes and loaded.kind == "logistic"
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.info["rows"] == 30


def test_load_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        Classifier.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="not a gemvec classifier"):
        Classifier.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="not a gemvec classifier"):
        Classifier.load(tmp_path / "text.npz")


def test_wrong_dimension_is_refused() -> None:
    model = fit_logistic(*blobs(5, 2), SETTINGS)
    with pytest.raises(InputError, match="8-d"):
        model.predict_proba(np.zeros((1, 8), np.float32))


def test_cross_validation() -> None:
    x, y = blobs(10, 3, spread=0.05)
    cv = cross_validate(x, y, SETTINGS, folds=5)
    assert cv is not None and cv.folds == 5 and cv.accuracy == 1.0 and cv.macro_f1 == 1.0
    capped = cross_validate(x[:22], y[:22], SETTINGS, folds=5)  # label c2 has only 2 rows
    assert capped is not None and capped.folds == 2
    assert cross_validate(x[:21], y[:21], SETTINGS) is None  # label c2 has 1 row: no stratified folds


def test_metrics_by_hand() -> None:
    scores = score_predictions(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert scores.accuracy == 0.75
    assert scores.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores.confusion.tolist() == [[1, 1], [0, 2]]
    assert scores.per_class["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    unseen = score_predictions(["a", "z"], ["a", "a"], classes=["a", "b"])
    assert (
        unseen.accuracy == 0.5 and unseen.labels == ["a", "b", "z"] and unseen.per_class["z"]["recall"] == 0.0
    )


def test_train_predict_on_tiny_model(tiny_embedder: Embedder, tmp_path: Path) -> None:
    texts = [
        "the fox runs",
        "a quick fox",
        "brown fox jumps",
        "Mars is red",
        "Venus planet",
        "red planet Mars",
    ]
    labels = ["fox", "fox", "fox", "space", "space", "space"]
    model, cv = train(tiny_embedder, texts, labels, folds=3)
    assert cv is not None and cv.folds == 3 and 0.0 <= cv.accuracy <= 1.0
    assert model.settings.dim == tiny_embedder.dim and model.settings.task == "classification"
    assert model.settings.fingerprint and model.settings.precision == tiny_embedder.precision.value
    assert model.info["cross_validation"]["folds"] == 3
    predictions = Classifier.load(model.save(tmp_path / "m.npz")).predict_texts(tiny_embedder, texts)
    assert [p.label for p in predictions] == model.predict(model.embed(tiny_embedder, texts))
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in predictions)


def test_settings_refuse_another_model_or_precision(tiny_embedder: Embedder, tmp_path: Path) -> None:
    from gemvec.testing import make_tiny_checkpoint

    settings = EmbeddingSettings.of(tiny_embedder)
    other = Embedder.load(make_tiny_checkpoint(tmp_path / "other", seed=1))
    with pytest.raises(InputError, match="model weights differ"):
        settings.check(other)
    bf16 = Embedder.load(tiny_embedder.folder, "bfloat16")
    with pytest.raises(InputError, match="precision is bfloat16"):
        settings.check(bf16)
    settings.check(Embedder.load(tiny_embedder.folder))  # same checkpoint, fresh load: fine


def test_settings_with_the_legacy_fingerprint_still_match(tiny_embedder: Embedder, tmp_path: Path) -> None:
    from gemvec.testing import make_tiny_checkpoint

    settings = EmbeddingSettings.of(tiny_embedder)
    assert tiny_embedder.folder is not None
    old = legacy_eval_fingerprint(tiny_embedder.folder)
    assert old != settings.fingerprint
    replace(settings, fingerprint=old).check(tiny_embedder)  # a classifier saved by an older gemvec
    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(InputError, match="model weights differ"):
        replace(settings, fingerprint=legacy_eval_fingerprint(other)).check(tiny_embedder)


def test_zero_shot_scores_texts_against_label_documents(tiny_embedder: Embedder) -> None:
    descriptions = {"pets": "the quick brown fox", "space": "Mars is the red planet", "food": "bread"}
    model = zero_shot(tiny_embedder, descriptions, template="about {}")
    assert model.kind == "zero-shot" and model.info["descriptions"] == descriptions
    texts = ["Mars is the red planet", "the quick brown fox", "a loaf of bread", "Venus"]
    # by hand: texts with the classification prompt, labels as documents, highest cosine wins
    x = tiny_embedder.encode(texts, task="classification")
    labels = tiny_embedder.encode_document([f"about {d}" for d in descriptions.values()])
    expected = [list(descriptions)[i] for i in (x @ labels.T).argmax(axis=1)]
    predictions = model.predict_texts(tiny_embedder, texts)
    assert [p.label for p in predictions] == expected
    with pytest.raises(InputError, match="at least two labels"):
        zero_shot(tiny_embedder, ["only"])
    with pytest.raises(InputError, match="must contain"):
        zero_shot(tiny_embedder, ["a", "b"], template="no slot")


def test_training_needs_two_labels(tiny_embedder: Embedder) -> None:
    with pytest.raises(InputError, match="two different labels"):
        train(tiny_embedder, ["a", "b"], ["x", "x"])
    with pytest.raises(InputError, match="2 texts but 1 labels"):
        train(tiny_embedder, ["a", "b"], ["x"])


@pytest.mark.real_model
def test_real_model_classifies_topics(real_embedder: Embedder) -> None:
    texts = [
        "The striker scored twice in the cup final.",
        "The team won the league after a penalty shootout.",
        "Preheat the oven and whisk the eggs with sugar.",
        "Simmer the tomato sauce with garlic for twenty minutes.",
    ]
    labels = ["sport", "sport", "cooking", "cooking"]
    model, _ = train(real_embedder, texts, labels, dim=128, folds=0)
    new = ["The goalkeeper saved a late penalty.", "Knead the dough and let it rise for an hour."]
    assert [p.label for p in model.predict_texts(real_embedder, new)] == ["sport", "cooking"]
    zs = zero_shot(real_embedder, {"sport": "sports and games", "cooking": "cooking and recipes"}, dim=128)
    scores = evaluate(zs, zs.embed(real_embedder, texts + new), [*labels, "sport", "cooking"])
    assert scores.accuracy == 1.0
