"""What the subcommands share: options, data-file reading, JSON output and error handling.

Command modules import from here and never from each other or from :mod:`gemvec.cli.app`,
which imports them to register their commands. Heavy modules (the model, the store) are
imported inside functions, so ``gemvec --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gemvec.errors import GemvecError, InputError

if TYPE_CHECKING:
    from gemvec.distributed import ActorPool
    from gemvec.embedder import Embedder
    from gemvec.tabular import Table

# -- the model ----------------------------------------------------------------------------------

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Checkpoint folder or hub id.", envvar="GEMVEC_MODEL", show_envvar=True
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(
        "--precision",
        "-p",
        help="float32, bfloat16, int8, int4 or int8-dynamic (default: $GEMVEC_PRECISION, else by CPU).",
    ),
]
DimOption = Annotated[
    int | None, typer.Option("--dim", "-d", help="Matryoshka dimension: 768, 512, 256 or 128.")
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Texts per forward pass.")]

# -- collections --------------------------------------------------------------------------------

CollectionOption = Annotated[
    str,
    typer.Option(
        "--collection",
        "-c",
        help="Collection name (under $GEMVEC_HOME/collections) or path (./dir).",
        envvar="GEMVEC_COLLECTION",
        show_envvar=True,
    ),
]

# -- the generator (ask, serve, mcp) ----------------------------------------------------------

LlmOption = Annotated[
    str | None,
    typer.Option(
        "--llm",
        help="Generator of answers: openai:MODEL@BASE_URL, gguf:PATH or smollm2 (loaded on first ask).",
        envvar="GEMVEC_LLM",
        show_envvar=True,
    ),
]

# -- Ray (embed --ray, index --ray) -------------------------------------------------------------

RayOption = Annotated[
    bool,
    typer.Option(
        # "\\[" keeps Rich, which renders the help, from taking "[ray]" for a style tag and dropping it
        "--ray",
        help="Embed on a Ray cluster: a pool of actors, each holding the model (gemvec\\[ray]).",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="The cluster --ray joins: HOST:PORT or ray://HOST:PORT; 'auto' (default) finds one started "
        "on this machine with `ray start`; 'local' starts a private one in this process.",
        envvar="RAY_ADDRESS",
        show_envvar=True,
    ),
]
RayActorsOption = Annotated[
    int | None,
    typer.Option("--ray-actors", min=1, help="Model actors with --ray (default: fill the cluster)."),
]
RayCpusOption = Annotated[
    float, typer.Option("--ray-cpus", min=0.01, help="CPUs each actor reserves (--ray).")
]
RayGpusOption = Annotated[
    float | None,
    typer.Option(
        "--ray-gpus", min=0, help="GPUs each actor reserves (--ray; default: 1 if the cluster has GPUs)."
    ),
]

# -- data files (classify, cluster) -------------------------------------------------------------

DataArgument = Annotated[Path, typer.Argument(help="CSV, TSV, JSON Lines, JSON or .txt file; '-' = stdin.")]
TextColumnOption = Annotated[str, typer.Option("--text-column", help="Column holding the text.")]
LabelColumnOption = Annotated[str, typer.Option("--label-column", help="Column holding the label.")]
IdColumnOption = Annotated[
    str, typer.Option("--id-column", help="Column holding row ids (else row numbers).")
]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="csv, tsv, jsonl, json or txt (default: from the suffix).")
]

# -- output -------------------------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of text.")]


def echo_json(value: Any) -> None:
    """One JSON document on stdout (a summary, a report, an answer)."""
    sys.stdout.write(json.dumps(strict_json(value), ensure_ascii=False, indent=2, allow_nan=False) + "\n")


def echo_json_lines(values: Iterable[Any]) -> None:
    """One compact JSON object per line on stdout (hits, collections, embeddings), as they come."""
    for value in values:
        sys.stdout.write(json.dumps(strict_json(value), ensure_ascii=False, allow_nan=False) + "\n")


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no such numbers, and parsers reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


# -- helpers ------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn GemvecError (and Ctrl-C) into one clear line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GemvecError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", fg="yellow", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # e.g. `gemvec embed ... | head`
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def load_embedder(model: str | None, precision: str | None) -> Embedder:
    """Load the Embedder for a command (imported lazily: `gemvec --help` stays instant)."""
    from gemvec.embedder import Embedder

    return Embedder.load(model, precision)


def read_data(
    path: Path,
    text_column: str,
    label_column: str | None,
    id_column: str,
    format: str | None,
    need_labels: bool,
) -> Table:
    """A DATA argument as a table; stdin is JSON Lines unless ``--format`` says otherwise."""
    from gemvec.tabular import read_table

    return read_table(
        path,
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        require_labels=need_labels,
        format=format or ("jsonl" if str(path) == "-" else None),
    )


def join_ray(
    ray: bool, address: str | None, actors: int | None, cpus: float, gpus: float | None
) -> ActorPool | None:
    """With ``--ray``: connect to the cluster and return the actor pool asked for; else None.

    Ray options without ``--ray`` are refused rather than ignored.
    """
    if not ray:
        if actors is not None or gpus is not None or cpus != 1.0:
            raise InputError("--ray-actors, --ray-cpus and --ray-gpus go with --ray.")
        return None
    from gemvec.distributed import ActorPool, connect

    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # no INFO lines; progress bars on a terminal
    connect(address)
    return ActorPool(actors, cpus, gpus)
