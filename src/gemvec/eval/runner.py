"""Run evaluations: datasets in, :class:`EvalResult` out, embeddings through the disk cache."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gemvec.eval.cache import EmbeddingCache
from gemvec.eval.datasets import DatasetSource, EvalData, LabelledData, PairData, RetrievalData, TaskType
from gemvec.eval.prompts import EvalPrompts
from gemvec.eval.protocols import (
    ClassificationOptions,
    ClusteringOptions,
    Metrics,
    evaluate_bitext,
    evaluate_classification,
    evaluate_clustering,
    evaluate_retrieval,
    evaluate_sts,
)
from gemvec.model.head import truncate_and_normalize
from gemvec.progress import progress_bar

if TYPE_CHECKING:
    from gemvec.embedder import Embedder

MAIN_SCORE: dict[TaskType, str] = {
    TaskType.RETRIEVAL: "ndcg_at_10",
    TaskType.STS: "cosine_spearman",
    TaskType.CLASSIFICATION: "accuracy",
    TaskType.CLUSTERING: "v_measure",
    TaskType.BITEXT: "f1",
}


@dataclass(frozen=True)
class EvalResult:
    """One dataset's scores; ``main_score`` on MTEB's 0-1 scale."""

    dataset: str
    type: str
    main_score: float
    metrics: Metrics
    model: str
    dim: int
    precision: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalOptions:
    dim: int | None = None  # None: the model's full size
    limit: int | None = None  # quick runs: the first N queries / pairs / test rows
    batch_size: int = 32
    prompt: str | None = None  # overrides every non-document prompt
    document_prompt: str | None = None  # overrides the retrieval document prompt; may hold {title}
    classification: ClassificationOptions = field(default_factory=ClassificationOptions)
    clustering: ClusteringOptions = field(default_factory=ClusteringOptions)


class Evaluator:
    """Evaluates datasets with one loaded model; vectors go through an :class:`EmbeddingCache`."""

    def __init__(
        self,
        embedder: Embedder,
        options: EvalOptions | None = None,
        *,
        cache_dir: Path | None = None,
        show_progress: bool | None = None,
    ) -> None:
        from gemvec.embedder import check_dim

        self.embedder = embedder
        self.options = options or EvalOptions()
        self.dim = check_dim(self.options.dim, embedder.dim)
        self.prompts = EvalPrompts.for_model(embedder.folder).override(
            self.options.prompt, self.options.document_prompt
        )
        self.cache = EmbeddingCache.for_model(cache_dir, embedder.folder, embedder.precision.value)
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress

    def run(self, source: DatasetSource, data: EvalData | None = None) -> EvalResult:
        """Evaluate one dataset (``data``: already loaded, else loaded from ``source``)."""
        start = time.perf_counter()
        data = data if data is not None else source.load()
        if self.options.limit is not None:
            data = data.limit(self.options.limit)
        with self._progress(source.name) as advance:
            metrics = self._protocol(source.type, data, lambda texts: self._embed(texts, advance))
        key = MAIN_SCORE[source.type]
        return EvalResult(
            dataset=source.name,
            type=source.type.value,
            main_score=float(metrics[key]),  # type: ignore[arg-type]
            metrics=metrics,
            model=self.embedder.model_name,
            dim=self.dim,
            precision=self.embedder.precision.value,
            seconds=round(time.perf_counter() - start, 3),
        )

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _protocol(self, kind: TaskType, data: EvalData, embed) -> Metrics:
        options = self.options
        if kind is TaskType.RETRIEVAL and isinstance(data, RetrievalData):
            return evaluate_retrieval(data, embed, self.prompts)
        if kind is TaskType.STS and isinstance(data, PairData):
            return evaluate_sts(data, embed, self.prompts)
        if kind is TaskType.BITEXT and isinstance(data, PairData):
            return evaluate_bitext(data, embed, self.prompts)
        if kind is TaskType.CLASSIFICATION and isinstance(data, LabelledData):
            return evaluate_classification(data, embed, self.prompts, options.classification)
        if kind is TaskType.CLUSTERING and isinstance(data, LabelledData):
            return evaluate_clustering(data, embed, self.prompts, options.clustering)
        raise TypeError(f"{type(data).__name__} is not {kind.value} data")

    def _embed(self, prompted: list[str], advance) -> np.ndarray:
        def encode(texts: list[str]) -> np.ndarray:
            return self.embedder.encode(
                texts, prompt="", batch_size=self.options.batch_size, show_progress=False
            )

        full = self.cache.embed(prompted, encode, on_progress=advance)
        if len(prompted) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return truncate_and_normalize(full, self.dim)

    @contextmanager
    def _progress(self, name: str) -> Iterator:
        """A rich progress bar on stderr counting the texts that need encoding (cached ones are free)."""
        with progress_bar(f"embedding {name}", enabled=bool(self.show_progress)) as update:
            if update is None:
                yield None
                return
            before = [0, 0]  # (done, total) of earlier embed calls of this dataset
            current = [0, 0]

            def advance(done: int, total: int) -> None:
                if done == 0:
                    before[0] += current[0]
                    before[1] += current[1]
                current[:] = [done, total]
                update(before[0] + done, before[1] + total)

            yield advance
