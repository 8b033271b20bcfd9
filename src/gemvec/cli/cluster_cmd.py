"""``gemvec cluster``: group texts by meaning, describe the groups, draw a map."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gemvec.cli.options import (
    BatchSizeOption,
    DimOption,
    FormatOption,
    IdColumnOption,
    JsonOption,
    LabelColumnOption,
    ModelOption,
    PrecisionOption,
    TextColumnOption,
    echo_json,
    friendly_errors,
    load_embedder,
    read_data,
)
from gemvec.errors import InputError

if TYPE_CHECKING:
    from gemvec.embedder import Embedder
    from gemvec.tabular import Table

OptionalDataArgument = Annotated[
    Path | None,
    typer.Argument(help="CSV, TSV, JSON Lines, JSON or .txt file; '-' = stdin. Or use --collection."),
]


@friendly_errors
def cluster(
    data: OptionalDataArgument = None,
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection", "-c", help="Cluster this collection's documents instead of a file (name or path)."
        ),
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", "-k", min=1, help="Number of clusters (default: chosen).")
    ] = None,
    k_min: Annotated[int, typer.Option("--k-min", min=2, help="Smallest k tried when choosing k.")] = 2,
    k_max: Annotated[int, typer.Option("--k-max", min=2, help="Largest k tried when choosing k.")] = 15,
    method: Annotated[str, typer.Option("--method", help="kmeans or hdbscan.")] = "kmeans",
    min_cluster_size: Annotated[int, typer.Option("--min-cluster-size", min=2, help="HDBSCAN only.")] = 5,
    keywords: Annotated[int, typer.Option("--keywords", min=0, help="Keywords per cluster.")] = 8,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Representative texts per cluster.")] = 3,
    assignments: Annotated[
        Path | None,
        typer.Option("--assignments", "-o", help="Write id, cluster (and label) to .csv or .jsonl."),
    ] = None,
    map_png: Annotated[Path | None, typer.Option("--map", help="Draw a 2-D map to this PNG.")] = None,
    map_html: Annotated[
        Path | None, typer.Option("--html", help="Write an interactive 2-D map (HTML).")
    ] = None,
    projection: Annotated[str, typer.Option("--projection", help="2-D map: auto, tsne or pca.")] = "auto",
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    id_column: IdColumnOption = "id",
    format: FormatOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for k-means and the map.")] = 0,
    dim: DimOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
    batch_size: BatchSizeOption = 32,
    as_json: JsonOption = False,
) -> None:
    """Cluster texts (clustering prompt): sizes, keywords, representative texts; V-measure/ARI with labels."""
    from gemvec.tasks.cluster import cluster_texts

    if method not in ("kmeans", "hdbscan"):
        raise InputError(f"--method must be kmeans or hdbscan, not {method!r}.")
    if projection not in ("auto", "tsne", "pca"):
        raise InputError(f"--projection must be auto, tsne or pca, not {projection!r}.")
    if k_max < k_min:
        raise InputError(f"--k-max ({k_max}) is smaller than --k-min ({k_min}).")
    if (data is None) == (collection is None):
        raise InputError("Give a data file or --collection NAME (one of them).")
    if data is not None:
        table = read_data(data, text_column, label_column, id_column, format, need_labels=False)
        embedder, name = load_embedder(model, precision), data.name
    else:
        table, embedder = _collection_table(str(collection), label_column, model, precision)
        name = str(collection)
    result, vectors = cluster_texts(
        embedder,
        table.texts,
        dim=dim,
        batch_size=batch_size,
        ids=table.ids,
        labels=table.labels,
        method=method,  # type: ignore[arg-type]
        k=k,
        k_range=(k_min, k_max),
        min_cluster_size=min_cluster_size,
        keywords=keywords,
        examples=examples,
        seed=seed,
    )
    if assignments is not None:
        from gemvec.tabular import write_rows

        labels = table.labels
        rows = [
            {"id": row_id, "cluster": int(c)} | ({"label": labels[i]} if labels is not None else {})
            for i, (row_id, c) in enumerate(zip(table.ids, result.assignments, strict=True))
        ]
        write_rows(rows, assignments)
    if map_png is not None or map_html is not None:
        from gemvec.tasks.plots import map_html as write_html
        from gemvec.tasks.plots import map_png as write_png
        from gemvec.tasks.plots import project_2d

        points = project_2d(vectors, projection, seed)
        names = {c.id: f"{c.id}: {', '.join(c.keywords[:3])}" for c in result.clusters}
        title = f"{name}: {result.k} clusters"
        if map_png is not None:
            write_png(points, result.assignments, map_png, names, title)
        if map_html is not None:
            write_html(points, result.assignments, table.texts, map_html, names, title)
    if as_json:
        echo_json(result.to_dict())
        return
    _print_summary(result, k is None and method == "kmeans", (k_min, k_max))
    for path in (assignments, map_png, map_html):
        if path is not None:
            typer.echo(f"wrote {path}", err=True)


def _collection_table(
    collection: str, label_field: str, model: str | None, precision: str | None
) -> tuple[Table, Embedder]:
    """A collection's documents as rows (id = source, text = title + text, label = metadata[label_field])
    and the embedder: ``--model`` if given, else the model the collection was built with."""
    from gemvec.store import Collection
    from gemvec.tabular import Row, Table

    with Collection.open(collection, precision=precision) as coll:
        docs = list(coll.documents())
        if not docs:
            raise InputError(f"Collection {collection!r} has no documents; add some with `gemvec index`.")
        embedder = load_embedder(model, precision) if model else coll.embedder
    labelled = all(label_field in d.metadata for d in docs)
    rows = [
        Row(
            d.source,
            f"{d.title}\n{d.text}" if d.title and not d.text.startswith(d.title) else d.text,
            str(d.metadata[label_field]) if labelled else None,
        )
        for d in docs
    ]
    return Table(rows, collection, "text", label_field if labelled else None), embedder


def _print_summary(result, chosen: bool, k_range: tuple[int, int]) -> None:
    how = f", chosen by silhouette from {k_range[0]}..{k_range[1]}" if chosen else ""
    silhouette = f"{result.silhouette:.4f}" if result.silhouette is not None else "n/a"
    typer.echo(f"{result.method}: {result.k} clusters{how}; cosine silhouette {silhouette}")
    if result.method == "hdbscan":
        typer.echo(f"noise (in no cluster): {result.noise} texts")
    if result.v_measure is not None:
        typer.echo(f"against the labels: V-measure {result.v_measure:.4f}, ARI {result.ari:.4f}")
    for c in result.clusters:
        typer.echo(f"\n#{c.id}  {c.size} texts  keywords: {', '.join(c.keywords) or '-'}")
        for text in c.examples:
            short = " ".join(text.split())
            typer.echo(f"    - {short[:160]}{'…' if len(short) > 160 else ''}")
