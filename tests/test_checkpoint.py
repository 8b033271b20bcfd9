"""Loading checkpoints: missing, corrupt, foreign and gated models each get one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from gemvec import Embedder
from gemvec.errors import CheckpointError, ModelNotFoundError
from gemvec.model import checkpoint


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Embedder.load(tmp_path / "nope")


@pytest.mark.parametrize("name", ["tokenizer.json", "2_Dense/model.safetensors", "model.safetensors"])
def test_missing_file_is_named(model_copy: Path, name: str) -> None:
    (model_copy / name).unlink()
    with pytest.raises(CheckpointError, match=f"missing {name}"):
        Embedder.load(model_copy)


def test_truncated_weights(model_copy: Path) -> None:
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        Embedder.load(model_copy)


def test_garbage_weights(model_copy: Path) -> None:
    (model_copy / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="JSON header"):
        Embedder.load(model_copy)
    (model_copy / "model.safetensors").write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="shorter than"):
        Embedder.load(model_copy)


def test_other_architecture(model_copy: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    config["model_type"] = "llama"
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'llama'"):
        Embedder.load(model_copy)


def test_missing_and_misshapen_tensors(model_copy: Path) -> None:
    path = model_copy / "model.safetensors"
    weights = load_file(path)
    weights.pop("layers.1.mlp.up_proj.weight")
    save_file(weights, path)
    with pytest.raises(CheckpointError, match=r"missing \['layers.1.mlp.up_proj.weight'\]"):
        Embedder.load(model_copy)
    weights = load_file(path) | {"layers.1.mlp.up_proj.weight": weights["layers.1.mlp.gate_proj.weight"][:5]}
    save_file(weights, path)
    with pytest.raises(CheckpointError, match="up_proj.weight has shape"):
        Embedder.load(model_copy)


def test_model_from_environment(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("GEMVEC_MODEL", str(tiny_model_dir))
    assert Embedder.load().folder == tiny_model_dir


def test_not_a_model_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist.*not a hub id"):
        checkpoint.resolve_model_dir("not a repo id")


def test_gated_hub_repo_says_to_set_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub cannot be reached here, so its answers are simulated at the library boundary."""
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    def fake_download(repo_id: str, local_files_only: bool = False, **_: object) -> str:
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        request = httpx.Request("GET", "https://huggingface.co/api/models/google/embeddinggemma-300m")
        raise GatedRepoError("403 gated", response=httpx.Response(403, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    with pytest.raises(ModelNotFoundError, match="gated.*HF_TOKEN"):
        checkpoint.resolve_model_dir("google/embeddinggemma-300m")


def test_offline_without_cache_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def fake_download(repo_id: str, local_files_only: bool = False, **_: object) -> str:
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    with pytest.raises(ModelNotFoundError, match="pass --model PATH"):
        checkpoint.resolve_model_dir("google/embeddinggemma-300m")


def test_hub_cache_is_used_first(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    import huggingface_hub

    calls = []

    def fake_download(repo_id: str, local_files_only: bool = False, **_: object) -> str:
        calls.append(local_files_only)
        return str(tiny_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert checkpoint.resolve_model_dir("google/embeddinggemma-300m") == tiny_model_dir
    assert calls == [True]
