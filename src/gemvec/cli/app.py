"""The ``gemvec`` Typer application: every subcommand registered in one place.

Command modules define plain functions (and, for command groups, their own Typer); they import
shared options from :mod:`gemvec.cli.options` and nothing from here, so no cli module imports
one that imports it back.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gemvec import __version__
from gemvec.cli import (
    classify_cmd,
    cluster_cmd,
    collection_cmds,
    collections_cmd,
    embed,
    eval_cmd,
    mcp_cmd,
    quantize_cmd,
    serve_cmd,
    watch_cmd,
)

app = typer.Typer(
    name="gemvec",
    help="Local multilingual embeddings with EmbeddingGemma-300M: embed, search, ask, classify, cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


app.command()(embed.embed)
app.command()(collection_cmds.index)
app.command("sync")(collection_cmds.sync_cmd)
app.command()(collection_cmds.search)
app.command()(collection_cmds.ask)
app.add_typer(collections_cmd.collections_app, name="collections")
app.add_typer(classify_cmd.classify_app, name="classify")
app.command()(cluster_cmd.cluster)
app.command("eval", cls=eval_cmd.EvalCommand)(eval_cmd.eval_command)
app.command()(quantize_cmd.quantize)
app.command()(serve_cmd.serve)
app.command()(watch_cmd.watch)
app.command()(mcp_cmd.mcp)
