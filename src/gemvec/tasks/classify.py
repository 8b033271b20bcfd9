"""Text classifiers on EmbeddingGemma vectors: trained (logistic regression) or zero-shot.

Both kinds are one linear layer over the embedding, ``probabilities = softmax(scale * X W^T + b)``:

* trained: scikit-learn ``LogisticRegression`` fitted on the vectors (a binary model is stored
  as two symmetric rows, which gives exactly sklearn's sigmoid probabilities);
* zero-shot: ``W`` holds the embeddings of the label names or descriptions, ``b = 0``, and
  ``scale`` turns cosine similarities into a softmax. Its probabilities rank the labels but are
  not calibrated.

A :class:`Classifier` records the :class:`EmbeddingSettings` its vectors were made with (model
fingerprint, precision, Matryoshka dim, prompt) and :meth:`Classifier.embed` refuses an
embedder that does not match, so predictions never mix settings. It is saved as one ``.npz``
file of plain arrays plus a JSON header, loaded with ``allow_pickle=False``.

Typical use::

    classifier, cv = train(embedder, texts, labels)
    classifier.save("intents.npz")
    Classifier.load("intents.npz").predict_texts(embedder, ["where is my card?"])
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gemvec.errors import InputError
from gemvec.model.fingerprint import legacy_eval_fingerprint, model_fingerprint
from gemvec.prompts import Task, parse_task

if TYPE_CHECKING:
    from gemvec.embedder import Embedder

FILE_FORMAT = "gemvec-classifier"
FILE_VERSION = 1
ZERO_SHOT_SCALE = 50.0  # softmax temperature 0.02 over cosine similarities
Kind = Literal["logistic", "zero-shot"]


@dataclass(frozen=True)
class EmbeddingSettings:
    """How texts are turned into vectors for a classifier; predicting must use the same."""

    model: str  # the name or folder it was trained with (where predict loads it from by default)
    fingerprint: str | None  # content hash of the weights, None if the embedder has no folder
    precision: str
    dim: int
    task: str  # Task value of the prompt the texts get

    @classmethod
    def of(
        cls, embedder: Embedder, dim: int | None = None, task: Task | str = Task.CLASSIFICATION
    ) -> EmbeddingSettings:
        from gemvec.embedder import check_dim

        return cls(
            model=embedder.model_name,
            fingerprint=_fingerprint(embedder),
            precision=str(embedder.precision.value),
            dim=check_dim(dim, embedder.dim),
            task=parse_task(task).value,
        )

    def check(self, embedder: Embedder) -> None:
        """Raise InputError unless ``embedder`` produces the vectors these settings describe."""
        problems = []
        if not _same_weights(self.fingerprint, embedder):
            problems.append(f"model weights differ ({embedder.model_name} vs {self.model} at training)")
        if str(embedder.precision.value) != self.precision:
            problems.append(f"precision is {embedder.precision.value}, trained with {self.precision}")
        if embedder.dim < self.dim:
            problems.append(f"the model gives {embedder.dim}-d vectors, trained on {self.dim}-d")
        if problems:
            raise InputError(
                "This classifier was made with other embedding settings: "
                + "; ".join(problems)
                + ". Load the model and precision it records (gemvec does this unless --model/--precision "
                "override it), or train again."
            )

    def encode(self, embedder: Embedder, texts: Sequence[str], **options: Any) -> np.ndarray:
        """Embed ``texts`` exactly as these settings say (checked first)."""
        self.check(embedder)
        dim = None if self.dim == embedder.dim else self.dim  # full size: no Matryoshka warning
        return embedder.encode(list(texts), task=self.task, dim=dim, **options)


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    probabilities: dict[str, float]


@dataclass
class Classifier:
    """A linear classifier over embeddings; see the module docstring."""

    classes: list[str]
    weights: np.ndarray  # (n_classes, dim)
    bias: np.ndarray  # (n_classes,)
    settings: EmbeddingSettings
    kind: Kind = "logistic"
    scale: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)  # training facts: rows, C, cv scores, descriptions

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float32)
        self.bias = np.asarray(self.bias, dtype=np.float32)
        if self.weights.shape != (len(self.classes), self.settings.dim) or self.bias.shape != (
            len(self.classes),
        ):
            raise InputError(
                f"Classifier arrays do not fit: {len(self.classes)} classes, weights {self.weights.shape}, "
                f"bias {self.bias.shape}, dim {self.settings.dim}."
            )

    # -- scoring --------------------------------------------------------------------------

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """(N, n_classes) probabilities, columns in the order of :attr:`classes`."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.settings.dim:
            raise InputError(
                f"Got {vectors.shape[1]}-d vectors; this classifier takes {self.settings.dim}-d."
            )
        logits = self.scale * (vectors.astype(np.float64) @ self.weights.T.astype(np.float64)) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, vectors: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(vectors).argmax(axis=1)]

    def embed(self, embedder: Embedder, texts: Sequence[str], **options: Any) -> np.ndarray:
        """Embed texts with this classifier's settings (refusing a mismatched embedder)."""
        return self.settings.encode(embedder, texts, **options)

    def predict_texts(self, embedder: Embedder, texts: Sequence[str], **options: Any) -> list[Prediction]:
        return self.describe(self.predict_proba(self.embed(embedder, texts, **options)))

    def describe(self, probabilities: np.ndarray, top: int | None = None) -> list[Prediction]:
        """Predictions from a probability matrix; ``top`` keeps the k most likely labels per row."""
        out = []
        for row in probabilities:
            order = np.argsort(-row, kind="stable")[: top or len(row)]
            best = int(order[0])
            out.append(
                Prediction(
                    self.classes[best],
                    float(row[best]),
                    {self.classes[int(i)]: round(float(row[i]), 6) for i in order},
                )
            )
        return out

    # -- files ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` file (plain arrays and a JSON header; no pickled objects)."""
        path = Path(path)
        header = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "kind": self.kind,
            "scale": self.scale,
            "settings": asdict(self.settings),
            "info": self.info,
        }
        with path.open("wb") as f:  # a file object: numpy adds no suffix
            np.savez_compressed(
                f,
                header=np.array(json.dumps(header, ensure_ascii=False)),
                classes=np.array(self.classes, dtype=str),
                weights=self.weights,
                bias=self.bias,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                classes = [str(c) for c in data["classes"]]
                weights, bias = data["weights"], data["bias"]
        except FileNotFoundError:
            raise InputError(
                f"Classifier file {path} does not exist; make one with `gemvec classify train`."
            ) from None
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path} is not a gemvec classifier file ({exc}).") from None
        if header.get("format") != FILE_FORMAT or header.get("version", 0) > FILE_VERSION:
            raise InputError(f"{path} is not a gemvec classifier file of a version this gemvec reads.")
        return cls(
            classes=classes,
            weights=weights,
            bias=bias,
            settings=EmbeddingSettings(**header["settings"]),
            kind=header["kind"],
            scale=float(header["scale"]),
            info=header.get("info", {}),
        )


