"""IVF indexes that outgrow RAM: trained on a sample, filled shard by shard, merged on disk, read mmapped.

FAISS's ``demos/demo_ondisk_ivf.py`` pattern as calls a distributed job makes from its workers::

    trained = train_ivf(sample, dim, auto_factory(n))        # the driver, on a sample of the vectors
    faiss.write_index(trained, "trained.faiss")
    write_shard("trained.faiss", ids, vectors, "shard-7.faiss")   # each worker; ids are chunk ids
    merge_shards("trained.faiss", shard_paths, folder)       # the driver: one data file and its header
    index = open_ondisk(folder)                              # readers: the lists stay on disk (mmap)
    scores, ids = search(index, queries, k)

The merged lists go to a data file with a fresh name at every merge, written once and then
mapped read-only. Scores are those of the SQ8/PQ codes: rescore the candidates with the stored
float32 vectors (:func:`gemvec.store.vectors.rescore`).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from gemvec.errors import InputError

HEADER_FILE = "index.faiss"  # the index without its lists; names the data file beside it
DATA_SUFFIX = ".ivfdata"
MIN_TRAIN_PER_LIST = 39  # k-means points per list below which FAISS warns
TRAIN_PER_LIST = 64  # training sample size per list (FAISS itself samples down to 256)
RESCORE_FACTOR = {"SQ": 4, "PQ": 10, "Flat": 1}  # candidates fetched per result, by the codes' family

Trained = faiss.Index | str | os.PathLike[str]


def choose_nlist(n: int) -> int:
    """A power of two near 4·√n lists (the usual IVF sizing), each with enough vectors to train on."""
    nlist = 1 << max(0, round(math.log2(4 * math.sqrt(max(n, 1)))))
    while nlist > 1 and nlist * MIN_TRAIN_PER_LIST > n:
        nlist //= 2
    return nlist


def auto_factory(n: int) -> str:
    """The factory string for ``n`` vectors: SQ8 codes (one byte per dimension)."""
    return f"IVF{choose_nlist(n)},SQ8"


def default_nprobe(nlist: int) -> int:
    """Lists searched per query: 4·√nlist. On real vectors (SciFact's 5,183 abstracts at 256-d),
    the smallest nprobe tried that gave recall@10 ≥ 0.95 after rescoring was 2.5-2.8·√nlist (32
    of 128 lists, 40 of 256, 64 of 512; 2.0-2.1·√nlist gave 0.94), and 4·√nlist gave 0.977-0.983
    (BENCHMARKS.md, "Scale out on Ray"; benchmarks/results/ivf_scifact.jsonl)."""
    return min(nlist, round(4 * math.sqrt(nlist)))


def new_ivf(dim: int, factory: str) -> faiss.Index:
    """An untrained inner-product IVF index from a FAISS factory string (e.g. ``IVF4096,SQ8``)."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        reason = str(exc).strip().rsplit(": ", 1)[-1]
        raise InputError(f"FAISS cannot build {factory!r} for dim {dim}: {reason}") from None
    lists = faiss.downcast_InvertedLists(index.invlists) if isinstance(index, faiss.IndexIVF) else None
    if not isinstance(lists, faiss.ArrayInvertedLists):
        raise InputError(
            f"{factory!r} is not a plain IVF index; give one like 'IVF4096,SQ8' or 'IVF4096,PQ32', "
            "or choose index 'flat' or 'hnsw'."
        )
    factory_nlist(factory)
    return index


def nlist_of(index: faiss.Index) -> int:
    return int(faiss.extract_index_ivf(index).nlist)


def factory_nlist(factory: str) -> int:
    """The number of lists a factory string asks for (``IVF4096,SQ8`` -> 4096)."""
    found = re.match(r"IVF(\d+)", factory)
    if found is None:
        raise InputError(f"{factory!r} does not start with IVF<number of lists>.")
    return int(found.group(1))


def train_size(factory: str) -> int:
    """How many vectors to train ``factory`` on."""
    return TRAIN_PER_LIST * factory_nlist(factory)


def rescore_factor(factory: str) -> int:
    """Candidates to fetch per result for an index of ``factory``'s codes."""
    codes = factory.rsplit(",", 1)[-1]
    return next((f for family, f in RESCORE_FACTOR.items() if codes.startswith(family)), 10)


def train_ivf(sample: np.ndarray, dim: int, factory: str) -> faiss.Index:
    """An empty IVF index of ``factory`` trained on ``sample`` (at least one vector per list)."""
    index = new_ivf(dim, factory)
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if len(sample) < nlist_of(index):
        raise InputError(f"{factory!r} needs at least {nlist_of(index)} training vectors, got {len(sample)}.")
    index.train(sample)
    return index


def empty_copy(trained: Trained) -> faiss.Index:
    """An empty copy of a trained index (an index object, or a file as written by faiss.write_index)."""
    if isinstance(trained, (str, os.PathLike)):
        index = faiss.read_index(os.fspath(trained), faiss.IO_FLAG_MMAP)  # lists mapped, not read
    elif is_ondisk(trained):  # its header only, without mapping the data
        index = faiss.deserialize_index(faiss.serialize_index(trained), faiss.IO_FLAG_SKIP_IVF_DATA)
    else:
        index = faiss.clone_index(trained)
    _replace_lists(index, faiss.ArrayInvertedLists(faiss.extract_index_ivf(index).nlist, code_size(index)))
    index.ntotal = faiss.extract_index_ivf(index).ntotal = 0
    return index


def write_shard(trained: Trained, ids: np.ndarray, vectors: np.ndarray, path: str | os.PathLike[str]) -> int:
    """Add ``vectors`` under their global ``ids`` to an empty copy of ``trained``; write it to ``path``."""
    shard = empty_copy(trained)
    shard.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    faiss.write_index(shard, os.fspath(path))
    return int(shard.ntotal)


def merge_shards(trained: Trained, shard_paths: Sequence[str | os.PathLike[str]], folder: Path) -> Path:
    """Merge shard files into one on-disk index in ``folder``; return its header (see :func:`open_ondisk`).

    The shards are mapped, not read: their total may exceed RAM.
    """
    shards = [faiss.read_index(os.fspath(p), faiss.IO_FLAG_MMAP) for p in shard_paths]
    merged = merge(trained, shards, new_data_path(folder))
    header = Path(folder) / HEADER_FILE
    faiss.write_index(merged, f"{header}.tmp")
    os.replace(f"{header}.tmp", header)
    return header


def new_data_path(folder: Path) -> Path:
    """A data file name not used before: readers may still map the previous one."""
    return Path(folder) / f"index.{secrets.token_hex(6)}{DATA_SUFFIX}"


def merge(trained: Trained, sources: Sequence[faiss.Index], data_path: Path) -> faiss.Index:
    """An empty copy of ``trained`` holding every list of ``sources``, its lists in a new file ``data_path``.

    This is what ``faiss.contrib.ondisk.merge_ondisk`` does (``OnDiskInvertedLists.merge_from_multiple``),
    except that the sources keep their lists: merge_ondisk disowns them, which leaves every shard
    mapped until the process exits.
    """
    index = empty_copy(trained)
    ivf = faiss.extract_index_ivf(index)
    inputs = faiss.InvertedListsPtrVector()
    for source in sources:
        inputs.push_back(faiss.extract_index_ivf(source).invlists)
    if sum(int(s.ntotal) for s in sources) == 0:
        raise InputError("Nothing to merge: the shards are empty.")
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(data_path))
    with c_stdout_to_stderr():  # merge_from_multiple prints "resizing ..." on stdout
        ntotal = lists.merge_from_multiple(inputs.data(), inputs.size(), False)
    _replace_lists(index, lists)
    index.ntotal = ivf.ntotal = ntotal
    fsync(data_path)
    return index


