"""Choose int8-dynamic's outlier remedy: cosine to float32 of candidate schemes on calibration text.

Per-token int8 activations lose the small values of a row to its largest one, and
EmbeddingGemma's rows are spiky (a token's largest value is 10-30x its RMS; in the MLP's down
projection one channel can hold nearly all of it). The candidates, each applied to every layer:

- ``per-token``: no remedy;
- ``bf16:P``: projection(s) P (``qkv``, ``o``, ``gate_up``, ``down``, ``/``-separated) in bfloat16;
- ``sqA:P``: SmoothQuant with migration strength A: input channel j of P divided by
  ``s_j = max|x_j|^A / max|W_j|^(1-A)`` (calibrated maxima), folded exactly into the norm
  before qkv/gate_up, or into the rows of v (before o) and of up (before down);
- ``hadB:P``: P multiplies in a basis rotated by block-diagonal BxB Hadamard matrices
  (QuaRot-style; the shipped scheme is ``had128`` on all four);
- ``+`` combines them.

The calibration texts are those of ``int4_plan.py`` (gettext catalogues in 30 languages and
README/CHANGELOG paragraphs; no evaluation set), every second one by default.

    python benchmarks/int8_outliers.py --model $EMBEDDINGGEMMA_DIR                 # BENCHMARKS.md's table
    python benchmarks/int8_outliers.py --model $EMBEDDINGGEMMA_DIR --schemes per-token had128:down
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from int4_plan import calibration_texts
from torch import nn

from gemvec import Embedder
from gemvec.model.gemma3 import Linear
from gemvec.model.int8_compute import Int8ComputeLinear, hadamard, rotate
from gemvec.model.quantize import quantize
from gemvec.model.save import PROJECTION_MODULES

ALL = "qkv/o/gate_up/down"
SCHEMES = [
    "per-token",
    "bf16:down",
    "bf16:qkv",
    "bf16:gate_up",
    "bf16:o",
    "sq0.5:qkv/gate_up",
    "sq0.8:qkv/gate_up",
    "sq0.5:down",
    f"sq0.5:{ALL}",
    "sq0.5:qkv/gate_up/o+bf16:down",
    "had128:down",
    "had128:qkv/gate_up",
    f"had64:{ALL}",
    f"had128:{ALL}",
]


def projections(embedder: Embedder, layer: int) -> dict[str, nn.Module]:
    return {name: attribute(embedder.encoder.layers[layer]) for name, attribute in PROJECTION_MODULES.items()}


class RotatedLinear(nn.Module):
    """int8 compute in a basis rotated by BxB Hadamard blocks (any B; the product uses 128)."""

    def __init__(self, weight: torch.Tensor, size: int) -> None:
        super().__init__()
        self.block = hadamard(size)
        rotated = rotate(weight.float(), self.block) / size
        self.inner = Int8ComputeLinear(quantize(rotated, 8))
        self.inner.rotation, self.inner.rotation_bf16 = torch.eye(1), torch.eye(1, dtype=torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(rotate(x, self.block.to(x.dtype)))


class PlainInt8(Int8ComputeLinear):
    """int8 compute without the rotation: per-token activations as they come."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__(quantize(weight.float(), 8))
        self.rotation, self.rotation_bf16 = torch.eye(1), torch.eye(1, dtype=torch.bfloat16)


def calibrate(reference: Embedder, texts: list[str]) -> tuple[np.ndarray, dict]:
    """float32 vectors of ``texts``, and each projection's largest |input| per channel."""
    maxima: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    for layer in range(len(reference.encoder.layers)):
        for name, module in projections(reference, layer).items():

            def hook(module, args, out, key=(layer, name)) -> None:
                x = args[0].reshape(-1, args[0].shape[-1]).float().abs().amax(0)
                maxima[key] = torch.maximum(maxima[key], x) if key in maxima else x

            hooks.append(module.register_forward_hook(hook))
    vectors = reference.encode_document(texts, batch_size=8)
    for hook in hooks:
        hook.remove()
    return vectors, maxima


