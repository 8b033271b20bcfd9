"""``collections check`` and ``repair`` on real damaged SQLite files (#21.9): header and b-tree pages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_store import consistent, write_docs

from gemvec.errors import CollectionDamagedError
from gemvec.store import Collection
from gemvec.store.integrity import check
from gemvec.store.repair import repair_collection

PAGE = 4096


def build(tmp_path: Path, embedder, n: int = 40) -> tuple[Path, list[int]]:
    write_docs(tmp_path / "docs", n)
    with Collection.create(tmp_path / "c", embedder=embedder) as coll:
        coll.add([tmp_path / "docs"])
        expected = [h.chunk_id for h in coll.search("Document 7 talks about", k=5, mode="dense")]
    return tmp_path / "c", expected


def leaf_pages(db: Path, table: str) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [
            r[0]
            for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,))
        ]
    finally:
        conn.close()


def smash(db: Path, page: int) -> None:
    """Overwrite one database page with garbage, as a bad disk sector would."""
    with open(db, "r+b") as f:
        f.seek((page - 1) * PAGE)
        f.write(bytes((i * 97 + 13) % 256 for i in range(PAGE)))


def test_a_healthy_collection_checks_ok_and_repairs_to_the_same(tmp_path: Path, tiny_embedder) -> None:
    folder, expected = build(tmp_path, tiny_embedder)
    report = check(folder)
    assert report.ok and report.problems == [] and report.counts["documents"] == 40
    fixed = repair_collection(folder)
    assert (fixed.documents_kept, fixed.documents_lost, fixed.chunks_lost) == (40, 0, 0)
    with Collection.open(folder, embedder=tiny_embedder) as coll:
        assert [h.chunk_id for h in coll.search("Document 7 talks about", k=5, mode="dense")] == expected
        consistent(coll)


def test_a_damaged_header_is_reported_and_everything_salvaged(tmp_path: Path, tiny_embedder) -> None:
    folder, expected = build(tmp_path, tiny_embedder)
    with open(folder / "gemvec.sqlite", "r+b") as f:
        f.write(b"\xff" * 100)
    with pytest.raises(CollectionDamagedError, match="collections repair"):
        Collection.open(folder)
    report = check(folder)
    assert not report.ok and any("not a database" in p for p in report.problems)
    fixed = repair_collection(folder)
    assert (fixed.documents_kept, fixed.documents_lost) == (40, 0)
    assert Path(fixed.damaged_copy).is_file()
    assert check(folder).ok
    with Collection.open(folder, embedder=tiny_embedder) as coll:
        assert [h.chunk_id for h in coll.search("Document 7 talks about", k=5, mode="dense")] == expected
        consistent(coll)


def test_a_damaged_chunk_page_loses_only_its_documents_and_sync_restores_them(
    tmp_path: Path, tiny_embedder
) -> None:
    folder, _ = build(tmp_path, tiny_embedder, n=120)
    pages = leaf_pages(folder / "gemvec.sqlite", "chunks")
    assert len(pages) > 3
    smash(folder / "gemvec.sqlite", pages[len(pages) // 2])

    with Collection.open(folder, embedder=tiny_embedder) as coll, pytest.raises(CollectionDamagedError):
        for word in ("apple", "banana", "cherry", "lemon"):  # some query reads the smashed page
            coll.search(f"Document talks about {word}", k=120, mode="dense")
    report = check(folder)
    assert not report.ok and any("integrity" in p for p in report.problems)

    fixed = repair_collection(folder)
    assert fixed.documents_lost > 0 and fixed.documents_kept + fixed.documents_lost == 120
    assert fixed.files_to_reread == fixed.documents_lost
    assert check(folder).ok
    with Collection.open(folder, embedder=tiny_embedder) as coll:
        assert coll.info()["documents"] == fixed.documents_kept
        consistent(coll)
        report = coll.sync()
        assert report.added == fixed.documents_lost
        assert coll.info()["documents"] == 120
        consistent(coll)
