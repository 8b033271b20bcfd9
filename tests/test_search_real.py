"""Search with the real EmbeddingGemma: a French question finds the English passage (a handful of texts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemvec.store import Collection

PASSAGES = {
    "fleming": "Alexander Fleming discovered penicillin in 1928 at St Mary's Hospital in London.",
    "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "mars": "Mars is often called the Red Planet because of the iron oxide on its surface.",
    "python": "Python is a programming language created by Guido van Rossum.",
}


@pytest.mark.real_model
def test_cross_lingual_dense_and_hybrid(tmp_path: Path, real_embedder) -> None:
    coll = Collection.create(tmp_path / "c", embedder=real_embedder, dim=256, vectors="int8")
    coll.add_texts(list(PASSAGES.values()), ids=list(PASSAGES))
    assert coll.search("Qui a découvert la pénicilline ?", k=1, mode="dense")[0].source == "fleming"
    assert (
        coll.search("Quelle planète est appelée la planète rouge ?", k=1, mode="hybrid")[0].source == "mars"
    )
    assert coll.search("Wann wurde der Eiffelturm fertiggestellt?", k=1, mode="dense")[0].source == "eiffel"
