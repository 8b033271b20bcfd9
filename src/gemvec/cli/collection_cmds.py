"""``gemvec index``, ``sync``, ``search`` and ``ask``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gemvec.cli.options import (
    BatchSizeOption,
    CollectionOption,
    DimOption,
    JsonOption,
    LlmOption,
    ModelOption,
    PrecisionOption,
    RayActorsOption,
    RayAddressOption,
    RayCpusOption,
    RayGpusOption,
    RayOption,
    echo_json,
    echo_json_lines,
    friendly_errors,
    join_ray,
)
from gemvec.errors import InputError
from gemvec.progress import progress_bar

ModeOption = Annotated[str, typer.Option("--mode", help="dense, keyword (BM25) or hybrid (RRF of both).")]
FilterOption = Annotated[
    list[str] | None,
    typer.Option("--filter", "-f", help="Metadata filter KEY=VALUE (repeat; same key = any of)."),
]


def parse_filters(items: list[str] | None) -> dict[str, Any] | None:
    filters: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"Filter {item!r} must look like KEY=VALUE.")
        filters.setdefault(key.strip(), []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in filters.items()} or None


def _progress_bar(enabled: bool):
    """Chunks embedded, total, rate and ETA on stderr (kept on screen when done), or None."""
    return progress_bar("embedding chunks", enabled=enabled, transient=False, show_rate=True)


def _print_report(report, coll) -> None:
    r = report.to_dict()
    typer.echo(
        f"{coll.name}: {r['added']} added, {r['updated']} updated, {r['unchanged']} unchanged, "
        f"{r['duplicates']} duplicates, {r['removed']} removed; {r['chunks']} chunks embedded.",
        err=True,
    )
    for path, error in r["failed"]:
        typer.secho(f"skipped {path}: {error}", fg="yellow", err=True)


@friendly_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to index (recursively).")],
    collection: CollectionOption,
    include: Annotated[list[str] | None, typer.Option("--include", help="Glob of files to take.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Glob of files to skip.")] = None,
    text_field: Annotated[str, typer.Option(help="JSONL/CSV/TSV field with the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="JSONL/CSV/TSV field with the row id.")] = "id",
    title_field: Annotated[str, typer.Option(help="JSONL/CSV/TSV field with the title.")] = "title",
    meta_field: Annotated[
        list[str] | None, typer.Option(help="JSONL/CSV/TSV fields kept as metadata (default: all others).")
    ] = None,
    sync: Annotated[bool, typer.Option("--sync", help="Also remove documents whose files are gone.")] = False,
    dim: DimOption = None,
    vectors: Annotated[
        str | None, typer.Option("--vectors", help="Vector precision at creation: float32, int8 or binary.")
    ] = None,
    chunk_tokens: Annotated[int, typer.Option(help="Chunk size in tokens (at creation).")] = 256,
    overlap: Annotated[int, typer.Option(help="Chunk overlap in tokens (at creation).")] = 32,
    index_kind: Annotated[
        str | None,
        typer.Option(
            "--index",
            help="Vector index at creation: auto (exact, HNSW, then IVF on disk as it grows), flat, hnsw, "
            "ivf, or a FAISS IVF factory string such as IVF4096,PQ32.",
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Then follow changes under PATHS (extra 'watch'); Ctrl-C stops.")
    ] = False,
    model: ModelOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = 32,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = None,
    ray_cpus: RayCpusOption = 1.0,
    ray_gpus: RayGpusOption = None,
) -> None:
    """Index files into a collection (created on first use). Unchanged files are skipped; Ctrl-C is safe.

    Exits 1 when some files could not be read (they are listed; the others are indexed).
    With --ray, the chunks are embedded on a Ray cluster and committed here, with the same ids
    and vectors as without it; a re-run after a crash carries on where it stopped.
    """
    from gemvec.ingest.loaders import TableOptions
    from gemvec.store import Collection, delete_collection, resolve_collection
    from gemvec.store.paths import DB_FILE

    pool = join_ray(ray, ray_address, ray_actors, ray_cpus, ray_gpus)  # before creating anything
    is_new = not (resolve_collection(collection) / DB_FILE).exists()
    coll = Collection.create(
        collection,
        model=model,
        precision=precision,
        dim=dim,
        vectors=vectors,
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        index=index_kind,
        exist_ok=True,
    )
    table = TableOptions(text_field, id_field, title_field, tuple(meta_field) if meta_field else None)
    try:
        with coll, _progress_bar(sys.stderr.isatty()) as progress:
            options: dict[str, Any] = dict(
                include=include or (),
                exclude=exclude or (),
                table=table,
                progress=progress,
                remove_missing=sync,
            )
            if pool is None:
                report = coll.add(paths, batch_size=batch_size, **options)
            else:
                from gemvec.distributed import index_on_ray

                report, nodes = index_on_ray(coll, paths, pool=pool, **options)
                _print_nodes(nodes)
            _print_report(report, coll)
            if watch:
                _follow(coll, paths, options, batch_size)
    except BaseException:
        if is_new and _is_empty(collection):  # a failed first index leaves no empty collection behind
            delete_collection(collection)
        raise
    if report.failed:
        raise typer.Exit(1)


def _follow(coll: Any, paths: list[Path], options: dict[str, Any], batch_size: int) -> None:
    """Keep ``coll`` in step with ``paths`` until Ctrl-C (see ``gemvec watch``)."""
    from gemvec.store.watch import FolderWatcher, watch_roots

    roots = watch_roots(
        coll, paths, include=options["include"], exclude=options["exclude"], table=options["table"]
    )
    folders = ", ".join(str(r.path) for r in roots)
    FolderWatcher(
        coll,
        roots,
        batch_size=batch_size,
        on_batch=lambda report: _print_report(report, coll),
        on_ready=lambda: typer.echo(f"{coll.name}: watching {folders} (Ctrl-C stops)", err=True),
    ).run()


def _explain(answer: Any, streamed: str) -> None:
    """Say on stderr what the checks of the answer found (rag: citations, support, language)."""
    if answer.invalid_citations:
        cited = ", ".join(f"[{n}]" for n in answer.invalid_citations)
        typer.secho(f"removed citations of sources that were not retrieved: {cited}", fg="yellow", err=True)
    if answer.mode == "extractive" and answer.text.strip() != streamed.strip():
        typer.secho(
            "the generated answer is not supported by its sources; from the sources instead:",
            fg="yellow",
            err=True,
        )
        typer.echo(answer.text + "\n")
    if answer.language_ok is False:
        typer.secho(
            f"the answer is in {answer.answer_language}, the question in {answer.question_language}",
            fg="yellow",
            err=True,
        )


def _print_nodes(chunks_by_node: dict[str, int]) -> None:
    spread = ", ".join(f"{count} on {node[:8]}" for node, count in sorted(chunks_by_node.items()))
    typer.echo(f"embedded on {len(chunks_by_node)} Ray node(s): {spread or 'nothing to embed'}", err=True)


def _is_empty(collection: str) -> bool:
    from gemvec.store import Collection

    with Collection.open(collection) as coll:
        return coll.count() == (0, 0)


@friendly_errors
def sync_cmd(collection: CollectionOption, model: ModelOption = None) -> None:
    """Re-index every folder added before: embed changed files, remove deleted ones."""
    from gemvec.store import Collection

    with Collection.open(collection, model=model) as coll, _progress_bar(sys.stderr.isatty()) as progress:
        _print_report(coll.sync(progress=progress), coll)


@friendly_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    collection: CollectionOption,
    k: Annotated[int, typer.Option("-k", min=1, help="Number of results.")] = 10,
    mode: ModeOption = "hybrid",
    filters: FilterOption = None,
    as_json: JsonOption = False,
    model: ModelOption = None,
) -> None:
    """Search a collection. --json prints one object per hit: score, text, path, title, chunk, ..."""
    from gemvec.store import Collection

    with Collection.open(collection, model=model) as coll:
        hits = coll.search(query, k=k, mode=mode, filters=parse_filters(filters))
    if as_json:
        echo_json_lines(hit.to_dict() for hit in hits)
        return
    for rank, hit in enumerate(hits, start=1):
        where = hit.path or hit.source
        typer.echo(
            f"{rank:>2}. {hit.score:.4f}  {where}  #{hit.chunk}" + (f"  ({hit.title})" if hit.title else "")
        )
        typer.echo("    " + " ".join(hit.text.split())[:300])
    if not hits:
        typer.echo("no results", err=True)


@friendly_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOption,
    llm: LlmOption = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Sources to retrieve.")] = 4,
    mode: ModeOption = "hybrid",
    filters: FilterOption = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest answer, in tokens.")] = 512,
    answer_mode: Annotated[
        str,
        typer.Option(
            "--answer",
            help="auto (the LLM's answer when its sources support it, else a cited extract of them), "
            "generated, or extractive (no LLM).",
        ),
    ] = "auto",
    as_json: JsonOption = False,
    model: ModelOption = None,
) -> None:
    """Answer a question from a collection with numbered citations, streaming the answer."""
    from gemvec.llm import make_generator
    from gemvec.store import Collection

    generator = make_generator(llm) if answer_mode != "extractive" else None
    with Collection.open(collection, model=model) as coll:
        stream = coll.ask(
            question,
            generator,
            k=k,
            mode=mode,
            filters=parse_filters(filters),
            stream=True,
            max_tokens=max_tokens,
            answer_mode=answer_mode,
        )
        streamed = []
        for piece in stream:
            streamed.append(piece)
            if not as_json:
                sys.stdout.write(piece)
                sys.stdout.flush()
    answer = stream.answer
    if as_json:
        echo_json(answer.to_dict())
        return
    typer.echo("\n")
    _explain(answer, "".join(streamed))
    for source in answer.sources:
        mark = "*" if source.cited else " "
        hit = source.hit
        typer.echo(
            f"{mark}[{source.number}] {hit.path or hit.source} #{hit.chunk}"
            + (f" ({hit.title})" if hit.title else "")
        )
