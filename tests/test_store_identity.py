"""A collection refuses vectors of another model, down to one changed weight, and migrates old ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save
from test_store import write_docs

from gemvec import Embedder
from gemvec.errors import CollectionMismatchError
from gemvec.store import Collection
from gemvec.store.identity import legacy_model_id, model_id


def rewrite_weights(folder: Path, change) -> None:
    """Rewrite the encoder's safetensors file with ``change(tensors)`` applied: same names and shapes."""
    path = folder / "model.safetensors"
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
    change(tensors)
    path.write_bytes(save(tensors, metadata=metadata))


def test_a_checkpoint_with_one_changed_weight_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    identical = shutil.copytree(tiny_model_dir, tmp_path / "identical")
    changed = shutil.copytree(tiny_model_dir, tmp_path / "changed")

    def bump_one_value(tensors: dict[str, np.ndarray]) -> None:
        tensors[min(tensors)].flat[0] += 1.0

    rewrite_weights(changed, bump_one_value)
    with Collection.create(tmp_path / "c", embedder=Embedder.load(tiny_model_dir)) as coll:
        coll.add_texts(["The harbor has lemon trees."])
    with Collection.open(tmp_path / "c", embedder=Embedder.load(identical)) as coll:
        assert len(coll.search("lemon trees", k=1)) == 1
    with pytest.raises(CollectionMismatchError, match="built with model"):
        Collection.open(tmp_path / "c", embedder=Embedder.load(changed))


def test_a_collection_with_the_old_header_id_is_migrated_or_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Collections built before content fingerprints stored a header-only id: still open and search
    with their model (the id is rewritten), while a same-shape fine-tune is caught by a stored vector."""
    embedder = Embedder.load(tiny_model_dir)
    write_docs(tmp_path / "docs", 4)
    with Collection.create(tmp_path / "c", embedder=embedder) as coll:
        coll.add([tmp_path / "docs"])
        expected = [h.chunk_id for h in coll.search("Document 2", k=3)]
        coll.conn.execute(
            "UPDATE settings SET value = ? WHERE key = 'model_id'", (legacy_model_id(embedder),)
        )
    shutil.copytree(tmp_path / "c", tmp_path / "old")

    fine_tune = shutil.copytree(tiny_model_dir, tmp_path / "fine-tune")

    def perturb(tensors: dict[str, np.ndarray]) -> None:
        rng = np.random.default_rng(0)
        for name, value in tensors.items():
            if value.dtype.kind == "f" and value.ndim == 2:
                tensors[name] = (value + rng.normal(0, 0.5 * value.std(), value.shape)).astype(value.dtype)

    rewrite_weights(fine_tune, perturb)
    other = Embedder.load(fine_tune)
    assert legacy_model_id(other) == legacy_model_id(embedder)  # the old id cannot tell them apart
    with pytest.raises(CollectionMismatchError, match="stored chunk embeds at cosine"):
        Collection.open(tmp_path / "old", embedder=other)

    with Collection.open(tmp_path / "c", embedder=embedder) as coll:
        assert coll.settings["model_id"] == model_id(embedder)
        assert [h.chunk_id for h in coll.search("Document 2", k=3)] == expected