# -- training -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossValidation:
    """Stratified k-fold scores of the training recipe on the training data."""

    folds: int
    accuracy: float
    accuracy_std: float
    macro_f1: float
    macro_f1_std: float


def fit_logistic(
    vectors: np.ndarray,
    labels: Sequence[str],
    settings: EmbeddingSettings,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> Classifier:
    """Fit scikit-learn's multinomial LogisticRegression (L2, lbfgs) on embeddings."""
    from sklearn.linear_model import LogisticRegression

    labels = [str(label) for label in labels]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(f"Training needs at least two different labels; found {classes or 'none'}.")
    if len(labels) != len(vectors):
        raise InputError(f"Got {len(vectors)} vectors but {len(labels)} labels.")
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*max_iter.*")  # converged enough for ranking classes
        model.fit(vectors, labels)
    weights, bias = model.coef_, model.intercept_
    if len(classes) == 2:  # sigmoid(z) == softmax([-z/2, z/2])[1]
        weights = np.vstack([-weights[0] / 2, weights[0] / 2])
        bias = np.array([-bias[0] / 2, bias[0] / 2])
    counts = {c: labels.count(c) for c in classes}
    info = {"rows": len(labels), "class_counts": counts, "C": C, "max_iter": max_iter}
    return Classifier(list(model.classes_), weights, bias, settings, "logistic", 1.0, info)


def cross_validate(
    vectors: np.ndarray,
    labels: Sequence[str],
    settings: EmbeddingSettings,
    *,
    folds: int = 5,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> CrossValidation | None:
    """Stratified k-fold accuracy and macro-F1 (None if a label has fewer than two rows)."""
    from sklearn.model_selection import StratifiedKFold

    labels = [str(label) for label in labels]
    smallest = min(labels.count(c) for c in set(labels))
    folds = min(folds, smallest)
    if folds < 2:
        return None
    accuracies, f1s = [], []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_rows, test_rows in splitter.split(vectors, labels):
        model = fit_logistic(
            vectors[train_rows], [labels[i] for i in train_rows], settings, C=C, max_iter=max_iter
        )
        scores = evaluate(model, vectors[test_rows], [labels[i] for i in test_rows])
        accuracies.append(scores.accuracy)
        f1s.append(scores.macro_f1)
    return CrossValidation(
        folds, float(np.mean(accuracies)), float(np.std(accuracies)), float(np.mean(f1s)), float(np.std(f1s))
    )


def train(
    embedder: Embedder,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    dim: int | None = None,
    C: float = 1.0,
    folds: int = 5,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> tuple[Classifier, CrossValidation | None]:
    """Embed once with the classification prompt, cross-validate, then fit on all rows.

    ``folds=0`` skips cross-validation.
    """
    if len(texts) != len(labels):
        raise InputError(f"Got {len(texts)} texts but {len(labels)} labels.")
    if len(set(labels)) < 2:
        raise InputError("Training needs at least two different labels.")
    settings = EmbeddingSettings.of(embedder, dim, Task.CLASSIFICATION)
    vectors = settings.encode(embedder, texts, batch_size=batch_size, show_progress=show_progress)
    cv = cross_validate(vectors, labels, settings, folds=folds, C=C) if folds else None
    classifier = fit_logistic(vectors, labels, settings, C=C)
    if cv is not None:
        classifier.info["cross_validation"] = asdict(cv)
    return classifier, cv


def zero_shot(
    embedder: Embedder,
    labels: Sequence[str] | Mapping[str, str],
    *,
    dim: int | None = None,
    scale: float = ZERO_SHOT_SCALE,
    template: str = "{}",
) -> Classifier:
    """A classifier from label names alone, or from ``{label: short description}``.

    Texts get the classification prompt; each label's ``template.format(description)`` is
    embedded as a document (``title: none | text: ...``), which ranked SIB-200 English train
    texts better than giving labels the classification prompt (see BENCHMARKS.md). A text gets
    the label whose embedding is most similar.
    """
    descriptions = dict(labels) if isinstance(labels, Mapping) else {str(x): str(x) for x in labels}
    if len(descriptions) < 2:
        raise InputError("Zero-shot classification needs at least two labels.")
    if any(not str(d).strip() for d in descriptions.values()):
        raise InputError("Every zero-shot label needs a non-empty name or description.")
    if "{}" not in template:
        raise InputError(f"The label template must contain '{{}}' where the label goes; got {template!r}.")
    settings = EmbeddingSettings.of(embedder, dim, Task.CLASSIFICATION)
    settings.check(embedder)
    classes = list(descriptions)
    label_texts = [template.format(descriptions[c]) for c in classes]
    weights = embedder.encode_document(
        label_texts, dim=None if settings.dim == embedder.dim else settings.dim, show_progress=False
    )
    info = {"descriptions": descriptions, "template": template, "label_prompt": Task.DOCUMENT.prompt}
    return Classifier(classes, weights, np.zeros(len(classes)), settings, "zero-shot", scale, info)


# -- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support, plus the confusion matrix."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    labels: list[str]  # row/column order of the confusion matrix
    confusion: np.ndarray  # (len(labels), len(labels)): rows gold, columns predicted
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "rows": self.rows,
            "per_class": self.per_class,
            "labels": self.labels,
            "confusion": self.confusion.tolist(),
        }


def evaluate(classifier: Classifier, vectors: np.ndarray, gold: Sequence[str]) -> Evaluation:
    """Score predictions on ``vectors`` against ``gold``; labels the classifier never saw count as errors."""
    return score_predictions(gold, classifier.predict(vectors), classifier.classes)


def score_predictions(
    gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str] = ()
) -> Evaluation:
    """Accuracy, macro-F1 (sklearn: over gold and predicted labels), per-class scores, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    gold = [str(g) for g in gold]
    labels = sorted(set(classes) | set(gold) | set(predicted))
    present = sorted(set(gold))  # per-class rows for the classes that occur in the data
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=present, zero_division=0
    )
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(present, precision, recall, f1, support, strict=True)
    }
    return Evaluation(
        accuracy=float(accuracy_score(gold, predicted)),
        macro_f1=float(f1_score(gold, predicted, average="macro", zero_division=0)),  # as MTEB
        per_class=per_class,
        labels=labels,
        confusion=confusion_matrix(gold, predicted, labels=labels),
        rows=len(gold),
    )


def _fingerprint(embedder: Embedder) -> str | None:
    return model_fingerprint(embedder.folder, embedder.model_name) if embedder.folder is not None else None


def _same_weights(recorded: str | None, embedder: Embedder) -> bool:
    """Whether ``embedder`` has the weights a classifier recorded (unknowable, so True, without a
    fingerprint on either side). Classifiers saved before the current fingerprint recorded the
    legacy eval one: that is accepted when it matches."""
    folder = embedder.folder
    if not recorded or folder is None:
        return True
    if recorded == model_fingerprint(folder, embedder.model_name):
        return True
    return recorded == legacy_eval_fingerprint(folder)
