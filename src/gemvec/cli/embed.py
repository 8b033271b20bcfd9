"""``gemvec embed``: texts from arguments, files or stdin -> JSON Lines or a .npy file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gemvec.cli.app import (
    BatchSizeOption,
    DimOption,
    ModelOption,
    PrecisionOption,
    app,
    friendly_errors,
    load_embedder,
)
from gemvec.errors import InputError
from gemvec.prompts import parse_task


@dataclass
class InputText:
    id: str | int
    text: str
    title: str | None = None


def parse_lines(lines: Iterable[str], source: str, start_id: int = 0) -> list[InputText]:
    """One text per line, or JSON Lines objects with `text` (and optional `id`, `title`).

    The format is decided by the first non-blank line: JSON Lines if it starts with ``{``.
    Blank lines are skipped in both formats.
    """
    items: list[InputText] = []
    is_jsonl: bool | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if is_jsonl is None:
            is_jsonl = line.lstrip().startswith("{")
        if not is_jsonl:
            items.append(InputText(start_id + len(items), line))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}:{number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f'{source}:{number}: each JSON line needs a string "text" field.')
        title = record.get("title")
        items.append(InputText(record.get("id", start_id + len(items)), record["text"], title))
    return items


def _read_inputs(texts: list[str], files: list[Path]) -> list[InputText]:
    items: list[InputText] = []
    for text in texts:
        if text == "-":
            items += parse_lines(sys.stdin, "<stdin>", len(items))
        else:
            items.append(InputText(len(items), text))
    for path in files:
        if str(path) == "-":
            items += parse_lines(sys.stdin, "<stdin>", len(items))
            continue
        try:
            with open(path, encoding="utf-8") as f:
                items += parse_lines(f, str(path), len(items))
        except FileNotFoundError:
            raise InputError(f"Input file {path} does not exist.") from None
        except UnicodeDecodeError:
            raise InputError(
                f"{path} is not UTF-8 text; convert it (e.g. iconv -t UTF-8) and retry."
            ) from None
    return items


@app.command()
@friendly_errors
def embed(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed; '-' reads stdin.")] = None,
    input_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--input", "-i", help="File with one text per line, or JSON Lines with 'text'; '-' = stdin."
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            "--task", "-t", help="Prompt: document, query, similarity, classification, ... or none."
        ),
    ] = "document",
    dim: DimOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
    batch_size: BatchSizeOption = 32,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write a float32 .npy (N, dim) instead of JSON Lines."),
    ] = None,
) -> None:
    """Embed texts. Prints one JSON object per line: {"id": ..., "embedding": [...]}."""
    if task.lower() not in ("document", "none"):
        parse_task(task)  # fail before loading the model
    items = _read_inputs(list(texts or []), list(input_files or []))
    if not items:
        raise InputError("No texts given. Pass texts as arguments, --input FILE, or '-' to read stdin.")
    embedder = load_embedder(model, precision)
    options = dict(dim=dim, batch_size=batch_size, show_progress=None if len(items) > 64 else False)
    strings = [item.text for item in items]
    if task.lower() == "document":
        vectors = embedder.encode_document(strings, titles=[item.title for item in items], **options)
    elif task.lower() == "none":
        vectors = embedder.encode(strings, **options)
    else:
        vectors = embedder.encode(strings, task=task, **options)
    if output is not None:
        if output.suffix != ".npy":
            raise InputError(f"--output must end in .npy, got {output.name}.")
        np.save(output, vectors)
        typer.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 to {output}", err=True)
        return
    write = sys.stdout.write
    for item, vector in zip(items, vectors, strict=True):
        write(json.dumps({"id": item.id, "embedding": vector.tolist()}) + "\n")
