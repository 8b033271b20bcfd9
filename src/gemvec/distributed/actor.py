"""The Ray Data callable that embeds batches: one instance per actor, holding the model.

Ray Data builds one :class:`EmbedBatches` per actor of the pool (the model loads once per
actor) and calls it with one Arrow batch at a time; it returns the batch, or the columns asked
to keep, with a ``fixed_size_list<float32>[dim]`` embedding column appended, which Parquet,
pandas and DuckDB read as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gemvec.errors import CollectionMismatchError, InputError
from gemvec.model.openmp import release_openmp_threads
from gemvec.prompts import Task, parse_task

if TYPE_CHECKING:
    import pyarrow as pa

# Padded tokens per forward pass on a GPU, where bigger passes keep it busy (CPU: the embedder's own).
GPU_BATCH_TOKENS = 16_384
NO_PROMPT = "none"


@dataclass(frozen=True)
class EmbedSpec:
    """What the actors embed, and how. Plain values: it travels to every actor.

    ``task``: a :class:`~gemvec.prompts.Task` name, or ``none`` for the texts as given; ``prompt``
    a custom prefix instead. ``model_id``: refuse a checkpoint with another fingerprint (the
    model a collection was built with). ``max_batch_tokens``: padded tokens per forward pass.
    """

    model: str | None = None
    precision: str | None = None
    task: str = Task.DOCUMENT.value
    prompt: str | None = None
    dim: int | None = None
    max_batch_tokens: int | None = None
    model_id: str | None = None

    def check(self, with_titles: bool) -> None:
        """Refuse a bad task or option combination on the driver, before any actor starts."""
        if self.prompt is not None and self.task not in (Task.DOCUMENT.value, NO_PROMPT):
            raise InputError("Pass either a task or a prompt, not both.")
        task = self.prompt_task  # refuses an unknown task
        if with_titles and task is not Task.DOCUMENT:
            raise InputError("A titles column goes with the document task only; drop it or the task.")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise InputError(f"max_batch_tokens must be at least 1, got {self.max_batch_tokens}.")

    @property
    def prompt_task(self) -> Task | None:
        return None if self.prompt is not None or self.task == NO_PROMPT else parse_task(self.task)


@dataclass(frozen=True)
class Columns:
    """Which columns hold the input, and which the output gets.

    ``node``: also record the Ray node that embedded each row (to see how work spread).
    ``keep``: input columns to return (None: all of them).
    """

    text: str = "text"
    title: str | None = None
    output: str = "embedding"
    node: str | None = None
    keep: tuple[str, ...] | None = None


class EmbedBatches:
    """Embeds Arrow batches for Ray Data's ``map_batches``; one per actor, the model loaded once."""

    def __init__(self, spec: EmbedSpec, columns: Columns, use_gpu: bool) -> None:
        from gemvec.embedder import Embedder

        budget = spec.max_batch_tokens or (GPU_BATCH_TOKENS if use_gpu else None)
        if budget is not None:
            _set_pass_budget(budget)
        self.embedder = Embedder.load(spec.model, spec.precision, device=None if use_gpu else "cpu")
        # Ray calls the actor on another thread than this one: free this thread's OpenMP pool,
        # or the two pools together hold more threads than the actor has CPUs.
        release_openmp_threads()
        if spec.model_id is not None:
            _check_model(self.embedder, spec.model_id)
        self.spec = spec
        self.columns = columns
        self.node_id = _node_id() if columns.node else ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        names = self.columns
        texts = _strings(batch, names.text)
        titles = batch.column(names.title).to_pylist() if names.title else None
        prepared = self.embedder.prepare(texts, self.spec.prompt_task, prompt=self.spec.prompt, titles=titles)
        vectors = self.embedder.encode_prepared(
            prepared, dim=self.spec.dim, batch_size=len(prepared) or 1, show_progress=False
        )
        out = batch.select(list(names.keep)) if names.keep is not None else batch
        flat = pa.array(np.ascontiguousarray(vectors).reshape(-1), type=pa.float32())
        out = out.append_column(names.output, pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]))
        if names.node:
            out = out.append_column(names.node, pa.array([self.node_id] * len(out), type=pa.string()))
        return out


def _strings(batch: pa.Table, column: str) -> list[str]:
    if column not in batch.column_names:
        raise InputError(f"The dataset has no column {column!r} (it has {', '.join(batch.column_names)}).")
    values = batch.column(column).to_pylist()
    missing = [i for i, value in enumerate(values) if not isinstance(value, str)]
    if missing:
        raise InputError(
            f"Column {column!r} must hold strings: {len(missing)} row(s) of a batch hold "
            f"{type(values[missing[0]]).__name__} instead."
        )
    return values


def _set_pass_budget(tokens: int) -> None:
    """Forward passes of up to ``tokens`` padded tokens. The embedder reads this module constant
    per call; an actor is a process of its own, so no other user of the model sees the change."""
    import gemvec.embedder

    gemvec.embedder.DEFAULT_MAX_BATCH_TOKENS = tokens


def _check_model(embedder, expected: str) -> None:
    from gemvec.model.fingerprint import model_fingerprint

    found = model_fingerprint(embedder.folder, embedder.model_name)
    if found != expected:
        raise CollectionMismatchError(
            f"The model at {embedder.model_name} on Ray node {_node_id()} has id {found}, not {expected} "
            "(the collection's): put the same checkpoint at the same path on every node."
        )


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()
