"""Why gemvec's int8 is weight-only: fbgemm dynamic int8 (per-tensor activation scale) vs float32.

Swaps the chosen linear layers of the real model for fbgemm dynamic-int8 ones and prints the
cosine of 64 SciFact abstracts (60 words) to the float32 embeddings.

    python benchmarks/int8_activation_quant.py --model $EMBEDDINGGEMMA_DIR --layers qkv_proj
    python benchmarks/int8_activation_quant.py --model $EMBEDDINGGEMMA_DIR   # all four layer kinds
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import torch

from gemvec import Embedder
from gemvec.model import gemma3

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class DynamicInt8Linear(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        weight = weight.float()
        scales = weight.abs().amax(1).clamp(min=1e-8) / 127
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        packed = torch.quantize_per_channel(weight, scales, zero, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(packed, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.shape[-1]), self.packed, True)
        return out.view(*x.shape[:-1], -1)


def swap(module: torch.nn.Module, names: set[str]) -> None:
    for name, child in module.named_children():
        if isinstance(child, gemma3.Linear):
            if name in names:
                setattr(module, name, DynamicInt8Linear(child.weight))
        else:
            swap(child, names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"))
    parser.add_argument("--layers", default="qkv_proj,o_proj,gate_up_proj,down_proj")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    lines = (DATA / "scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()[:64]
    docs = [" ".join(json.loads(line)["text"].split()[:60]) for line in lines]
    embedder = Embedder.load(args.model, "float32")
    reference = embedder.encode_document(docs)
    swap(embedder.encoder, set(args.layers.split(",")))
    cosine = (embedder.encode_document(docs) * reference).sum(axis=1)
    print(f"layers {args.layers}: min cosine {cosine.min():.4f}, mean {cosine.mean():.4f}")


if __name__ == "__main__":
    main()
