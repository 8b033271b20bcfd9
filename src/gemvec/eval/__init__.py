"""MTEB-faithful evaluation: datasets, metrics, protocols, an embedding cache, and a runner.

Typical use::

    from gemvec import Embedder
    from gemvec.eval import EvalOptions, Evaluator, default_cache_dir, discover

    with Evaluator(Embedder.load(), EvalOptions(dim=256), cache_dir=default_cache_dir()) as evaluator:
        for source in discover("../shared/data/stsb"):
            print(source.name, evaluator.run(source).main_score)
"""

from gemvec.eval.cache import EmbeddingCache, default_cache_dir
from gemvec.eval.datasets import DatasetSource, TaskType, discover
from gemvec.eval.protocols import ClassificationOptions, ClusteringOptions
from gemvec.eval.records import DatasetError
from gemvec.eval.runner import MAIN_SCORE, EvalOptions, EvalResult, Evaluator

__all__ = [
    "MAIN_SCORE",
    "ClassificationOptions",
    "ClusteringOptions",
    "DatasetError",
    "DatasetSource",
    "EmbeddingCache",
    "EvalOptions",
    "EvalResult",
    "Evaluator",
    "TaskType",
    "default_cache_dir",
    "discover",
]
