"""``gemvec quantize``: write an int8 / int4 copy of a checkpoint that reloads without re-quantising."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gemvec.cli.options import ModelOption, friendly_errors, load_embedder
from gemvec.errors import InputError


@friendly_errors
def quantize(
    output: Annotated[Path, typer.Argument(help="New folder for the quantised checkpoint.")],
    precision: Annotated[str, typer.Option("--precision", "-p", help="int8, int4 or int8-dynamic.")] = "int8",
    model: ModelOption = None,
) -> None:
    """Quantise a checkpoint's weights and save it; load the folder like any model."""
    from gemvec.precision import parse_precision

    if parse_precision(precision).weight_bits is None:
        raise InputError(f"--precision must be int8, int4 or int8-dynamic to quantise, got {precision!r}.")
    if output.exists() and any(output.iterdir()):
        raise InputError(f"{output} exists and is not empty; choose a new folder.")
    embedder = load_embedder(model, precision)
    folder = embedder.save(output)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    typer.echo(f"wrote {embedder.precision.value} checkpoint to {folder} ({size / 2**20:.0f} MiB)", err=True)
