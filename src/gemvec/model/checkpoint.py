"""Find an EmbeddingGemma checkpoint (local folder or hub id), check it, and load its weights.

Weights load strictly: every tensor the encoder needs is looked up by an explicit name
and its shape is checked against the config; missing or unexpected tensors are errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from gemvec.errors import CheckpointError, ModelNotFoundError
from gemvec.model.config import Gemma3TextConfig
from gemvec.model.quantize import ROTATION, QuantizedWeight
from gemvec.model.safetensors_mmap import SafetensorsFile

DEFAULT_MODEL = "google/embeddinggemma-300m"
MODEL_ENV = "GEMVEC_MODEL"
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "3_Dense/config.json",
    "3_Dense/model.safetensors",
)
OPTIONAL_FILES = (
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "gemvec_quant.json",
    "tokenizer.model",  # sentencepiece: the fast tokenizer path (tokenizer.json is the fallback)
)


def default_model() -> str:
    """The model gemvec uses when none is named: ``$GEMVEC_MODEL``, else the hub id."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def resolve_model_dir(model: str | os.PathLike[str] | None = None) -> Path:
    """Turn a folder path or hub id into a local folder holding the checkpoint."""
    name = str(model) if model is not None else default_model()
    path = Path(name).expanduser()
    if path.is_dir():
        check_layout(path)
        return path
    is_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~")) and not path.exists()
    if not is_hub_id:
        raise ModelNotFoundError(
            f"Model folder {name!r} does not exist (and it is not a hub id like "
            "'google/embeddinggemma-300m'). "
            f"Pass --model PATH (or set {MODEL_ENV}) to a folder with the sentence-transformers layout."
        )
    folder = _download(name)
    check_layout(folder)
    return folder


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = [*REQUIRED_FILES, *OPTIONAL_FILES]
    try:  # the hub cache first: works offline and costs no request
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except GatedRepoError:
        raise ModelNotFoundError(
            f"{repo_id} is gated. Accept its licence on huggingface.co, then set HF_TOKEN "
            "(or run `huggingface-cli login`) and try again."
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"The hub has no repository {repo_id!r} you can access. Check the id, or set HF_TOKEN if it "
            "is private or gated."
        ) from None
    except Exception as exc:  # network failures come in many types
        raise ModelNotFoundError(
            f"Could not download {repo_id} ({type(exc).__name__}: {exc}). Without network access, "
            f"pass --model PATH to a local copy (or set {MODEL_ENV})."
        ) from None


def check_layout(folder: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} is not a complete EmbeddingGemma checkpoint: missing {', '.join(missing)}. "
            "Download the whole sentence-transformers folder (config, weights, tokenizer, 1_Pooling, "
            "2_Dense, 3_Dense)."
        )


@dataclass(frozen=True)
class HeadConfig:
    """Pooling and the two Dense projections that follow the encoder."""

    pooling: str
    dense_shapes: tuple[tuple[int, int], ...]  # (out_features, in_features) per Dense layer
    prompts: dict[str, str]


def read_head_config(folder: Path) -> HeadConfig:
    pooling = _read_json(folder / "1_Pooling/config.json")
    if not pooling.get("pooling_mode_mean_tokens", pooling.get("pooling_mode") == "mean"):
        raise CheckpointError(
            f"{folder}/1_Pooling/config.json is not mean pooling, which EmbeddingGemma uses."
        )
    shapes = []
    for sub in ("2_Dense", "3_Dense"):
        dense = _read_json(folder / sub / "config.json")
        if dense.get("bias"):
            raise CheckpointError(f"{folder}/{sub} has a bias; EmbeddingGemma's Dense layers have none.")
        shapes.append((int(dense["out_features"]), int(dense["in_features"])))
    st_config = folder / "config_sentence_transformers.json"
    prompts = _read_json(st_config).get("prompts", {}) if st_config.is_file() else {}
    return HeadConfig(pooling="mean", dense_shapes=tuple(shapes), prompts=prompts)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Cannot read {path}: {exc}. Re-download the checkpoint.") from None


