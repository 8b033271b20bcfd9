"""``gemvec eval``: MTEB-style evaluation of dataset folders, a table on screen and optional JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperCommand

from gemvec.cli.options import (
    BatchSizeOption,
    DimOption,
    ModelOption,
    PrecisionOption,
    friendly_errors,
    load_embedder,
)
from gemvec.errors import InputError

TYPE_HELP = "retrieval, sts, classification, clustering or bitext (default: detected from the files)."


@friendly_errors
def eval_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Dataset folders or files; a folder of datasets expands.")
    ],
    task_type: Annotated[str | None, typer.Option("--type", "-t", help=TYPE_HELP)] = None,
    dim: DimOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
    batch_size: BatchSizeOption = 32,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Quick run: first N queries / pairs / test rows."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the results as a JSON array on stdout, the table on stderr."),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the results as a JSON array to this file.")
    ] = None,
    queries_from: Annotated[
        Path | None,
        typer.Option(
            "--queries-from",
            help="Retrieval: take the queries (same ids) from this folder, e.g. "
            "another language's XQuAD, for cross-lingual retrieval.",
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", help="Replace the model's prompt for queries and all non-document texts."),
    ] = None,
    document_prompt: Annotated[
        str | None,
        typer.Option(
            "--document-prompt", help="Replace the document prompt; '{title}' in it becomes each title."
        ),
    ] = None,
    samples_per_label: Annotated[
        int, typer.Option("--samples-per-label", min=1, help="Classification: train examples per label.")
    ] = 8,
    experiments: Annotated[
        int, typer.Option("--experiments", min=1, help="Classification / clustering: repetitions averaged.")
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling and of the classifiers.")] = 42,
    sampling: Annotated[
        str, typer.Option("--sampling", help="Few-shot re-shuffling as MTEB 'v2' (2.x) or 'v1' (1.x).")
    ] = "v2",
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Embedding cache folder (default: ~/.cache/gemvec/eval)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")
    ] = False,
) -> None:
    """Evaluate the model on MTEB-style datasets (see ../shared/data/README.md for the layouts).

    Prints a table; main scores are on MTEB's 0-1 scale. --json: the results as a JSON array.

    Embeddings are cached on disk at full size: re-running with another --dim encodes nothing.
    """
    from gemvec.eval import (
        ClassificationOptions,
        ClusteringOptions,
        EvalOptions,
        Evaluator,
        default_cache_dir,
        discover,
    )

    if sampling not in ("v1", "v2"):
        raise InputError(f"--sampling must be v1 or v2, got {sampling!r}.")
    sources = [s for path in paths for s in discover(path, task_type, queries_from=queries_from)]
    if queries_from is not None and all(s.queries_from is None for s in sources):
        raise InputError("--queries-from applies to retrieval datasets, and none was given.")
    loaded = [(source, source.load()) for source in sources]  # fail on bad data before loading the model
    options = EvalOptions(
        dim=dim,
        limit=limit,
        batch_size=batch_size,
        prompt=prompt,
        document_prompt=document_prompt,
        classification=ClassificationOptions(samples_per_label, experiments, seed, sampling),  # type: ignore[arg-type]
        clustering=ClusteringOptions(experiments=experiments, seed=seed),
    )
    results = []
    with Evaluator(
        load_embedder(model, precision),
        options,
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
    ) as evaluator:
        for source, data in loaded:
            results.append(evaluator.run(source, data))
            typer.echo(f"{source.name}: {results[-1].main_score:.4f} ({results[-1].seconds:.1f} s)", err=True)
    _print_table(results, to_stderr=as_json)
    text = json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False) + "\n"
    if as_json:
        sys.stdout.write(text)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(results)} result(s) to {output}", err=True)


class EvalCommand(TyperCommand):
    """``gemvec eval``, still accepting the deprecated ``--json FILE`` and ``--json -``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, legacy_json(args))


def legacy_json(args: list[str]) -> list[str]:
    """Rewrite ``--json FILE`` as ``--output FILE`` and ``--json -`` as ``--json``, warning on stderr.

    ``--json`` used to take the results file; it is a flag now. A token after it that is a dataset
    (a folder, or an existing .tsv / .jsonl file) or an option is left alone.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        if arg.startswith("--json="):
            value, i = arg.partition("=")[2], i + 1
        elif arg == "--json" and i + 1 < len(args) and _is_results_file(args[i + 1]):
            value, i = args[i + 1], i + 2
        else:
            out.append(arg)
            i += 1
            continue
        new = ["--json"] if value == "-" else ["--output", value]
        typer.secho(f"warning: `--json {value}` is deprecated; use `{' '.join(new)}`.", fg="yellow", err=True)
        out += new
    return out


def _is_results_file(token: str) -> bool:
    """Whether the token after ``--json`` is the old form's results file (``-`` is stdout)."""
    if token == "-":
        return True
    if token.startswith("-"):
        return False
    path = Path(token)
    return not (path.is_dir() or (path.is_file() and path.suffix in (".tsv", ".jsonl")))


_SHOWN = (
    "ndcg_at_10",
    "recall_at_10",
    "mrr_at_10",
    "cosine_spearman",
    "cosine_pearson",
    "accuracy",
    "f1",
    "v_measure",
    "precision",
    "recall",
)


def _print_table(results, *, to_stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from gemvec.eval import MAIN_SCORE, TaskType

    table = Table(title="gemvec eval", title_justify="left")
    for column, justify in [
        ("dataset", "left"),
        ("type", "left"),
        ("main score", "right"),
        ("other metrics", "left"),
        ("dim", "right"),
        ("precision", "left"),
        ("seconds", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in results:
        main_key = MAIN_SCORE[TaskType(r.type)]
        others = ", ".join(f"{k} {r.metrics[k]:.4f}" for k in _SHOWN if k in r.metrics and k != main_key)
        table.add_row(
            r.dataset, r.type, f"{r.main_score:.4f}", others, str(r.dim), r.precision, f"{r.seconds:.1f}"
        )
    Console(stderr=to_stderr, width=None if sys.stdout.isatty() else 160).print(table)
