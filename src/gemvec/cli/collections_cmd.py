"""``gemvec collections list|info|check|repair|delete``: looking after collections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gemvec.cli.options import CollectionOption, JsonOption, echo_json, echo_json_lines, friendly_errors
from gemvec.errors import GemvecError

collections_app = typer.Typer(
    help="List, inspect, check, repair and delete collections.", no_args_is_help=True
)


@collections_app.command("list")
@friendly_errors
def list_cmd(as_json: JsonOption = False) -> None:
    """Collections under $GEMVEC_HOME/collections. --json: one object per line.

    A collection that cannot be opened is listed with its error, and the others still are.
    """
    from gemvec.store import list_collections

    infos = (_info_or_error(folder) for folder in list_collections())
    if as_json:
        echo_json_lines(infos)
        return
    for info in infos:
        if "error" in info:
            typer.secho(f"{info['name']}\terror: {info['error']}", fg="yellow")
        else:
            typer.echo(
                f"{info['name']}\t{info['documents']} documents\t{info['chunks']} chunks\t{info['index']}"
            )


@collections_app.command("info")
@friendly_errors
def info_cmd(collection: CollectionOption, as_json: JsonOption = False) -> None:
    """Documents, chunks, model, dim, vector precision and index of a collection."""
    info = _info(collection)
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")


@collections_app.command("check")
@friendly_errors
def check_cmd(collection: CollectionOption, as_json: JsonOption = False) -> None:
    """Integrity report (database, keyword index, vector index); exit 1 when there are problems."""
    from gemvec.store.integrity import check
    from gemvec.store.paths import resolve_collection

    report = check(resolve_collection(collection))
    if as_json:
        echo_json(report.to_dict())
    else:
        for key, value in report.counts.items():
            typer.echo(f"{key}: {value}")
        for note in report.notes:
            typer.echo(f"note: {note}")
        for problem in report.problems:
            typer.secho(f"problem: {problem}", fg="red")
        typer.echo("ok" if report.ok else "run `gemvec collections repair` to salvage what is readable")
    if not report.ok:
        raise typer.Exit(1)


@collections_app.command("repair")
@friendly_errors
def repair_cmd(collection: CollectionOption, as_json: JsonOption = False) -> None:
    """Salvage every readable document into a new database and rebuild the indexes; keep the old file."""
    from gemvec.store import Collection
    from gemvec.store.repair import repair_collection

    report = repair_collection(collection)
    with Collection.open(collection) as coll:
        _ = coll.index  # rebuilt from the salvaged vectors and saved
    if as_json:
        echo_json(report.to_dict())
        return
    typer.echo(
        f"kept {report.documents_kept} documents ({report.chunks_kept} chunks), lost {report.documents_lost} "
        f"({report.chunks_lost} chunks); the damaged database is kept as {report.damaged_copy}"
    )
    if report.files_to_reread:
        typer.echo(
            f"{report.files_to_reread} file(s) lost documents: `gemvec sync -c {collection}` reads them again"
        )


@collections_app.command("delete")
@friendly_errors
def delete_cmd(
    collection: CollectionOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a collection folder and everything in it."""
    from gemvec.store import delete_collection, resolve_collection

    if not yes and not typer.confirm(f"Delete collection {resolve_collection(collection)}?"):
        raise typer.Exit(1)
    typer.echo(f"deleted {delete_collection(collection)}", err=True)


def _info(collection: str | Path) -> dict[str, Any]:
    from gemvec.store import Collection

    with Collection.open(collection) as coll:
        return coll.info()


def _info_or_error(folder: Path) -> dict[str, Any]:
    try:
        return _info(folder)
    except GemvecError as exc:
        return {"name": folder.name, "path": str(folder), "error": str(exc)}
