"""Collections on real SQLite files and real FAISS indexes, with the tiny random model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gemvec.store import (
    Collection,
    CollectionError,
    CollectionMismatchError,
    delete_collection,
    list_collections,
)
from gemvec.store import vectors as vectors_module
from gemvec.store.persist import INDEX_FILE, RECORD_FILE
from gemvec.store.vectors import IndexSpec, VectorIndex, VectorPrecision
from gemvec.testing import make_tiny_checkpoint

WORDS = [
    "apple",
    "banana",
    "cherry",
    "delta",
    "echo",
    "falcon",
    "garden",
    "harbor",
    "island",
    "jungle",
    "kettle",
    "lemon",
]


def write_docs(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        words = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(6))
        (folder / f"doc{i:03d}.txt").write_text(f"Document {i} talks about {words}.\n\nIt is number {i}.")


def consistent(coll: Collection) -> None:
    """The index holds exactly the chunk ids in SQLite; every complete document has all its chunks and
    an incomplete one (a long document interrupted mid-way) its leading chunks."""
    ids = {r[0] for r in coll.conn.execute("SELECT id FROM chunks")}
    index = coll.index
    assert index.ntotal == len(ids)
    found = set(np.asarray(faiss_ids(index)).tolist())
    assert found == ids
    bad = coll.conn.execute(
        "SELECT COUNT(*) FROM documents d "
        "WHERE (complete AND n_chunks != (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id)) "
        "OR (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) "
        "!= (SELECT COALESCE(MAX(position) + 1, 0) FROM chunks c WHERE c.document_id = d.id)"
    ).fetchone()[0]
    assert bad == 0
    fts = coll.conn.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0]
    assert fts == len(ids)


def faiss_ids(index: VectorIndex) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(index.index.id_map)


def test_create_add_search_reopen(tmp_path: Path, tiny_embedder) -> None:
    write_docs(tmp_path / "docs", 12)
    coll = Collection.create(tmp_path / "c", embedder=tiny_embedder, chunk_tokens=16, overlap=2)
    report = coll.add([tmp_path / "docs"])
    assert report.added == 12 and report.chunks >= 12 and not report.failed
    consistent(coll)
    hits = coll.search("falcon garden", k=3, mode="keyword")
    assert hits and all("falcon" in h.text or "garden" in h.text for h in hits)
    dense = coll.search("Document 3", k=5, mode="dense")
    assert len(dense) == 5 and dense[0].score >= dense[-1].score
    hybrid = coll.search("falcon", k=4, mode="hybrid")
    assert {"score", "text", "path", "title", "chunk"} <= set(hybrid[0].to_dict())
    info = coll.info()
    assert (info["documents"], info["dim"], info["precision"], info["index"]) == (
        12,
        64,
        "float32",
        "exact-float32",
    )
    coll.close()
    assert (tmp_path / "c" / INDEX_FILE).is_file()
    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as again:
        assert again.search("Document 3", k=5, mode="dense")[0].chunk_id == dense[0].chunk_id
        assert again.add([tmp_path / "docs"]).unchanged == 12


def test_documents_are_rebuilt_from_their_chunks(tmp_path: Path, tiny_embedder) -> None:
    long = " ".join(f"Sentence {i} about the falcon and its garden." for i in range(40))
    with Collection.create(tmp_path / "c", embedder=tiny_embedder, chunk_tokens=24, overlap=6) as coll:
        coll.add_texts([long, "short one"], ids=["a", "b"], titles=["Falcons", None], metadata=[{"k": 1}, {}])
        assert coll.info()["chunks"] > 4  # the long text really is split, with overlaps
        docs = list(coll.documents())
    assert [(d.source, d.title, d.metadata) for d in docs] == [("a", "Falcons", {"k": 1}), ("b", None, {})]
    assert docs[0].text.split() == long.split() and docs[1].text == "short one"


def test_sync_reembeds_changed_and_removes_deleted(tmp_path: Path, tiny_embedder) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 5)
    coll = Collection.create(tmp_path / "c", embedder=tiny_embedder)
    coll.add([docs])
    (docs / "doc001.txt").write_text("Completely new words: zebra quartz.")
    (docs / "doc002.txt").unlink()
    write_docs(docs, 1, start=10)
    report = coll.sync()
    assert (report.added, report.updated, report.unchanged, report.removed) == (1, 1, 3, 1)
    consistent(coll)
    assert coll.search("zebra", k=1, mode="keyword")[0].path.endswith("doc001.txt")
    assert not coll.search("number 2", k=20, mode="keyword", filters={"path": str(docs / "doc002.txt")})
    assert coll.delete([docs / "doc003.txt"]) == 1
    consistent(coll)
    assert coll.info()["documents"] == 4


def test_dedup_filters_and_add_texts(tmp_path: Path, tiny_embedder) -> None:
    coll = Collection.create(tmp_path / "c", embedder=tiny_embedder)
    report = coll.add_texts(
        ["red apples", "green pears", "red apples"],
        ids=["a", "b", "c"],
        metadata=[{"lang": "en"}, {"lang": "fr"}, {"lang": "en"}],
    )
    assert (report.added, report.duplicates) == (2, 1)
    hits = coll.search("red apples", k=5, mode="dense", filters={"lang": "fr"})
    assert [h.source for h in hits] == ["b"]
    hits = coll.search("apples pears", k=5, mode="hybrid", filters={"lang": ["en", "fr"]})
    assert {h.source for h in hits} == {"a", "b"}
    assert coll.add_texts(["red apples, changed"], ids=["a"]).updated == 1
    consistent(coll)


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_quantised_precisions_rescore_exactly(tmp_path: Path, tiny_embedder, precision: str) -> None:
    write_docs(tmp_path / "docs", 30)
    coll = Collection.create(tmp_path / "c", embedder=tiny_embedder, vectors=precision)
    coll.add([tmp_path / "docs"])
    consistent(coll)
    query = tiny_embedder.encode_query(["Document 7 talks about"])[0]
    ids, vecs = zip(
        *[
            (r[0], np.frombuffer(r[1], np.float32))
            for r in coll.conn.execute("SELECT id, vector FROM chunks")
        ],
        strict=False,
    )
    exact = np.array(ids)[np.argsort(-(np.stack(vecs) @ query))][:3]
    hits = coll.search("Document 7 talks about", k=3, mode="dense")
    assert next(h.chunk_id for h in hits) == exact[0]
    assert hits[0].score == pytest.approx(float(np.stack(vecs)[list(ids).index(exact[0])] @ query), abs=1e-5)


def test_ann_index_chosen_past_threshold(tmp_path: Path, tiny_embedder, monkeypatch) -> None:
    monkeypatch.setattr(vectors_module, "ANN_THRESHOLD", 20)
    write_docs(tmp_path / "docs", 30)
    coll = Collection.create(tmp_path / "c", embedder=tiny_embedder)
    coll.add([tmp_path / "docs"])
    assert coll.info()["index"] == "hnsw-float32"
    record = json.loads((tmp_path / "c" / RECORD_FILE).read_text())
    assert record["kind"] == "hnsw" and record["count"] == coll.info()["chunks"]
    coll.delete([tmp_path / "docs" / "doc000.txt"])  # HNSW cannot remove: rebuilt from SQLite
    consistent(coll)


def test_refuses_other_model_dim_or_precision(tmp_path: Path, tiny_embedder) -> None:
    Collection.create(tmp_path / "c", embedder=tiny_embedder, dim=32, vectors="int8").close()
    with pytest.raises(CollectionMismatchError, match="dim 32, not 64"):
        Collection.open(tmp_path / "c", dim=64)
    with pytest.raises(CollectionMismatchError, match="vector precision int8, not binary"):
        Collection.open(tmp_path / "c", vectors="binary")
    other = make_tiny_checkpoint(tmp_path / "other", dense_dim=96)
    from gemvec import Embedder

    coll = Collection.open(tmp_path / "c", embedder=None, model=str(other))
    with pytest.raises(CollectionMismatchError, match="built with model"):
        _ = coll.embedder
    with pytest.raises(CollectionError, match="No collection"):
        Collection.open(tmp_path / "missing")
    with pytest.raises(CollectionMismatchError):
        Collection.open(tmp_path / "c", embedder=Embedder.load(other))


def test_damaged_index_file_is_rebuilt_from_sqlite(tmp_path: Path, tiny_embedder) -> None:
    write_docs(tmp_path / "docs", 6)
    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        coll.add([tmp_path / "docs"])
        expected = [h.chunk_id for h in coll.search("Document 2", k=3, mode="dense")]
    (tmp_path / "c" / INDEX_FILE).write_bytes(b"garbage")
    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as coll:
        assert [h.chunk_id for h in coll.search("Document 2", k=3, mode="dense")] == expected
        consistent(coll)


def test_named_collections_live_under_gemvec_home(tmp_path: Path, tiny_embedder, monkeypatch) -> None:
    monkeypatch.setenv("GEMVEC_HOME", str(tmp_path / "home"))
    Collection.create("notes", embedder=tiny_embedder).close()
    assert [p.name for p in list_collections()] == ["notes"]
    assert (tmp_path / "home" / "collections" / "notes" / "gemvec.sqlite").is_file()
    with pytest.raises(CollectionError, match="already exists"):
        Collection.create("notes", embedder=tiny_embedder)
    delete_collection("notes")
    assert list_collections() == []


def test_vector_index_search_with_allowed_ids() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for precision in VectorPrecision:
        index = VectorIndex.build(IndexSpec(32, precision), np.arange(200) + 1000, x)
        _, ids = index.search(x[:1], 5, allowed=np.array([1003, 1007, 1150]))
        assert set(ids[0][ids[0] >= 0].tolist()) == {1003, 1007, 1150}
        restored = VectorIndex.from_bytes(index.spec, index.to_bytes(), index.trained_on)
        assert restored.ntotal == 200


def test_sqlite_is_a_plain_readable_database(tmp_path: Path, tiny_embedder) -> None:
    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        coll.add_texts(["hello world"], ids=["h"])
    conn = sqlite3.connect(tmp_path / "c" / "gemvec.sqlite")
    settings = dict(conn.execute("SELECT key, value FROM settings"))
    assert settings["dim"] == "64" and settings["precision"] == "float32" and settings["model_id"]


def test_old_keyword_spellings_still_work_with_a_warning(tmp_path: Path, tiny_embedder) -> None:
    with pytest.warns(DeprecationWarning, match="compute_precision"):
        old = Collection.create(
            tmp_path / "a", embedder=tiny_embedder, precision="int8", compute_precision="float32"
        )
    assert old.info()["precision"] == "int8"  # the old pair: precision= meant the stored vectors
    old.close()
    with pytest.warns(DeprecationWarning, match="vectors='binary'"):
        binary = Collection.create(tmp_path / "b", embedder=tiny_embedder, precision="binary")
    assert binary.vectors.value == "binary"
    binary.close()
    with pytest.raises(TypeError, match="unexpected keyword"):
        Collection.open(tmp_path / "a", colour="blue")
