"""``embed_dataset``: a Ray Data step that adds an embedding column, on a pool of model actors.

    import ray
    from gemvec.distributed import embed_dataset

    ds = ray.data.read_parquet("s3://bucket/docs/")
    ds = embed_dataset(ds, text_column="body", titles_column="title", dim=256)
    ds.write_parquet("s3://bucket/vectors/")

Each actor loads the model once and embeds one batch at a time; Ray Data streams batches to
whichever actor is free, retries the batches of an actor that dies, and restarts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gemvec.distributed.actor import Columns, EmbedBatches, EmbedSpec
from gemvec.distributed.cluster import ActorPool, cluster_resources, portable_model, ray_module
from gemvec.model.checkpoint import default_model
from gemvec.prompts import Task

if TYPE_CHECKING:
    import ray.data

DEFAULT_BATCH_ROWS = 64  # rows per actor call: a few seconds of work for one CPU at 256 tokens a text


def embed_dataset(
    ds: ray.data.Dataset,
    *,
    text_column: str = "text",
    titles_column: str | None = None,
    output_column: str = "embedding",
    task: str = Task.DOCUMENT.value,
    prompt: str | None = None,
    dim: int | None = None,
    model: str | None = None,
    precision: str | None = None,
    max_batch_tokens: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    num_actors: int | None = None,
    num_cpus: float = 1.0,
    num_gpus: float | None = None,
    keep_columns: list[str] | None = None,
    node_column: str | None = None,
) -> ray.data.Dataset:
    """``ds`` with an ``output_column`` of float32 vectors (``fixed_size_list<float32>[dim]``).

    ``task``: document (default; ``titles_column`` gives titles), query, similarity, ... or
    ``none`` for no prompt; ``prompt``: a custom prefix instead. ``dim``: Matryoshka size.
    ``model``: a checkpoint folder present at the same path on every node, or a hub id
    (default: this process's ``$GEMVEC_MODEL``, else the hub's); ``precision`` as in
    :meth:`Embedder.load` (default: each node's CPU decides).
    ``max_batch_tokens``: padded tokens per forward pass (default: 1024 on CPU, 16384 on GPU).
    ``batch_rows``: rows per actor call. Actors: ``num_actors`` (default: fill the cluster),
    each reserving ``num_cpus`` and ``num_gpus`` (default: 1 when the cluster has GPUs).
    ``keep_columns``: input columns to return (default: all). ``node_column``: also record
    the Ray node that embedded each row.

    By default the actors reserve every CPU of the cluster: give the other steps of the pipeline
    (reading, writing) ``num_cpus=0`` (as ``gemvec embed --ray`` does), or ask for fewer actors,
    or those steps wait for a CPU forever.
    """
    spec = EmbedSpec(portable_model(model or default_model()), precision, task, prompt, dim, max_batch_tokens)
    keep = tuple(keep_columns) if keep_columns is not None else None
    columns = Columns(text_column, titles_column, output_column, node_column, keep)
    return map_embed(ds, spec, columns, ActorPool(num_actors, num_cpus, num_gpus), batch_rows)


def map_embed(
    ds: ray.data.Dataset, spec: EmbedSpec, columns: Columns, pool: ActorPool, batch_rows: int
) -> ray.data.Dataset:
    """The ``map_batches`` step behind :func:`embed_dataset`, from its parts."""
    ray = ray_module()
    spec.check(with_titles=columns.title is not None)
    actors, cpus, gpus = pool.resolve(cluster_resources())
    return ds.map_batches(
        EmbedBatches,
        fn_constructor_kwargs={"spec": spec, "columns": columns, "use_gpu": gpus > 0},
        batch_size=batch_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
        num_gpus=gpus,
    )
