"""The Typer application and the options every subcommand shares."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from gemvec import __version__
from gemvec.errors import GemvecError

app = typer.Typer(
    name="gemvec",
    help="Local multilingual embeddings with EmbeddingGemma-300M: embed, search, ask, classify, cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Checkpoint folder or hub id.", envvar="GEMVEC_MODEL", show_envvar=True
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(
        "--precision", "-p", help="float32, bfloat16, int8 or int4 (default: $GEMVEC_PRECISION, else by CPU)."
    ),
]
DimOption = Annotated[
    int | None, typer.Option("--dim", "-d", help="Matryoshka dimension: 768, 512, 256 or 128.")
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Texts per forward pass.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gemvec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """gemvec: EmbeddingGemma-300M embeddings, search, RAG, classification and clustering, offline."""


F = TypeVar("F", bound=Callable)


def friendly_errors(func: F) -> F:
    """Turn GemvecError (and Ctrl-C) into one clear line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
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


def load_embedder(model: str | None, precision: str | None):
    """Load the Embedder for a command (imported lazily: `gemvec --help` stays instant)."""
    from gemvec.embedder import Embedder

    return Embedder.load(model, precision)


# Subcommands register themselves on `app` when imported.
from gemvec.cli import (  # noqa: E402, F401
    classify_cmd,
    cluster_cmd,
    collection_cmds,
    embed,
    eval_cmd,
    quantize_cmd,
    serve_cmd,
)
