"""Building a collection on a Ray cluster: this process plans and commits, the cluster embeds.

``index_on_ray(coll, paths)`` is ``coll.add(paths)`` with the embedding done by a pool of
actors. The collection reads, deduplicates and chunks here as always, then hands every chunk to
embed, in the writer's order, to :class:`ClusterEmbedding`, which streams them through Ray Data
(order preserved) while the writer commits the vectors that came back, batch by batch. So chunk
ids are the ones a single machine gives, and resuming after a crash is the writer's own: a
re-run skips committed documents and carries on inside a half-committed one. Ray retries the
batches of an actor that dies and restarts it; rows are numbered and put back in order here (an
actor may run its second batch before its first), and a batch can be neither lost nor counted
twice.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gemvec.distributed.actor import Columns, EmbedSpec
from gemvec.distributed.cluster import ActorPool, portable_model, ray_module
from gemvec.distributed.dataset import DEFAULT_BATCH_ROWS, map_embed
from gemvec.distributed.errors import ray_failure
from gemvec.errors import GemvecError
from gemvec.prompts import Task

if TYPE_CHECKING:
    import pyarrow as pa

    from gemvec.store import Collection, IngestReport

_ROW, _TEXT, _TITLE, _VECTOR, _NODE = "row", "text", "title", "embedding", "node"


class ClusterEmbedding:
    """The ``embed_documents`` hook of :meth:`Collection.add` that embeds on a Ray actor pool.

    ``chunks_by_node`` counts the chunks each Ray node embedded (for the report).
    """

    def __init__(self, spec: EmbedSpec, pool: ActorPool, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.spec = spec
        self.pool = pool
        self.batch_rows = batch_rows
        self.chunks_by_node: Counter[str] = Counter()
        self._streams: list[OrderedVectors] = []

    def __call__(self, texts: list[str], titles: list[str | None]) -> OrderedVectors:
        """Start embedding ``texts`` on the cluster; the returned function hands the vectors out in order."""
        batches = self._run(texts, titles) if texts else iter(())
        stream = OrderedVectors(texts, titles, batches, self.chunks_by_node)
        self._streams.append(stream)
        return stream

    def close(self) -> None:
        """Stop what is still running (after an error, the work nobody will commit)."""
        for stream in self._streams:
            stream.close()

    def _run(self, texts: list[str], titles: list[str | None]) -> Iterator[pa.Table]:
        import pyarrow as pa

        ray = ray_module()
        step = self.batch_rows
        blocks = [
            pa.table(
                {
                    _ROW: pa.array(range(start, min(start + step, len(texts))), type=pa.int64()),
                    _TEXT: pa.array(texts[start : start + step], type=pa.string()),
                    _TITLE: pa.array(titles[start : start + step], type=pa.string()),
                }
            )
            for start in range(0, len(texts), step)
        ]
        columns = Columns(_TEXT, _TITLE, _VECTOR, _NODE, keep=(_ROW,))
        ds = map_embed(ray.data.from_arrow(blocks), self.spec, columns, self.pool, step)
        ds.context.enable_progress_bars = False  # the writer reports progress: chunks committed
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "...bars disabled"
        return iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))


EARLY_MEMORY_BYTES = 256 * 1024 * 1024  # early batches' vectors held in memory; past it, on disk


class EarlyBatches:
    """Batches that arrived before an earlier one, by first row, until the gap closes.

    A batch that is retried (its actor died) can come back after the rest of a large job: its
    successors wait in memory up to ``memory_bytes`` of vectors, and on disk past it (a
    temporary folder, removed on :meth:`close`), so a million-chunk job cannot run out of memory
    waiting for one batch."""

    def __init__(self, memory_bytes: int = EARLY_MEMORY_BYTES) -> None:
        self.memory_bytes = memory_bytes
        self.in_memory_bytes = 0
        self._batches: dict[int, tuple[np.ndarray, np.ndarray | Path]] = {}
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def __contains__(self, first: int) -> bool:
        return first in self._batches

    def put(self, first: int, rows: np.ndarray, vectors: np.ndarray) -> None:
        if self.in_memory_bytes + vectors.nbytes <= self.memory_bytes:
            self.in_memory_bytes += vectors.nbytes
            self._batches[first] = rows, vectors
            return
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="gemvec-early-")
        path = Path(self._folder.name) / f"{first}.npy"
        np.save(path, vectors)
        self._batches[first] = rows, path

    def pop(self, first: int) -> tuple[np.ndarray, np.ndarray]:
        rows, vectors = self._batches.pop(first)
        if isinstance(vectors, Path):
            path, vectors = vectors, np.load(vectors)
            path.unlink()
        else:
            self.in_memory_bytes -= vectors.nbytes
        return rows, vectors

    def close(self) -> None:
        self._batches.clear()
        self.in_memory_bytes = 0
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


class OrderedVectors:
    """The embed function the writer calls: the next vectors in plan order, checked against the plan.

    Batches come back as they finish; one that arrives early waits (:class:`EarlyBatches`) for
    those before it.
    """

    def __init__(
        self,
        texts: list[str],
        titles: list[str | None],
        batches: Iterator[pa.Table],
        chunks_by_node: Counter[str],
        early_memory_bytes: int = EARLY_MEMORY_BYTES,
    ) -> None:
        self._texts = texts
        self._titles = titles
        self._batches = batches
        self._nodes = chunks_by_node
        self._ready: deque[tuple[np.ndarray, np.ndarray]] = deque()  # (row numbers, vectors), in order
        self._early = EarlyBatches(early_memory_bytes)
        self._served = 0  # rows handed to the writer
        self._arrived = 0  # rows received in order from the cluster

    def __call__(self, texts: Sequence[str], titles: Sequence[str | None]) -> np.ndarray:
        end = self._served + len(texts)
        if list(texts) != self._texts[self._served : end] or list(titles) != self._titles[self._served : end]:
            raise GemvecError(
                "The collection asked for other chunks than it planned (another process wrote to it?); "
                "nothing of this batch was stored. Run the same command again to carry on."
            )
        parts = []
        wanted = len(texts)
        while wanted:
            rows, vectors = self._next_rows()
            take = min(wanted, len(rows))
            parts.append(vectors[:take])
            if take < len(rows):
                self._ready.appendleft((rows[take:], vectors[take:]))
            wanted -= take
        self._served = end
        return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()
        self._early.close()

    def _next_rows(self) -> tuple[np.ndarray, np.ndarray]:
        if self._ready:
            return self._ready.popleft()
        while self._arrived not in self._early:
            rows, vectors = self._receive()
            first = int(rows[0])
            if first < self._arrived or first in self._early:
                raise GemvecError(
                    f"The Ray job returned rows {first}..{rows[-1]} twice; nothing of this batch was "
                    "stored. Run the same command again."
                )
            self._early.put(first, rows, vectors)
        rows, vectors = self._early.pop(self._arrived)
        self._arrived += len(rows)
        return rows, vectors

    def _receive(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch the cluster finished, whichever it is."""
        try:
            batch = next(self._batches)
        except StopIteration:
            raise GemvecError(
                f"The Ray job ended without rows {self._arrived}.. of {len(self._texts)}; run it again."
            ) from None
        except Exception as exc:
            raise ray_failure(exc) from exc
        rows = batch.column(_ROW).to_numpy()
        if not len(rows) or not np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
            raise GemvecError("The Ray job returned a batch of rows out of order; run it again.")
        self._nodes.update(batch.column(_NODE).to_pylist())
        vectors = batch.column(_VECTOR).combine_chunks().flatten().to_numpy()
        return rows, vectors.reshape(len(rows), -1)


def index_on_ray(
    coll: Collection,
    paths: Iterable[str | os.PathLike[str]],
    *,
    pool: ActorPool | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    max_batch_tokens: int | None = None,
    **add_options: Any,
) -> tuple[IngestReport, Counter[str]]:
    """``coll.add(paths, **add_options)`` with the chunks embedded on the Ray cluster :func:`connect`
    joined (else Ray's default one: see :func:`~gemvec.distributed.cluster.cluster_resources`).

    Every actor loads the collection's model (the same checkpoint folder must be at the same
    path on every node, or the model be a hub id each node can fetch; another checkpoint is
    refused) at the compute precision this process loaded it with. Returns the ingest report
    and the chunks each Ray node embedded.
    """
    embedder = coll.embedder
    spec = EmbedSpec(
        model=portable_model(embedder.model_name),
        precision=embedder.precision.value,
        task=Task.DOCUMENT.value,
        dim=coll.encode_dim,
        max_batch_tokens=max_batch_tokens,
        model_id=coll.settings["model_id"],
    )
    embedding = ClusterEmbedding(spec, pool or ActorPool(), batch_rows)
    try:
        report = coll.add(paths, embed_documents=embedding, **add_options)
    finally:
        embedding.close()
    return report, embedding.chunks_by_node
