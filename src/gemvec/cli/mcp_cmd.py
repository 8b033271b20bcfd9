"""``gemvec mcp``: serve a collection's search, ask and info to MCP clients (stdio or streamable HTTP)."""

from __future__ import annotations

from typing import Annotated

import typer

from gemvec.cli.options import CollectionOption, LlmOption, ModelOption, PrecisionOption, friendly_errors


@friendly_errors
def mcp(
    collection: CollectionOption,
    llm: LlmOption = None,
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Also offer an add_texts tool (read-only otherwise).")
    ] = False,
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at http://127.0.0.1:PORT/mcp, not stdio.")
    ] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port for --http.")] = 8765,
    model: ModelOption = None,
    precision: PrecisionOption = None,
) -> None:
    """Serve a collection to MCP clients (desktop apps, IDEs, agents): search, ask and info tools.

    Speaks MCP over stdin/stdout, for a client that starts it, e.g. {"command": "gemvec",
    "args": ["mcp", "-c", "notes"]}; logs go to stderr.
    """
    from gemvec.integrations.mcp_server import build_server, run  # without the extra: a clear error
    from gemvec.store import Collection

    with Collection.open(collection, model=model, precision=precision) as coll:
        _ = coll.embedder  # load now: a missing model fails here, not at the client's first search
        server = build_server(coll, generator=llm, allow_writes=allow_writes)
        where = f"streamable HTTP at http://127.0.0.1:{port}/mcp" if http else "stdio"
        mode = "read-write" if allow_writes else "read-only"
        typer.secho(
            f"gemvec: MCP server for collection {coll.name} ({mode}) on {where}", fg="green", err=True
        )
        run(server, http_port=port if http else None)
