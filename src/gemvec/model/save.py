"""Write a loaded model back to disk as a checkpoint folder, quantised weights included.

A quantised folder keeps the sentence-transformers layout (tokenizer, configs, Dense
layers copied as they are) and stores each quantised tensor as ``NAME.codes`` +
``NAME.scales``, recorded in ``gemvec_quant.json``; loading it needs no re-quantisation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from gemvec.errors import InputError
from gemvec.model.checkpoint import QUANT_MANIFEST, REQUIRED_FILES
from gemvec.model.gemma3 import Gemma3Encoder
from gemvec.model.int8_compute import Int8ComputeLinear
from gemvec.model.quantize import INT4_GROUP, ROTATION, QuantizedEmbedding, QuantizedLinear, QuantizedWeight

QUANTIZED_LINEARS = (QuantizedLinear, Int8ComputeLinear)
_COPIED = [f for f in REQUIRED_FILES if f != "model.safetensors"] + [
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
]


def encoder_tensors(encoder: Gemma3Encoder, bits: int | None) -> dict[str, torch.Tensor]:
    """The encoder's weights under checkpoint names, fused layers split back into their parts."""
    config = encoder.config
    q_rows = config.num_attention_heads * config.head_dim
    kv_rows = config.num_key_value_heads * config.head_dim
    out: dict[str, torch.Tensor] = {}

    def put(name: str, layer: torch.nn.Module, row_blocks: dict[str, int]) -> None:
        start = 0
        for part, rows in row_blocks.items():
            block = slice(start, start + rows)
            start += rows
            if isinstance(layer, QUANTIZED_LINEARS):
                weight = layer.quantized.rows(block)
                out.update({f"{name}{part}.{suffix}": t.contiguous() for suffix, t in weight.parts().items()})
            else:
                out[f"{name}{part}.weight"] = layer.weight[block].float().contiguous()

    for i, layer in enumerate(encoder.layers):
        p = f"layers.{i}."
        attn, mlp = layer.self_attn, layer.mlp
        put(p + "self_attn.", attn.qkv_proj, {"q_proj": q_rows, "k_proj": kv_rows, "v_proj": kv_rows})
        put(p + "self_attn.", attn.o_proj, {"o_proj": config.hidden_size})
        put(p + "mlp.", mlp.gate_up_proj, {"gate_proj": mlp.width, "up_proj": mlp.width})
        put(p + "mlp.", mlp.down_proj, {"down_proj": config.hidden_size})
        for norm in (
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ):
            out[f"{p}{norm}.weight"] = getattr(layer, norm).weight
        out[p + "self_attn.q_norm.weight"] = attn.q_norm.weight
        out[p + "self_attn.k_norm.weight"] = attn.k_norm.weight
    out["norm.weight"] = encoder.norm.weight

    table = encoder.embed_tokens
    if isinstance(table, QuantizedEmbedding):
        out |= {f"embed_tokens.{suffix}": t for suffix, t in table.quantized().parts().items()}
    else:
        out["embed_tokens.weight"] = table.float()
    return {name: tensor.cpu().contiguous() for name, tensor in out.items()}  # a GPU model saves too


QUANT_FORMAT = 2
ROTATED_FORMAT = 3  # the projections' weights are stored rotated (int8-dynamic); older gemvec refuses
CODEBOOK_FORMAT = 4  # 4-bit weights index a stored codebook, with 8-bit group scales (int4)


def quant_manifest(encoder: Gemma3Encoder, precision: str, bits: int) -> dict:
    """What ``gemvec_quant.json`` records: the precision and, per projection kind, the bits of
    each layer as stored (format 2; format 1 had no plan: int4 meant attention 8-bit, MLP 4-bit).
    Format 3 adds ``rotation``: int8-dynamic's weights are stored as ``W B / 128`` for
    block-diagonal 128x128 Hadamard ``B`` (:mod:`gemvec.model.int8_compute`). Format 4: 4-bit
    weights are ``NAME.codes`` indexing ``NAME.codebook`` with ``NAME.scales`` 8-bit steps below
    ``NAME.row_scales`` (:class:`gemvec.model.quantize.QuantizedWeight`)."""
    table = encoder.embed_tokens
    plan: dict[str, int | list[int]] = {
        "embed_tokens": table.bits if isinstance(table, QuantizedEmbedding) else 32
    }
    for projection, attribute in PROJECTION_MODULES.items():
        plan[projection] = [_bits(attribute(layer)) for layer in encoder.layers]
    manifest: dict = {"precision": precision, "bits": bits, "scheme": "symmetric", "format": QUANT_FORMAT}
    stored = table.weight if isinstance(table, QuantizedEmbedding) else None
    if isinstance(stored, QuantizedWeight) and stored.bits == 4 and stored.codebook is None:
        # an older folder's uniform int4 table, saved again as it was loaded
        manifest["group_size"] = stored.shape[1] // stored.scales.shape[1]
    elif bits == 4:
        manifest |= {"group_size": INT4_GROUP, "scheme": "codebook", "format": CODEBOOK_FORMAT}
    if any(
        isinstance(attribute(layer), Int8ComputeLinear)
        for attribute in PROJECTION_MODULES.values()
        for layer in encoder.layers
    ):
        manifest |= {"format": ROTATED_FORMAT, "rotation": ROTATION}
    return manifest | {"plan": plan}


PROJECTION_MODULES = {
    "qkv": lambda layer: layer.self_attn.qkv_proj,
    "o": lambda layer: layer.self_attn.o_proj,
    "gate_up": lambda layer: layer.mlp.gate_up_proj,
    "down": lambda layer: layer.mlp.down_proj,
}


def _bits(module: torch.nn.Module) -> int:
    return module.bits if isinstance(module, QUANTIZED_LINEARS) else 32


def save_checkpoint(
    encoder: Gemma3Encoder, source: Path, destination: Path, precision: str, bits: int | None
) -> Path:
    """Write `encoder` (+ files copied from `source`) to `destination`, atomically."""
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise InputError(f"{destination} exists and is not empty; choose a new folder.")
    tmp = Path(tempfile.mkdtemp(prefix=".gemvec-save-", dir=destination.parent))
    try:
        for name in _COPIED:
            if (source / name).is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, tmp / name)
        (tmp / "modules.json").write_text((source / "modules.json").read_text())
        save_file(encoder_tensors(encoder, bits), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if bits:
            manifest = quant_manifest(encoder, precision, bits)
            text = json.dumps(manifest, indent=2)  # a plan's list of bits on one line:
            text = re.sub(r"\[[\d,\s]+\]", lambda m: json.dumps(json.loads(m.group())), text)
            (tmp / QUANT_MANIFEST).write_text(text)
        if destination.exists():
            destination.rmdir()
        os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination
