"""Quality of `gemvec classify` and `gemvec cluster` on Banking77 and SIB-200 (issue 6).

For each dataset it runs the same code the CLI runs (gemvec.tasks.classify / cluster) on
vectors from the shared evaluation cache (gemvec.eval.cache: a text embedded once, by any
benchmark, is never embedded again), and prints a Markdown table:

* supervised: ``fit_logistic`` (LogisticRegression C=1, max_iter=1000) on a stratified sample of
  ``--per-label`` train texts per label (a seeded permutation, first k per label, as MTEB samples),
  scored on the whole test split;
* zero-shot: ``zero_shot`` with the English label names, scored on the whole test split;
* clustering: ``cluster_vectors`` on the test split (clustering prompt), k = number of labels and
  k chosen by silhouette (2..15); V-measure and ARI against the labels.

    python benchmarks/classify_cluster.py --model /root/.cache/embeddinggemma-300m [--langs eng_Latn,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gemvec import Embedder
from gemvec.eval.cache import EmbeddingCache, default_cache_dir
from gemvec.eval.protocols import ClassificationOptions, sample_train_sets
from gemvec.prompts import Task
from gemvec.tabular import Table, read_table
from gemvec.tasks.classify import EmbeddingSettings, evaluate, fit_logistic, zero_shot
from gemvec.tasks.cluster import cluster_vectors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LANGS = [
    "eng_Latn", "fra_Latn", "jpn_Jpan", "nld_Latn", "deu_Latn",
    "zho_Hans", "rus_Cyrl", "arb_Arab", "hin_Deva", "swh_Latn",
]  # fmt: skip
CLASSIFY = Task.CLASSIFICATION.prompt
CLUSTER = Task.CLUSTERING.prompt
PUBLISHED = {"banking77": 0.914545, "jpn_Jpan": 0.757353, "nld_Latn": 0.761275}  # MTEB 8-shot protocol
SIB_PER_LABEL = 8
BANKING_PER_LABEL = 16


def stratified(table: Table, per_label: int, seed: int = 42) -> Table:
    """The first ``per_label`` rows of each label along a seeded permutation (MTEB's sampler)."""
    options = ClassificationOptions(samples_per_label=per_label, experiments=1, seed=seed)
    rows = [table.rows[i] for i in sorted(sample_train_sets(table.labels or [], options)[0])]
    return Table(rows, table.source, table.text_column, table.label_column)


def sib_split(lang: str, split: str, per_label: int = SIB_PER_LABEL) -> Table:
    table = read_table(DATA / "sib200" / lang / f"{split}.tsv", label_column="category", id_column="index_id")
    return stratified(table, per_label) if split == "train" else table


def banking_split(split: str, per_label: int = BANKING_PER_LABEL) -> Table:
    table = read_table(DATA / "banking77" / f"{split}.jsonl", require_labels=True)
    return stratified(table, per_label) if split == "train" else table


class CachedVectors:
    """Vectors of prompted texts through the shared evaluation cache."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.cache = EmbeddingCache.for_model(default_cache_dir(), embedder.folder, embedder.precision.value)

    def __call__(self, prompt: str, texts: list[str]) -> np.ndarray:
        def encode(prompted: list[str]) -> np.ndarray:
            return self.embedder.encode(prompted, prompt="", batch_size=16, show_progress=False)

        return self.cache.embed([prompt + t for t in texts], encode, chunk_size=32)


def classification(vectors: CachedVectors, settings: EmbeddingSettings, train: Table, test: Table) -> dict:
    model = fit_logistic(vectors(CLASSIFY, train.texts), train.labels or [], settings)
    scores = evaluate(model, vectors(CLASSIFY, test.texts), test.labels or [])
    return {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1, "train": len(train), "test": len(test)}


def zero_shot_scores(vectors: CachedVectors, test: Table) -> dict:
    model = zero_shot(vectors.embedder, sorted(set(test.labels or [])))
    scores = evaluate(model, vectors(CLASSIFY, test.texts), test.labels or [])
    return {"zero_shot_accuracy": scores.accuracy, "zero_shot_macro_f1": scores.macro_f1}


def clustering(vectors: CachedVectors, test: Table) -> dict:
    x = vectors(CLUSTER, test.texts)
    n_labels = len(set(test.labels or []))
    fixed = cluster_vectors(x, test.texts, labels=test.labels, k=n_labels, keywords=5)
    auto = cluster_vectors(x, test.texts, labels=test.labels, keywords=5)
    return {
        "v_measure": fixed.v_measure,
        "ari": fixed.ari,
        "auto_k": auto.k,
        "auto_v_measure": auto.v_measure,
        "keywords": [c.keywords for c in fixed.clusters],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--langs", default=",".join(LANGS))
    parser.add_argument("--skip-banking", action="store_true")
    parser.add_argument("--json", type=Path, help="Also write all results to this JSON file.")
    args = parser.parse_args()

    embedder = Embedder.load(args.model, args.precision)
    settings = EmbeddingSettings.of(embedder, None, Task.CLASSIFICATION)
    vectors = CachedVectors(embedder)
    results: dict[str, dict] = {}
    for lang in args.langs.split(","):
        start = time.perf_counter()
        train, test = sib_split(lang, "train"), sib_split(lang, "test")
        results[lang] = (
            classification(vectors, settings, train, test)
            | zero_shot_scores(vectors, test)
            | clustering(vectors, test)
        )
        print(f"{lang}: {json.dumps(results[lang], ensure_ascii=False)} ({time.perf_counter() - start:.0f}s)",
              file=sys.stderr, flush=True)  # fmt: skip
    if not args.skip_banking:
        train, test = banking_split("train"), banking_split("test")
        results["banking77"] = classification(vectors, settings, train, test)
        print(f"banking77: {results['banking77']}", file=sys.stderr, flush=True)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")


def print_table(results: dict[str, dict]) -> None:
    print(
        "| dataset | train texts | accuracy | macro-F1 | zero-shot acc. | V-measure (k=labels) | ARI "
        "| auto k | V-measure (auto k) | published (MTEB 8-shot) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = [
            name,
            str(r["train"]),
            f"{r['accuracy']:.4f}",
            f"{r['macro_f1']:.4f}",
            f"{r['zero_shot_accuracy']:.4f}" if "zero_shot_accuracy" in r else "-",
            f"{r['v_measure']:.4f}" if "v_measure" in r else "-",
            f"{r['ari']:.4f}" if "ari" in r else "-",
            str(r.get("auto_k", "-")),
            f"{r['auto_v_measure']:.4f}" if "auto_v_measure" in r else "-",
            f"{PUBLISHED[name]:.4f}" if name in PUBLISHED else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    langs = [r for n, r in results.items() if n != "banking77"]
    if langs:
        mean = {
            key: np.mean([r[key] for r in langs]) for key in ("accuracy", "zero_shot_accuracy", "v_measure")
        }
        print(f"\nSIB-200 mean over {len(langs)} languages: accuracy {mean['accuracy']:.4f}, "
              f"zero-shot {mean['zero_shot_accuracy']:.4f}, V-measure {mean['v_measure']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