def expected_encoder_shapes(config: Gemma3TextConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the encoder, by its checkpoint name, with the shape the config implies."""
    h, q = config.hidden_size, config.num_attention_heads * config.head_dim
    kv, mlp, d = config.num_key_value_heads * config.head_dim, config.intermediate_size, config.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "embed_tokens.weight": (config.vocab_size, h),
        "norm.weight": (h,),
    }
    for i in range(config.num_hidden_layers):
        p = f"layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "pre_feedforward_layernorm.weight": (h,),
            p + "post_feedforward_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "self_attn.q_norm.weight": (d,),
            p + "self_attn.k_norm.weight": (d,),
            p + "mlp.gate_proj.weight": (mlp, h),
            p + "mlp.up_proj.weight": (mlp, h),
            p + "mlp.down_proj.weight": (h, mlp),
        }
    return shapes


def _strip_prefix(name: str) -> str:
    # Checkpoints saved from Gemma3ForCausalLM or an ST wrapper prefix the names.
    for prefix in ("model.", "0.auto_model.", "auto_model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


QUANT_MANIFEST = "gemvec_quant.json"


def read_quant_manifest(folder: Path) -> dict | None:
    """The quantisation a saved gemvec checkpoint was written with, or None for float weights."""
    path = folder / QUANT_MANIFEST
    return _read_json(path) if path.is_file() else None


def load_encoder_weights(
    folder: Path, config: Gemma3TextConfig
) -> tuple[dict[str, torch.Tensor | QuantizedWeight], SafetensorsFile]:
    """Memory-mapped encoder weights keyed by checkpoint name, shape-checked against the config,
    and the file they map (whose ``release`` drops a tensor's pages once it has been copied).

    A quantised gemvec checkpoint stores ``NAME.codes`` + ``NAME.scales`` instead of
    ``NAME.weight``; those come back as :class:`QuantizedWeight`.
    """
    file = SafetensorsFile(folder / "model.safetensors")
    manifest = read_quant_manifest(folder)
    bits = int(manifest["bits"]) if manifest else None
    by_name = {}
    for stored in file.names():
        name = _strip_prefix(stored)
        if bits and name.endswith(".codes"):
            by_name[name.removesuffix(".codes") + ".weight"] = stored
        elif not (bits and name.endswith((".scales", ".row_scales", ".codebook"))):
            by_name[name] = stored
    expected = expected_encoder_shapes(config)
    missing = sorted(set(expected) - set(by_name))
    unexpected = sorted(set(by_name) - set(expected) - {"lm_head.weight"})
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}/model.safetensors does not match its config.json "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}). "
            "Is this an EmbeddingGemma (Gemma 3 text) checkpoint?"
        )
    weights: dict[str, torch.Tensor | QuantizedWeight] = {}
    for name, shape in expected.items():
        stored = by_name[name]
        if stored.endswith(".codes"):
            scales = stored.removesuffix(".codes") + ".scales"
            if scales not in file.names():
                raise CheckpointError(f"{folder}/model.safetensors has {stored} but no {scales}.")
            codes = file.tensor(stored)  # int8 codes are 8-bit, packed uint8 pairs 4-bit (mixed in int4)
            tensor = QuantizedWeight(codes, file.tensor(scales), 8 if codes.dtype == torch.int8 else 4)
            codebook = stored.removesuffix(".codes") + ".codebook"
            if codebook in file.names():  # format 4
                row_scales = stored.removesuffix(".codes") + ".row_scales"
                if row_scales not in file.names():
                    raise CheckpointError(f"{folder}/model.safetensors has {codebook} but no {row_scales}.")
                tensor.row_scales, tensor.codebook = file.tensor(row_scales), file.tensor(codebook)
        else:
            tensor = file.tensor(stored)
        if tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"{folder}/model.safetensors: {name} has shape {tuple(tensor.shape)}, config implies {shape}."
            )
        weights[name] = tensor
    if manifest:
        check_quant_plan(folder, manifest, weights)
    return weights, file


QUANT_FORMATS = (1, 2, 3, 4)  # 3: int8-dynamic's rotated weights, 4: int4's codebook (gemvec.model.save)
# The checkpoint tensors behind each fused projection of a layer.
PROJECTION_PARTS = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}


def check_quant_plan(
    folder: Path, manifest: dict, weights: dict[str, torch.Tensor | QuantizedWeight]
) -> None:
    """The stored tensors must have the bits the manifest's plan (format 2) lists per layer; a
    format-1 folder has no plan (int4 then meant attention 8-bit, MLP 4-bit) and loads as stored."""
    if manifest.get("format", 1) not in QUANT_FORMATS:
        raise CheckpointError(
            f"{folder}/{QUANT_MANIFEST} is format {manifest.get('format')}, written by a newer gemvec; "
            "upgrade gemvec to load it."
        )
    rotation = manifest.get("rotation")
    if rotation is not None and rotation != ROTATION:
        raise CheckpointError(
            f"{folder}/{QUANT_MANIFEST} lists a rotation this gemvec does not know ({rotation}); "
            "upgrade gemvec, or quantise the float checkpoint again."
        )
    plan = manifest.get("plan")
    if not plan:
        return
    stored = {name: w.bits if isinstance(w, QuantizedWeight) else 32 for name, w in weights.items()}
    listed = {"embed_tokens.weight": plan.get("embed_tokens")}
    for projection, parts in PROJECTION_PARTS.items():
        for layer, bits in enumerate(plan.get(projection, [])):
            listed |= {f"layers.{layer}.{part}.weight": bits for part in parts}
    wrong = [name for name, bits in listed.items() if stored.get(name) != bits]
    if wrong:
        raise CheckpointError(
            f"{folder}/model.safetensors does not hold the bits {QUANT_MANIFEST} lists for "
            f"{', '.join(wrong[:3])}{'...' if len(wrong) > 3 else ''}. Quantise the checkpoint again."
        )


def load_dense_weights(folder: Path, head: HeadConfig) -> list[torch.Tensor]:
    out = []
    for sub, shape in zip(("2_Dense", "3_Dense"), head.dense_shapes, strict=True):
        file = SafetensorsFile(folder / sub / "model.safetensors")
        if "linear.weight" not in file.names():
            raise CheckpointError(f"{folder}/{sub}/model.safetensors has no 'linear.weight'.")
        weight = file.tensor("linear.weight")
        if tuple(weight.shape) != shape:
            raise CheckpointError(f"{folder}/{sub}: weight shape {tuple(weight.shape)}, config says {shape}.")
        out.append(weight)
    return out
