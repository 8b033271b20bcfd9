"""``gemvec serve``: the HTTP server (OpenAI-compatible embeddings, search, ask, a web page)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gemvec.cli.options import LlmOption, ModelOption, PrecisionOption, friendly_errors, load_embedder
from gemvec.errors import InputError, require

if TYPE_CHECKING:
    from gemvec.embedder import Embedder
    from gemvec.store import Collection
    from gemvec.store.watch import FolderWatcher


@friendly_errors
def serve(
    host: Annotated[
        str,
        typer.Option("--host", help="Address to bind. Loopback by default; set --api-key before widening."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    model: ModelOption = None,
    precision: PrecisionOption = None,
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection",
            "-c",
            help="Collection for /v1/search and /v1/ask (name or path).",
            envvar="GEMVEC_COLLECTION",
            show_envvar=True,
        ),
    ] = None,
    llm: LlmOption = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Require 'Authorization: Bearer KEY' on /v1/* and /metrics.",
            envvar="GEMVEC_API_KEY",
            show_envvar=True,
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Allow browser calls from this origin (repeat). Off by default."),
    ] = None,
    max_batch_tokens: Annotated[
        int,
        typer.Option("--max-batch-tokens", min=1, help="Token budget when merging requests into a batch."),
    ] = 16384,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            "--batch-wait-ms",
            min=0,
            help="Under load, wait up to this long for answered clients' next requests to join a batch.",
        ),
    ] = 20.0,
    read_timeout: Annotated[
        float,
        typer.Option("--read-timeout", min=0.1, help="Seconds a client has to send a whole request."),
    ] = 30.0,
    keep_alive: Annotated[
        float,
        typer.Option(
            "--keep-alive",
            min=0.1,
            help="Seconds an idle kept-alive connection stays open (above clients' idle expiry).",
        ),
    ] = 15.0,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=1, help="Open connections past which requests get 503.")
    ] = 256,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    watch: Annotated[
        list[Path] | None,
        typer.Option("--watch", help="Keep the collection in step with this folder while serving (repeat)."),
    ] = None,
) -> None:
    """Serve embeddings at /v1/embeddings (OpenAI API), search and ask over a collection, and a page at /."""
    require("fastapi", "server", "gemvec serve")
    from gemvec.server import ServerSettings
    from gemvec.server import serve as run_server

    embedder, coll = _load(model, precision, collection)
    settings = ServerSettings(
        api_key=api_key or None,
        cors_origins=tuple(cors_origin or ()),
        max_batch_tokens=max_batch_tokens,
        batch_gather_s=batch_wait_ms / 1000,
        read_timeout_s=read_timeout,
        keep_alive_s=keep_alive,
        max_connections=max_connections,
    )
    where = f" on http://{host}:{port}/" if port else ""
    served = f"{embedder.model_name}" + (f" and collection {coll.name}" if coll is not None else "")
    typer.secho(f"gemvec: serving {served}{where}", err=True, fg="green")
    watcher = _start_watcher(coll, watch) if watch else None
    try:
        run_server(
            embedder,
            host=host,
            port=port,
            settings=settings,
            collection=coll,
            generator=llm if coll is not None else None,
            log_level=log_level,
        )
    finally:
        if watcher is not None:
            watcher.stop()


def _load(
    model: str | None, precision: str | None, collection: str | None
) -> tuple[Embedder, Collection | None]:
    """The embedder and, with ``-c``, the collection sharing it (the collection's model by default)."""
    if collection is None:
        return load_embedder(model, precision), None
    from gemvec.store import Collection

    coll = Collection.open(collection, model=model, precision=precision)
    return coll.embedder, coll


def _start_watcher(coll: Collection | None, paths: list[Path]) -> FolderWatcher:
    """Apply file changes under ``paths`` from a background thread, on a connection of its own:
    the server's connection sees each batch once it is committed."""
    if coll is None:
        raise InputError("--watch keeps a collection in step with folders: give the collection with -c.")
    from gemvec.store import Collection
    from gemvec.store.watch import FolderWatcher, watch_roots

    own = Collection.open(coll.folder, embedder=coll.embedder)
    return FolderWatcher(own, watch_roots(own, paths)).start()
