"""``gemvec embed``: texts from arguments, files or stdin -> JSON Lines or a .npy file.

With ``--ray``: Parquet or JSON Lines files (or folders of them) -> a folder of Parquet files
(id, embedding), embedded on a Ray cluster (:mod:`gemvec.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from gemvec.cli.options import (
    BatchSizeOption,
    DimOption,
    ModelOption,
    PrecisionOption,
    RayActorsOption,
    RayAddressOption,
    RayCpusOption,
    RayGpusOption,
    RayOption,
    echo_json_lines,
    friendly_errors,
    join_ray,
    load_embedder,
)
from gemvec.errors import InputError
from gemvec.prompts import parse_task


@dataclass
class InputText:
    id: object  # as the JSON line gives it, else a running number
    text: str
    title: str | None = None


def parse_lines(content: str, source: str, start_id: int = 0) -> list[InputText]:
    """One text per line, or JSON Lines objects with `text` (and optional `id`, `title`).

    The format is decided by the first non-blank line: JSON Lines if it starts with ``{``.
    Blank lines are skipped in both formats. Texts without an id are numbered from ``start_id``.
    """
    from gemvec.tabular import parse_records, sniff_format

    items: list[InputText] = []
    for number, record in parse_records(content, sniff_format(content), source):
        text, title = record.get("text"), record.get("title")
        if not isinstance(text, str):
            raise InputError(f'{source}:{number}: each JSON line needs a string "text" field.')
        row_id = record.get("id", start_id + len(items))
        items.append(InputText(row_id, text, title if isinstance(title, str) else None))
    return items


def _read_inputs(texts: list[str], files: list[Path]) -> list[InputText]:
    """Argument texts first ('-' reads stdin in place), then each --input file."""
    from gemvec.tabular import read_text, source_name

    items: list[InputText] = []
    for text in texts:
        if text == "-":
            items += parse_lines(read_text("-"), "<stdin>", len(items))
        else:
            items.append(InputText(len(items), text))
    for path in files:
        items += parse_lines(read_text(path), source_name(path), len(items))
    return items


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
        typer.Option(
            "--output",
            "-o",
            help="Write a float32 .npy (N, dim), or .jsonl, instead of JSON Lines on stdout "
            "(--ray: a folder of Parquet files).",
        ),
    ] = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = None,
    ray_cpus: RayCpusOption = 1.0,
    ray_gpus: RayGpusOption = None,
    text_column: Annotated[str, typer.Option(help="--ray: the column holding the text.")] = "text",
    id_column: Annotated[str, typer.Option(help="--ray: the column of ids written with each vector.")] = "id",
    title_column: Annotated[
        str, typer.Option(help="--ray: the column of titles, if any (documents).")
    ] = "title",
) -> None:
    """Embed texts. Prints one JSON object per line: {"id": ..., "embedding": [...]}.

    With --ray: embeds -i Parquet or JSON Lines files (or folders of them) on a Ray cluster into
    the folder -o, as Parquet files of (id, embedding).
    """
    if task.lower() not in ("document", "none"):
        parse_task(task)  # fail before loading the model
    if ray and (texts or not input_files or output is None):
        raise InputError("With --ray, give the input as -i FILE_OR_FOLDER and the output folder as -o.")
    pool = join_ray(ray, ray_address, ray_actors, ray_cpus, ray_gpus)
    if pool is not None and input_files and output is not None:
        from gemvec.distributed import embed_files

        rows = embed_files(
            input_files,
            output,
            text_column=text_column,
            id_column=id_column,
            titles_column=title_column,
            task=task.lower(),
            dim=dim,
            model=model,
            precision=precision,
            num_actors=pool.actors,
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
        )
        typer.echo(f"wrote {rows} vectors to {output} (Parquet: {id_column}, embedding)", err=True)
        return
    if output is not None and output.suffix not in (".npy", ".jsonl"):
        raise InputError(f"--output must end in .npy or .jsonl, got {output.name}.")
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
    rows = (
        {"id": item.id, "embedding": vector.tolist()} for item, vector in zip(items, vectors, strict=True)
    )
    if output is None:
        echo_json_lines(rows)
        return
    if output.suffix == ".npy":
        import numpy as np

        np.save(output, vectors)
    else:
        from gemvec.tabular import write_rows

        write_rows(list(rows), output)
    typer.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 to {output}", err=True)
