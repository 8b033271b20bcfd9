"""Quality of gemvec's EmbeddingGemma on MTEB-style tasks, for BENCHMARKS.md (issue 3).

Runs the evaluation suite over ../shared/data at several Matryoshka dims and one precision,
appending one JSON object per (dataset, dim) to a JSON Lines file; datasets already in the
file are skipped, so an interrupted run resumes. Embeddings go through gemvec's disk cache,
so every dim after the first costs no encoding. Then ``--table`` renders the markdown tables.

    python benchmarks/eval_quality.py --precision float32 --suite targets   # the five published figures
    python benchmarks/eval_quality.py --precision float32 --suite all        # the whole table
    python benchmarks/eval_quality.py --precision bfloat16 --only stsb/en    # some datasets
    python benchmarks/eval_quality.py --table                                # markdown from the results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from gemvec import Embedder
from gemvec.eval import ClassificationOptions, EvalOptions, Evaluator, TaskType, default_cache_dir, discover
from gemvec.precision import parse_precision

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "eval_quality.jsonl"
# int4 became a mixed 4/8-bit plan (issue 19): its rows have a file of their own, and RESULTS'
# earlier int4 rows (every weight round-to-nearest 4-bit but attention) show as "int4-rtn". Then
# its table became a fitted codebook: that file's rows (uniform groups of 16) show as "int4-g16".
INT4_RESULTS = ROOT / "benchmarks" / "results" / "eval_quality_int4.jsonl"
INT4_CODEBOOK_RESULTS = ROOT / "benchmarks" / "results" / "eval_quality_int4_codebook.jsonl"
# Likewise int8-dynamic computes in a rotated basis since issue 19's last round: RESULTS' earlier
# int8-dynamic rows (no rotation) show as "int8-dynamic-unrotated".
INT8_DYNAMIC_RESULTS = ROOT / "benchmarks" / "results" / "eval_quality_int8_dynamic.jsonl"
# Per precision, the files of its revisions, oldest first, each with the label that the rows
# before it take (a run writes to the newest file).
REVISED = {
    "int4": [(INT4_RESULTS, "int4-rtn"), (INT4_CODEBOOK_RESULTS, "int4-g16")],
    "int8-dynamic": [(INT8_DYNAMIC_RESULTS, "int8-dynamic-unrotated")],
}
DIMS = (768, 512, 256, 128)

# Published google/embeddinggemma-300m main scores (../shared/data/README.md), for comparison only.
PUBLISHED = {
    "stsb/en": 0.881646,
    "stsb/nl": 0.82626,
    "banking77": 0.914545,
    "sib200/jpn_Jpan": 0.757353,
    "sib200/nld_Latn": 0.761275,
    "xquad/th": 0.95236,
}
TARGETS = ["stsb/en", "stsb/nl", "banking77", "sib200/jpn_Jpan", "sib200/nld_Latn"]


def suite(which: str) -> list[tuple[str, Path, TaskType, Path | None]]:
    """(name, path, type, queries_from) for each dataset of the suite, targets first."""
    entries: list[tuple[str, Path, TaskType, Path | None]] = []
    for name in TARGETS:
        path = DATA / (f"{name}.test.tsv" if name.startswith("stsb/") else name)
        entries.append(
            (name, path, TaskType.STS if name.startswith("stsb/") else TaskType.CLASSIFICATION, None)
        )
    if which == "targets":
        return entries
    for source in discover(DATA / "stsb"):
        entries.append((f"stsb/{source.path.name.split('.')[0]}", source.path, TaskType.STS, None))
    for source in discover(DATA / "sib200"):
        entries.append((f"sib200/{source.path.name}", source.path, TaskType.CLASSIFICATION, None))
    for source in discover(DATA / "xquad"):
        lang = source.path.name
        entries.append((f"xquad/{lang}", source.path, TaskType.RETRIEVAL, None))
        if lang != "en":
            entries.append((f"xquad/en->{lang}", source.path, TaskType.RETRIEVAL, DATA / "xquad" / "en"))
    for source in discover(DATA / "flores_bitext"):
        entries.append((f"flores/{source.path.name}", source.path, TaskType.BITEXT, None))
    entries.append(("scifact", DATA / "scifact", TaskType.RETRIEVAL, None))
    seen: set[str] = set()
    return [e for e in entries if not (e[0] in seen or seen.add(e[0]))]


def run(args: argparse.Namespace) -> None:
    done = set()
    if args.out.exists():
        for line in args.out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done.add((row["dataset"], row["dim"], row["precision"], row.get("sampling")))
    embedder = Embedder.load(args.model, args.precision)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    entries = suite("all" if args.only else args.suite)
    if args.only:
        entries = [e for e in entries if e[0] in args.only]
    for name, path, kind, queries_from in entries:
        sampling = args.sampling if kind is TaskType.CLASSIFICATION else None
        dims = [d for d in args.dims if (name, d, embedder.precision.value, sampling) not in done]
        if not dims:
            continue
        source = replace(discover(path, kind)[0], name=name, queries_from=queries_from)
        data = source.load()
        for dim in dims:
            options = EvalOptions(dim=dim, classification=ClassificationOptions(sampling=sampling or "v2"))
            evaluator = Evaluator(embedder, options, cache_dir=args.cache_dir, show_progress=False)
            started = time.strftime("%H:%M:%S")
            result = evaluator.run(source, data)
            evaluator.close()
            row = result.to_dict() | {"sampling": sampling, "published": PUBLISHED.get(name)}
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"[{started}] {name} dim={dim} {result.precision}: {result.main_score:.4f} "
                f"({result.seconds:.0f} s)",
                flush=True,
            )


PRECISION_ORDER = [
    "float32",
    "bfloat16",
    "int8-dynamic",
    "int8-dynamic-unrotated",
    "int8",
    "int4",
    "int4-g16",
    "int4-rtn",
]
SHORT = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "int4-rtn": "int4 before",
    "int4-g16": "int4 g16",
    "int8-dynamic-unrotated": "int8-dyn unrotated",
}


def table(path: Path) -> str:
    """Markdown, three tables: float32 at every Matryoshka dim next to the published score,
    every precision at 768-d next to float32, and the other precisions' differences from
    float32 at the smaller dims."""
    rows = read_rows(path)
    names = list(dict.fromkeys((r["dataset"], r["type"], r.get("sampling")) for r in rows))
    score = {(r["dataset"], r.get("sampling"), r["precision"], r["dim"]): r["main_score"] for r in rows}
    dims = sorted({r["dim"] for r in rows if r["precision"] == "float32"}, reverse=True)
    precisions = sorted({r["precision"] for r in rows}, key=PRECISION_ORDER.index)

    def cell(value: float | None, reference: float | None = None) -> str:
        if value is None:
            return ""
        return f"{value:.4f}" + (f" ({value - reference:+.4f})" if reference is not None else "")

    head = ["dataset", "type", "published", "Δ fp32 768"] + [f"fp32 {d}" for d in dims]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    head2 = ["dataset"] + [
        f"{SHORT.get(p, p)} 768" + ("" if p == "float32" else " (Δ fp32)") for p in precisions
    ]
    lines2 = ["| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    smaller = [(p, d) for p in precisions if p != "float32" for d in dims if d != 768]
    head3 = ["dataset"] + [f"{SHORT.get(p, p)} {d}" for p, d in smaller]
    lines3 = ["| " + " | ".join(head3) + " |", "|" + "---|" * len(head3)]
    for name, kind, sampling in names:
        label = name + (f" (sampling {sampling})" if sampling else "")
        reference = score.get((name, sampling, "float32", 768))
        published = delta = ""
        if name in PUBLISHED:
            published = f"{PUBLISHED[name]:.4f}"
            delta = "" if reference is None else f"{reference - PUBLISHED[name]:+.4f}"
        values = [cell(score.get((name, sampling, "float32", d))) for d in dims]
        lines.append("| " + " | ".join([label, kind, published, delta, *values]) + " |")
        others = [
            cell(score.get((name, sampling, p, 768)), reference if p != "float32" else None)
            for p in precisions
        ]
        if any(others[1:]):
            lines2.append("| " + " | ".join([label, *others]) + " |")
        deltas = [
            difference(score.get((name, sampling, p, d)), score.get((name, sampling, "float32", d)))
            for p, d in smaller
        ]
        if any(deltas):
            lines3.append("| " + " | ".join([label, *deltas]) + " |")
    return "\n\n".join("\n".join(block) for block in (lines, lines2, lines3))


def read_rows(path: Path) -> list[dict]:
    """The rows of ``path``; for RESULTS, with each :data:`REVISED` precision's earlier rows
    relabelled and its own file's rows added."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path != RESULTS:
        return rows
    for precision, revisions in REVISED.items():
        for revised, earlier in revisions:
            if revised.exists():
                rows = [r | {"precision": earlier} if r["precision"] == precision else r for r in rows]
                rows += [json.loads(line) for line in revised.read_text(encoding="utf-8").splitlines()]
    return rows


def difference(value: float | None, reference: float | None) -> str:
    return "" if value is None or reference is None else f"{value - reference:+.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint folder (default: $GEMVEC_MODEL or the hub id)"
    )
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    parser.add_argument("--suite", choices=["targets", "all"], default="targets")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run just these datasets, e.g. xquad/th stsb/de"
    )
    parser.add_argument(
        "--sampling", choices=["v1", "v2"], default="v2", help="MTEB 1.x or 2.x few-shot sampling"
    )
    parser.add_argument("--out", type=Path, help="results file (default: RESULTS, or REVISED's file)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    args = parser.parse_args()
    if args.out is None:
        revised = REVISED.get(parse_precision(args.precision).value) if not args.table else None
        args.out = revised[-1][0] if revised else RESULTS
    if args.table:
        print(table(args.out))
        return
    run(args)


if __name__ == "__main__":
    sys.exit(main())
