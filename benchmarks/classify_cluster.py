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
BANKING_PER_LABEL = 8


def stratified(table: Table, per_label: int, seed: int = 42) -> Table:
    """The first ``per_label`` rows of each label along a seeded permutation (MTEB's sampler)."""
    options = ClassificationOptions(samples_per_label=per_label, experiments=1, seed=seed)
    rows = [table.rows[i] for i in sorted(sample_train_sets(table.labels or [], options)[0])]
    return Table(rows, table.source, table.text_column, table.label_column)


def sib_split(lang: str, split: str, per_label: int = SIB_PER_LABEL) -> Table:
    table = read_table(DATA / "sib200" / lang / f"{split}.tsv", label_column="category", id_column="index_id")
    return stratified(table, per_label) if split == "train" else table


def banking_split(split: str, per_label: int | None = None) -> Table:
    """All rows of a split, or a stratified sample of ``per_label`` rows per label."""
    table = read_table(DATA / "banking77" / f"{split}.jsonl", require_labels=True)
    return stratified(table, per_label) if per_label else table


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


def clustering_on_classification_vectors(vectors: CachedVectors, test: Table) -> dict:
    """The same k = labels clustering on the classification-prompt vectors (already embedded)."""
    x = vectors(CLASSIFY, test.texts)
    result = cluster_vectors(x, test.texts, labels=test.labels, k=len(set(test.labels or [])), keywords=0)
    return {"v_measure_classification_prompt": result.v_measure}


def mteb_protocol(vectors: CachedVectors, train: Table, test: Table) -> dict:
    """MTEB's 10 x 8-shot protocol (gemvec.eval), for the figure comparable to the published one."""
    from gemvec.eval.datasets import LabelledData
    from gemvec.eval.prompts import EvalPrompts
    from gemvec.eval.protocols import evaluate_classification

    data = LabelledData(train.texts, train.labels or [], test.texts, test.labels or [])
    metrics = evaluate_classification(
        data, lambda prompted: vectors("", prompted), EvalPrompts.defaults(), ClassificationOptions()
    )
    return {"mteb_accuracy": metrics["accuracy"], "mteb_accuracy_std": metrics["accuracy_std"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--langs", default=",".join(LANGS))
    parser.add_argument("--cluster-langs", default=None, help="Languages to cluster (default: --langs).")
    parser.add_argument("--skip-banking", action="store_true")
    parser.add_argument(
        "--banking-test-per-label", type=int, default=0, help="Score a stratified test sample (0: all 3,080)."
    )
    parser.add_argument("--mteb", action="store_true", help="Also run MTEB's 10 x 8-shot protocol.")
    parser.add_argument("--json", type=Path, help="Also write all results to this JSON file.")
    args = parser.parse_args()

    embedder = Embedder.load(args.model, args.precision)
    settings = EmbeddingSettings.of(embedder, None, Task.CLASSIFICATION)
    vectors = CachedVectors(embedder)
    results: dict[str, dict] = {}
    cluster_langs = (args.cluster_langs or args.langs).split(",")
    for lang in args.langs.split(","):
        start = time.perf_counter()
        train, test = sib_split(lang, "train"), sib_split(lang, "test")
        results[lang] = classification(vectors, settings, train, test) | zero_shot_scores(vectors, test)
        results[lang] |= clustering_on_classification_vectors(vectors, test)
        if lang in cluster_langs:
            results[lang] |= clustering(vectors, test)
        if args.mteb:
            results[lang] |= mteb_protocol(vectors, sib_split(lang, "train", per_label=10**6), test)
        print(f"{lang}: {json.dumps(results[lang], ensure_ascii=False)} ({time.perf_counter() - start:.0f}s)",
              file=sys.stderr, flush=True)  # fmt: skip
    if not args.skip_banking:
        train = banking_split("train", BANKING_PER_LABEL)
        test = banking_split("test", args.banking_test_per_label or None)
        results["banking77"] = classification(vectors, settings, train, test)
        if args.mteb:
            results["banking77"] |= mteb_protocol(vectors, banking_split("train", per_label=10**6), test)
        print(f"banking77: {results['banking77']}", file=sys.stderr, flush=True)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")


COLUMNS = [  # (header, result key, format)
    ("train texts", "train", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("macro-F1", "macro_f1", "{:.4f}"),
    ("zero-shot acc.", "zero_shot_accuracy", "{:.4f}"),
    ("MTEB 10x8-shot acc.", "mteb_accuracy", "{:.4f}"),
    ("V-measure k=labels", "v_measure", "{:.4f}"),
    ("ARI", "ari", "{:.4f}"),
    ("auto k", "auto_k", "{}"),
    ("V-measure auto k", "auto_v_measure", "{:.4f}"),
    ("V-measure, classification-prompt vectors", "v_measure_classification_prompt", "{:.4f}"),
]


def print_table(results: dict[str, dict]) -> None:
    print("| dataset | " + " | ".join(h for h, _, _ in COLUMNS) + " | published (MTEB 8-shot) |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for name, r in results.items():
        cells = [fmt.format(r[key]) if key in r else "-" for _, key, fmt in COLUMNS]
        published = f"{PUBLISHED[name]:.4f}" if name in PUBLISHED else "-"
        print(f"| {name} | " + " | ".join(cells) + f" | {published} |")
    langs = [r for n, r in results.items() if n != "banking77"]
    for _, key, _ in COLUMNS[1:]:
        values = [r[key] for r in langs if key in r]
        if values and key != "auto_k":
            print(f"SIB-200 mean {key} over {len(values)} languages: {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