def apply(scheme: str, model: Embedder, weights: dict, maxima: dict, norms: dict) -> None:
    """Rebuild ``model``'s projections (and restore or rescale its norms) for ``scheme``."""
    weights = {key: w.clone() for key, w in weights.items()}
    heads = model.encoder.config.num_attention_heads
    head_dim = model.encoder.config.head_dim
    width = model.encoder.layers[0].mlp.width
    kv_rows = model.encoder.config.num_key_value_heads * head_dim
    chosen: dict[tuple[int, str], str] = {}
    for layer, (before_attention, before_mlp) in norms.items():
        model.encoder.layers[layer].input_layernorm.scale.copy_(before_attention)
        model.encoder.layers[layer].pre_feedforward_layernorm.scale.copy_(before_mlp)
    for part in scheme.split("+"):
        kind, _, which = part.partition(":")
        for layer in norms:
            for name in which.split("/") if which else ():
                if kind.startswith("sq"):
                    smooth(
                        model,
                        layer,
                        name,
                        float(kind[2:]),
                        weights,
                        maxima,
                        (heads, head_dim, width, kv_rows),
                    )
                else:
                    chosen[(layer, name)] = kind
    for (layer, name), weight in weights.items():
        kind = chosen.get((layer, name), "per-token")
        if kind == "bf16":
            module: nn.Module = Linear(weight.to(torch.bfloat16))
        elif kind.startswith("had"):
            module = RotatedLinear(weight, int(kind[3:]))
        else:
            module = PlainInt8(weight)
        parent = (
            model.encoder.layers[layer].self_attn if name in ("qkv", "o") else model.encoder.layers[layer].mlp
        )
        setattr(parent, f"{name}_proj", module)


def smooth(model, layer: int, name: str, alpha: float, weights, maxima, sizes) -> None:
    heads, head_dim, width, kv_rows = sizes
    x_max = maxima[(layer, name)].clamp(min=1e-5)
    w_max = weights[(layer, name)].abs().amax(0).clamp(min=1e-5)
    if name == "o":  # one factor per head dimension: the one v head feeds every query head
        x_max, w_max = x_max.view(heads, head_dim).amax(0), w_max.view(heads, head_dim).amax(0)
    factor = (x_max.pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)
    block = model.encoder.layers[layer]
    if name == "qkv":
        block.input_layernorm.scale.div_(factor)
    elif name == "gate_up":
        block.pre_feedforward_layernorm.scale.div_(factor)
    elif name == "down":
        weights[(layer, "gate_up")][width:] /= factor[:, None]
    else:
        weights[(layer, "qkv")][-kv_rows:] /= factor[:, None]
        factor = factor.repeat(heads)
    weights[(layer, name)] *= factor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--every", type=int, default=2, help="use every Nth calibration text")
    parser.add_argument("--schemes", nargs="+", default=SCHEMES)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = calibration_texts()[:: args.every]
    texts, languages = [t for _, t in pairs], [lang for lang, _ in pairs]
    print(f"{len(texts)} calibration texts in {len(set(languages))} languages", flush=True)
    reference = Embedder.load(args.model, "float32")
    vectors, maxima = calibrate(reference, texts)
    weights = {
        (layer, name): module.weight.float().clone()
        for layer in range(len(reference.encoder.layers))
        for name, module in projections(reference, layer).items()
    }
    del reference
    for precision in ("bfloat16", "int8", "int8-dynamic"):
        report(f"{precision} (as shipped)", Embedder.load(args.model, precision), texts, vectors, languages)
    model = Embedder.load(args.model, "int8-dynamic")
    norms = {
        layer: (block.input_layernorm.scale.clone(), block.pre_feedforward_layernorm.scale.clone())
        for layer, block in enumerate(model.encoder.layers)
    }
    for scheme in args.schemes:
        apply(scheme, model, weights, maxima, norms)
        report(scheme, model, texts, vectors, languages)


def report(name: str, model: Embedder, texts: list[str], reference: np.ndarray, languages: list[str]) -> None:
    started = time.perf_counter()
    cosine = (model.encode_document(texts, batch_size=8) * reference).sum(axis=1)
    worst = int(np.argmin(cosine))
    print(
        f"{name:34s} mean {cosine.mean():.5f}  p10 {np.quantile(cosine, 0.1):.5f}  "
        f"worst {cosine[worst]:.5f} ({languages[worst]})  [{time.perf_counter() - started:.0f} s]",
        flush=True,
    )


if __name__ == "__main__":
    main()
