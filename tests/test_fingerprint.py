"""The checkpoint fingerprint: content-sensitive, cached per file, and what collections check with it."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.numpy import save

from gemvec import Embedder
from gemvec.errors import CheckpointError, CollectionMismatchError
from gemvec.model import fingerprint
from gemvec.model.fingerprint import CACHE_FILE, hashed_files, model_fingerprint
from gemvec.store.identity import legacy_model_id, model_id, verify_model


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEMVEC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the fingerprint reads, in order."""
    log: list[Path] = []
    real = fingerprint.sha256_file

    def counting(path: Path) -> str:
        log.append(path)
        return real(path)

    monkeypatch.setattr(fingerprint, "sha256_file", counting)
    return log


def change_one_weight(path: Path) -> None:
    """Rewrite a safetensors file in place (same inode) with one value changed: same shapes and size."""
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
    tensors[min(tensors)].flat[0] += 1.0
    path.write_bytes(save(tensors, metadata=metadata))


def copy(source: Path, to: Path) -> Path:
    shutil.copytree(source, to)
    return to


@pytest.mark.parametrize("weights", ["model.safetensors", "3_Dense/model.safetensors"])
def test_one_changed_weight_changes_it(tiny_model_dir: Path, tmp_path: Path, weights: str) -> None:
    original = model_fingerprint(tiny_model_dir, "tiny")
    assert len(original) == 16 and int(original, 16) >= 0
    assert model_fingerprint(copy(tiny_model_dir, tmp_path / "same"), "other name") == original
    tuned = copy(tiny_model_dir, tmp_path / "tuned")
    size = (tuned / weights).stat().st_size
    change_one_weight(tuned / weights)
    assert (tuned / weights).stat().st_size == size  # the old header-only id could not tell them apart
    assert model_fingerprint(tuned, "tiny") != original


def test_no_folder_hashes_the_name() -> None:
    assert model_fingerprint(None, "a") == model_fingerprint(None, "a") != model_fingerprint(None, "b")


def test_a_folder_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        model_fingerprint(tmp_path, "empty")


def test_second_call_reads_no_file(tiny_model_dir: Path, cache_dir: Path, reads: list[Path]) -> None:
    first = model_fingerprint(tiny_model_dir, "tiny")
    files = hashed_files(tiny_model_dir)
    assert {p.name for p in files} >= {"model.safetensors", "config.json", "tokenizer.json"}
    assert reads == [p.resolve() for p in files]
    cached = json.loads((cache_dir / CACHE_FILE).read_text())["files"]
    assert set(cached) == {str(p.resolve()) for p in files}
    reads.clear()
    assert model_fingerprint(tiny_model_dir, "tiny") == first
    assert reads == []


def test_touched_file_is_read_again_with_the_same_result(
    tiny_model_dir: Path, tmp_path: Path, reads: list[Path]
) -> None:
    folder = copy(tiny_model_dir, tmp_path / "m")
    first = model_fingerprint(folder, "m")
    reads.clear()
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(time.time_ns(), weights.stat().st_mtime_ns + 10**9))
    assert model_fingerprint(folder, "m") == first
    assert reads == [weights.resolve()]


def test_rewrite_with_the_mtime_put_back_is_noticed(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = copy(tiny_model_dir, tmp_path / "m")
    first = model_fingerprint(folder, "m")
    weights = folder / "model.safetensors"
    before = weights.stat()
    time.sleep(0.05)  # the kernel's ctime clock may tick only every few ms
    change_one_weight(weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `rsync -t` do
    same = ("st_size", "st_mtime_ns", "st_ino")
    assert [getattr(weights.stat(), key) for key in same] == [getattr(before, key) for key in same]
    assert model_fingerprint(folder, "m") != first


@pytest.mark.parametrize(
    "content", [b"\x00\xff not json", b"[]", b'{"format": 1, "files": {"/x": 3}}', b'{"format": 1, "fi']
)
def test_corrupt_cache_is_ignored_and_replaced(
    tiny_model_dir: Path, cache_dir: Path, reads: list[Path], content: bytes
) -> None:
    expected = model_fingerprint(tiny_model_dir, "tiny")
    (cache_dir / CACHE_FILE).write_bytes(content)
    reads.clear()
    assert model_fingerprint(tiny_model_dir, "tiny") == expected
    assert len(reads) == len(hashed_files(tiny_model_dir))  # nothing trusted from it
    assert json.loads((cache_dir / CACHE_FILE).read_text())["format"] == 1


def test_cache_entry_with_another_stat_is_not_trusted(tiny_model_dir: Path, cache_dir: Path) -> None:
    expected = model_fingerprint(tiny_model_dir, "tiny")
    data = json.loads((cache_dir / CACHE_FILE).read_text())
    for entry in data["files"].values():
        entry["sha256"] = "0" * 64
        entry["stat"][1] += 1  # mtime
    (cache_dir / CACHE_FILE).write_text(json.dumps(data))
    assert model_fingerprint(tiny_model_dir, "tiny") == expected


@pytest.mark.parametrize("blocked", ["folder", "file"])
def test_unwritable_cache_is_ignored(
    tiny_model_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, blocked: str
) -> None:
    expected = model_fingerprint(tiny_model_dir, "tiny")
    if blocked == "folder":  # the cache folder cannot be created
        blocker = cache_dir.parent / "a file"
        blocker.write_text("")
        monkeypatch.setenv("GEMVEC_CACHE_DIR", str(blocker / "cache"))
    else:  # the cache file cannot be read nor replaced
        (cache_dir / CACHE_FILE).unlink()
        (cache_dir / CACHE_FILE).mkdir()
    assert model_fingerprint(tiny_model_dir, "tiny") == expected
    assert [p.name for p in cache_dir.iterdir()] == [CACHE_FILE]  # no temp file left behind


def test_verify_model(tiny_embedder: Embedder, tiny_model_dir: Path, tmp_path: Path) -> None:
    new = model_id(tiny_embedder)
    legacy = legacy_model_id(tiny_embedder)
    assert new != legacy
    assert verify_model(new, "tiny", "docs", tiny_embedder) is None
    assert verify_model(legacy, "tiny", "docs", tiny_embedder) == new  # an old collection: migrate
    tuned = copy(tiny_model_dir, tmp_path / "tuned")
    change_one_weight(tuned / "model.safetensors")
    with pytest.raises(CollectionMismatchError, match=r"docs was built with model tuned \(id [0-9a-f]{16}\)"):
        verify_model(model_fingerprint(tuned, "tuned"), "tuned", "docs", tiny_embedder)
    asked = re.escape(f"not {tiny_embedder.model_name} (id {new})")
    with pytest.raises(CollectionMismatchError, match=f"{asked}.*load tuned"):
        verify_model("0123456789abcdef", "tuned", "docs", tiny_embedder)