def open_ondisk(path: str | os.PathLike[str]) -> faiss.Index:
    """The merged index at ``path`` (its header, or the folder holding it), its lists mapped read-only."""
    header = Path(path) / HEADER_FILE if Path(path).is_dir() else Path(path)
    return attach_data(faiss.read_index(str(header), faiss.IO_FLAG_SKIP_IVF_DATA), header.parent)


def attach_data(index: faiss.Index, folder: Path) -> faiss.Index:
    """Map read-only the data file ``index``'s header names, looked up in ``folder`` (it may have moved)."""
    lists = ondisk_lists(index)
    lists.filename = str(Path(folder) / data_name(index))
    lists.read_only = True
    lists.prefetch_nthread = 0  # no helper threads per query: the page cache reads ahead
    lists.do_mmap()
    return index


def _replace_lists(index: faiss.Index, lists: faiss.InvertedLists) -> None:
    """Give ``lists`` to ``index``, which frees its old lists and, later, these."""
    faiss.extract_index_ivf(index).replace_invlists(lists, True)
    lists.this.disown()


def code_size(index: faiss.Index) -> int:
    return int(faiss.extract_index_ivf(index).code_size)


def is_ondisk(index: faiss.Index) -> bool:
    """True when the index's lists are in a data file (mapped), not in RAM."""
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    return isinstance(lists, faiss.OnDiskInvertedLists)


def ondisk_lists(index: faiss.Index) -> faiss.OnDiskInvertedLists:
    if not is_ondisk(index):
        raise InputError("This IVF index keeps its lists in memory, not in a data file.")
    return faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)


def data_name(index: faiss.Index) -> str:
    """The file name (no folder) of an on-disk index's data file."""
    return Path(ondisk_lists(index).filename).name


def search(
    index: faiss.Index, queries: np.ndarray, k: int, nprobe: int | None = None, selector=None
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` (scores, ids) per query over ``nprobe`` lists (default: :func:`default_nprobe`)."""
    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe or default_nprobe(nlist_of(index))
    if selector is not None:
        params.sel = selector
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)


def ids_of(index: faiss.Index) -> np.ndarray:
    """Every id an IVF index holds (list by list; for an on-disk index this reads 8 bytes per vector)."""
    lists = faiss.extract_index_ivf(index).invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(lists.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


@contextmanager
def c_stdout_to_stderr() -> Iterator[None]:
    """Send what C++ code prints to stderr meanwhile, so a CLI's JSON on stdout stays valid."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)  # C stdio buffers what it printed to a pipe: out before fd 1 is back
        os.dup2(saved, 1)
        os.close(saved)


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
