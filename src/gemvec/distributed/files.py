"""``gemvec embed --ray``: Parquet or JSON Lines files in, Parquet files of (id, embedding) out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gemvec.distributed.cluster import ray_module
from gemvec.distributed.dataset import embed_dataset
from gemvec.errors import InputError
from gemvec.prompts import Task

_READERS = {".parquet": "read_parquet", ".jsonl": "read_json", ".json": "read_json", ".ndjson": "read_json"}


def input_format(paths: Sequence[str | os.PathLike[str]]) -> str:
    """``read_parquet`` or ``read_json``: the Ray Data reader for these files, or folders of them."""
    suffixes: set[str] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"{path} does not exist.")
        found = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        suffixes |= {p.suffix.lower() for p in found if not p.name.startswith((".", "_"))}
    readers = {_READERS.get(suffix) for suffix in suffixes}
    if len(readers) != 1 or None in readers:
        raise InputError(
            f"--input must be Parquet (.parquet) or JSON Lines (.jsonl) files, or folders of one of "
            f"them; found {', '.join(sorted(suffixes)) or 'no files'}."
        )
    return readers.pop()  # type: ignore[return-value]


def embed_files(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    text_column: str = "text",
    id_column: str = "id",
    titles_column: str | None = "title",
    **options: Any,
) -> int:
    """Embed the ``text_column`` of Parquet or JSON Lines files into Parquet files of
    ``id_column`` + ``embedding`` under the folder ``output``; return the rows written.

    ``titles_column`` is used when the files have it (document task only); ``options`` are
    :func:`~gemvec.distributed.embed_dataset`'s.
    """
    ray = ray_module()
    if Path(output).exists() and any(Path(output).iterdir()):
        raise InputError(f"{output} is not empty; write the vectors to a new folder.")
    ds = _read(ray, input_format(inputs), [str(Path(p).resolve()) for p in inputs])
    names = ds.schema().names
    missing = [c for c in (text_column, id_column) if c not in names]
    if missing:
        raise InputError(
            f"The input has no column {', '.join(map(repr, missing))} (it has {', '.join(names)}); "
            "name them with --text-column and --id-column."
        )
    documents = options.get("task", Task.DOCUMENT.value) == Task.DOCUMENT.value and not options.get("prompt")
    titles = titles_column if documents and titles_column in names else None
    embedded = embed_dataset(
        ds, text_column=text_column, titles_column=titles, keep_columns=[id_column], **options
    )
    embedded.write_parquet(str(Path(output).resolve()), ray_remote_args={"num_cpus": 0})
    return _parquet_rows(Path(output))


def _read(ray: Any, reader: str, paths: list[str]) -> Any:
    """The input as a Ray Dataset whose reading reserves no CPU.

    The actors take every CPU of the cluster, and a task that waited for one would never run
    (Ray Data then waits forever); Ray Data bounds the reads by memory instead. Ray's newer
    Parquet reader (``DataContext.use_datasource_v2``, the default in Ray 2.60) lists the files
    in a task of its own that reserves a CPU whatever ``num_cpus`` says, so Parquet is read with
    the other one; the setting is this process's and is put back at once (the dataset keeps a
    copy of the context it was made with).
    """
    context = ray.data.DataContext.get_current()
    v2 = getattr(context, "use_datasource_v2", None)
    if reader == "read_parquet" and v2:
        context.use_datasource_v2 = False
    try:
        return getattr(ray.data, reader)(paths, num_cpus=0)
    finally:
        if v2 is not None:
            context.use_datasource_v2 = v2


def _parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in folder.glob("*.parquet"))
