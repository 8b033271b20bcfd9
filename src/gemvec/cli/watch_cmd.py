"""``gemvec watch``: keep a collection in step with folders while their files change."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gemvec.cli.options import (
    BatchSizeOption,
    CollectionOption,
    JsonOption,
    ModelOption,
    PrecisionOption,
    echo_json_lines,
    friendly_errors,
)

if TYPE_CHECKING:
    from gemvec.store import IngestReport


@friendly_errors
def watch(
    collection: CollectionOption,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files and folders to watch (default: those the collection was indexed from)."),
    ] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Glob of files to take.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Glob of files to skip.")] = None,
    debounce_ms: Annotated[
        int, typer.Option("--debounce-ms", min=50, help="Gather changes at most this long, then apply them.")
    ] = 1600,
    as_json: JsonOption = False,
    model: ModelOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = 32,
) -> None:
    """Index folders, then apply every file created, edited, moved or deleted there within seconds.

    Starts with a sync, so changes made while nothing watched (or after a crash) are caught up.
    Without PATH, watches the folders the collection was indexed from, with their --include and
    --exclude. Stop with Ctrl-C (or SIGTERM): the batch being applied is committed first.
    """
    from gemvec.store import Collection
    from gemvec.store.watch import FolderWatcher, watch_roots  # first: without the extra, stop here

    if paths:
        coll = Collection.create(collection, model=model, precision=precision, exist_ok=True)
    else:
        coll = Collection.open(collection, model=model, precision=precision)
    with coll:
        roots = watch_roots(coll, paths or (), include=include, exclude=exclude)

        def ready() -> None:
            where = ", ".join(str(root.path) for root in roots)
            typer.secho(f"{coll.name}: watching {where} (Ctrl-C stops)", fg="green", err=True)

        def applied(report: IngestReport) -> None:
            r = report.to_dict()
            if as_json:  # one line per applied batch, flushed: a reader of the pipe sees it at once
                echo_json_lines([r])
                sys.stdout.flush()
                return
            typer.echo(
                f"{time.strftime('%H:%M:%S')} {coll.name}: {r['added']} added, {r['updated']} updated, "
                f"{r['removed']} removed; {r['chunks']} chunks embedded.",
                err=True,
            )
            for path, error in r["failed"]:
                typer.secho(f"skipped {path}: {error}", fg="yellow", err=True)

        watcher = FolderWatcher(
            coll, roots, debounce_ms=debounce_ms, batch_size=batch_size, on_batch=applied, on_ready=ready
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
        try:
            watcher.run()
        except KeyboardInterrupt:
            typer.echo(f"{coll.name}: stopped watching", err=True)
