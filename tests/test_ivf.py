"""IVF indexes on disk: the shard/merge/mmap module, and collections created with index="ivf".

Real FAISS, real SQLite, the tiny random model. 200 chunks make an IVF4,SQ8 index ("ivf" sizes
its lists by the collection: 4·√200 rounded to a power of two, at least 39 vectors per list).
The texts are embedded once per module into a flat and an IVF collection; tests work on copies.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from gemvec.errors import CollectionError, CollectionMismatchError, InputError
from gemvec.store import Collection, db, ivf, ivf_layers, persist
from gemvec.store import vectors as vectors_module
from gemvec.store.lock import WriteLock
from gemvec.store.paths import DB_FILE
from gemvec.store.vectors import IndexSpec, VectorIndex, VectorPrecision

FRUIT = ["apple", "banana", "cherry", "damson", "elder", "fig"]
PLACE = ["garden", "harbor", "island", "jungle"]
TEXTS = [f"Document {i} about {FRUIT[i % 6]} and {PLACE[i % 4]}, number {i}." for i in range(200)]
QUERY = "Document 7 about banana and a jungle"


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> Path:
    root = tmp_path_factory.mktemp("templates")
    for name, index in (("flat", None), ("ivf", "ivf")):
        with Collection.create(root / name, embedder=tiny_embedder, index=index) as coll:
            coll.add_texts(TEXTS, ids=[f"t{i}" for i in range(200)])
    return root


@pytest.fixture
def copy(templates: Path, tmp_path: Path, tiny_embedder) -> Iterator[Callable[[str], Collection]]:
    """A fresh copy of the flat or the IVF collection of TEXTS, opened."""
    opened: list[Collection] = []

    def open_copy(name: str) -> Collection:
        shutil.copytree(templates / name, tmp_path / name)
        opened.append(Collection.open(tmp_path / name, embedder=tiny_embedder))
        return opened[-1]

    yield open_copy
    for coll in opened:
        coll.close()


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def record(folder: Path) -> dict:
    return json.loads((folder / persist.RECORD_FILE).read_text())


def stored_ids(coll: Collection) -> list[int]:
    return [r[0] for r in coll.conn.execute("SELECT id FROM chunks ORDER BY id")]


def dense_top(coll: Collection, query: str, k: int = 5) -> list[int]:
    return [h.chunk_id for h in coll.search(query, k=k, mode="dense")]


def mapped(path: Path) -> bool:
    return any(line.rstrip().endswith(str(path)) for line in open("/proc/self/maps"))


def test_shards_merged_on_disk_search_like_one_index_in_ram(tmp_path: Path) -> None:
    x = clustered(3000, 32)
    ids = np.arange(3000, dtype=np.int64) * 3 + 1000  # global ids, not positions
    trained = ivf.train_ivf(x[::3], 32, "IVF16,SQ8")
    faiss.write_index(trained, str(tmp_path / "trained.faiss"))
    shards = [tmp_path / f"shard-{i}.faiss" for i in range(3)]
    for i, shard in enumerate(shards):  # what each worker does, knowing only its rows
        rows = slice(i * 1000, (i + 1) * 1000)
        assert ivf.write_shard(tmp_path / "trained.faiss", ids[rows], x[rows], shard) == 1000
    (tmp_path / "merged").mkdir()
    header = ivf.merge_shards(tmp_path / "trained.faiss", shards, tmp_path / "merged")
    in_ram = ivf.empty_copy(trained)
    in_ram.add_with_ids(x, ids)

    ondisk = ivf.open_ondisk(header.parent)
    assert ivf.is_ondisk(ondisk) and ondisk.ntotal == 3000
    data = header.parent / ivf.data_name(ondisk)
    assert mapped(data) and not any(mapped(s) for s in shards)  # shards are unmapped after the merge
    expected = ivf.search(in_ram, x[:50], 10, nprobe=4)
    found = ivf.search(ondisk, x[:50], 10, nprobe=4)
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_array_equal(found[0], expected[0])
    assert set(found[1].ravel().tolist()) <= set(ids.tolist())


def test_factory_strings_are_checked() -> None:
    assert ivf.new_ivf(32, "IVF8,PQ4").nlist == 8
    for bad in ("HNSW32", "PCA16,IVF8,SQ8", "IVF8,PQ4x4fs", "nonsense"):
        with pytest.raises(InputError):
            ivf.new_ivf(32, bad)
    with pytest.raises(InputError, match="at least 8 training vectors"):
        ivf.train_ivf(clustered(5, 32), 32, "IVF8,SQ8")
    assert [ivf.choose_nlist(n) for n in (10, 200, 1_000_000)] == [1, 4, 4096]


def test_layered_index_filters_removed_and_allowed_ids() -> None:
    x = clustered(600, 32)
    ids = np.arange(600, dtype=np.int64) + 1
    index = VectorIndex.build(IndexSpec(32, choice="IVF8,SQ8"), ids[:500], x[:500])
    assert index.spec.kind == "ivf" and index.rescore_factor == 4
    index.add(ids[500:], x[500:])  # to the delta
    assert index.remove(np.array([1, 2, 550]))  # two from the base, one from the delta
    assert index.ntotal == 597
    _, found = index.search(x[:3], 10)
    assert not {1, 2, 550} & set(found.ravel().tolist())
    _, found = index.search(x[:1], 5, allowed=np.array([1, 3, 7, 520, 550]))
    assert set(found[0][found[0] >= 0].tolist()) == {3, 7, 520}


def test_collection_with_ivf_index(copy, tiny_embedder) -> None:
    flat, coll = copy("flat"), copy("ivf")
    folder = coll.folder
    assert (coll.info()["index"], coll.info()["index_setting"]) == ("ivf-IVF4,SQ8", "ivf")
    saved = record(folder)
    assert (saved["kind"], saved["factory"], saved["count"]) == ("ivf", "IVF4,SQ8", 200)
    assert (folder / saved["data_file"]).stat().st_size == saved["data_size"]
    assert dense_top(coll, QUERY) == dense_top(flat, QUERY)

    coll.add_texts(["One more text about figs."], ids=["new"])  # into the delta: the data file stays
    coll.delete(["t1", "t2"])  # from the data file: remembered as removed ids
    saved = record(folder)
    assert saved["count"] == 198 and saved["max_id"] == 200 and len(saved["removed"]) == 2
    assert sorted(coll.index.index.ids().tolist()) == stored_ids(coll)
    flat.add_texts(["One more text about figs."], ids=["new"])
    flat.delete(["t1", "t2"])
    assert dense_top(coll, QUERY, 10) == dense_top(flat, QUERY, 10)
    coll.close()

    with Collection.open(folder, embedder=tiny_embedder) as again:  # the saved index, not rebuilt
        assert sorted(again.index.index.ids().tolist()) == stored_ids(again)
        assert record(folder)["data_file"] == saved["data_file"]
        assert dense_top(again, QUERY, 10) == dense_top(flat, QUERY, 10)


def test_ivf_changes_are_folded_into_a_new_data_file(copy, monkeypatch) -> None:
    coll = copy("ivf")
    first = record(coll.folder)["data_file"]
    monkeypatch.setattr(ivf_layers, "COMPACT_MAX", 0)
    coll.delete(["t5"])
    saved = record(coll.folder)
    assert saved["data_file"] != first and not (coll.folder / first).exists()
    assert saved["removed"] == [] and saved["count"] == 199
    assert sorted(coll.index.index.ids().tolist()) == stored_ids(coll)


def test_damaged_data_file_is_rebuilt_from_sqlite(copy, tiny_embedder) -> None:
    coll = copy("ivf")
    folder, expected = coll.folder, dense_top(coll, QUERY)
    coll.close()
    damaged = folder / record(folder)["data_file"]
    damaged.write_bytes(damaged.read_bytes()[:100])
    with Collection.open(folder, embedder=tiny_embedder) as coll:
        assert dense_top(coll, QUERY) == expected
        assert record(folder)["data_file"] != damaged.name and not damaged.exists()
        assert sorted(coll.index.index.ids().tolist()) == stored_ids(coll)


def test_auto_moves_to_ivf_past_the_hnsw_ram_limit(copy, monkeypatch) -> None:
    monkeypatch.setattr(vectors_module, "HNSW_RAM_LIMIT", 150 * 64 * 4)  # 150 float32 vectors of 64 dims
    assert IndexSpec(64, VectorPrecision.INT8).for_size(200).kind == "flat"  # int8 vectors are 4x smaller
    assert IndexSpec(64, VectorPrecision.BINARY).for_size(10**9).kind == "hnsw"
    coll = copy("flat")  # index "auto", saved as an exact index
    assert coll.info()["index"] == "ivf-IVF4,SQ8"
    coll.add_texts(["One more text about figs."], ids=["new"])  # its next use rebuilds it as IVF
    assert record(coll.folder)["kind"] == "ivf"
    assert sorted(coll.index.index.ids().tolist()) == stored_ids(coll)


def test_index_setting_is_checked_and_kept(tmp_path: Path, tiny_embedder) -> None:
    with pytest.raises(InputError, match="not a plain IVF"):
        Collection.create(tmp_path / "a", embedder=tiny_embedder, index="HNSW32")
    with pytest.raises(InputError, match="binary"):
        Collection.create(tmp_path / "b", embedder=tiny_embedder, vectors="binary", index="ivf")
    Collection.create(tmp_path / "c", embedder=tiny_embedder, index="IVF8,PQ8").close()
    with pytest.raises(CollectionMismatchError, match="index IVF8,PQ8, not hnsw"):
        Collection.create(tmp_path / "c", embedder=tiny_embedder, index="hnsw", exist_ok=True)
    with Collection.create(tmp_path / "c", embedder=tiny_embedder, exist_ok=True) as coll:
        assert coll.info()["index_setting"] == "IVF8,PQ8"
        assert coll.info()["index"] == "exact-float32"  # until 8 lists have 39 vectors each


def test_distributed_build_is_adopted_by_the_collection(copy, tmp_path: Path, tiny_embedder) -> None:
    coll = copy("ivf")
    folder, expected = coll.folder, dense_top(coll, QUERY)
    spec = IndexSpec(64, choice="ivf").for_size(200)
    coll.close()
    conn = db.connect(folder / DB_FILE)
    ids, vectors = next(iter(db.iter_vectors(conn, 64)))
    trained = ivf.train_ivf(vectors, 64, "IVF4,SQ8")  # the driver
    staging = tmp_path / "staging"
    staging.mkdir()
    shards = [staging / "a.faiss", staging / "b.faiss"]
    ivf.write_shard(trained, ids[:120], vectors[:120], shards[0])  # two workers
    ivf.write_shard(trained, ids[120:], vectors[120:], shards[1])
    lock = WriteLock(folder)
    assert lock.acquire()
    try:
        ivf.merge_shards(trained, shards[:1], staging)
        with pytest.raises(CollectionError, match="not exactly the 200 chunks"):
            persist.adopt_merged(conn, folder, spec, staging)
        header = ivf.merge_shards(trained, shards, staging)
        name = ivf.data_name(ivf.open_ondisk(header))
        persist.adopt_merged(conn, folder, spec, staging)
    finally:
        lock.release()
        conn.close()
    assert record(folder)["data_file"] == name and (folder / name).is_file()
    with Collection.open(folder, embedder=tiny_embedder) as coll:
        assert dense_top(coll, QUERY) == expected
        assert record(folder)["data_file"] == name  # used as it is, not rebuilt
