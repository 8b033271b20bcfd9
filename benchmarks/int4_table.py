"""Choose int4's embedding-table quantiser: row error and cosine to float32 of candidate codebooks.

int4 keeps the encoder 8-bit and only the (262144, 768) embedding table 4-bit, so the table's
quantiser is all that separates int4 from int8. Each candidate maps a group of G values to 16
levels of a codebook times the group's scale (of least squared error among 19 around absmax over
the top level); the scale is float16, or 8 bits (a step of 2^(1/32) below a float32 per row).
At 5 bits a weight: groups of 16 with float16 scales, or groups of 8 with 8-bit scales.
Codebooks:

- ``uniform``: the integers -8..7 (format 2's int4: uniform g16 float16),
- ``nf4``: QLoRA's NormalFloat levels (quantiles of a normal distribution),
- ``lloyd``: 16 levels fitted to the table itself (Lloyd-Max on 400,000 random groups; weights
  only, no calibration text). ``--fit`` prints the g8 8-bit fit, gemvec's ``INT4_CODEBOOK``.

Reported per candidate: the mean relative error of the table rows the calibration texts use
(token-weighted) and, with ``--cosine``, the cosine of int4 vectors (8-bit encoder, the candidate
table) to float32's on the calibration texts of ``int4_plan.py`` (no evaluation set). The last
row is gemvec's own int4 (``gemvec.model.quantize``).

    python benchmarks/int4_table.py --model $EMBEDDINGGEMMA_DIR --cosine --every 4
    python benchmarks/int4_table.py --model $EMBEDDINGGEMMA_DIR --fit
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int4_plan import calibration_texts

from gemvec import Embedder
from gemvec.model.quantize import quantize

NF4 = (
    -1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1848074, -0.0910500, 0.0,
    0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0,
)  # fmt: skip
SCALE_FACTORS = torch.tensor([1 - 0.02 * k for k in range(16)] + [1.05, 1.1, 8 / 7])


def float16_scales(scales: torch.Tensor, group: int) -> torch.Tensor:
    """Scales rounded to float16."""
    return scales.clamp(min=2.0**-24).to(torch.float16).float()


def log8_scales(scales: torch.Tensor, group: int) -> torch.Tensor:
    """Scales rounded to 8-bit steps of 2^(1/32) below their row's largest (a float32 per row):
    (groups, ) reshaped as rows of 768 // group."""
    per_row = scales.reshape(-1, 768 // group).clamp(min=1e-30)
    top = per_row.amax(dim=1, keepdim=True)
    steps = (torch.log2(per_row / top) * -32).round().clamp(0, 255)
    return (top * torch.exp2(-steps / 32)).reshape(-1)


def quantize_groups(
    groups: torch.Tensor, codebook: torch.Tensor, round_scales: ScaleRounding
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (n, G) and rounded scales (n,) of float32 groups (n, G): per group the scale, of
    absmax / the codebook's largest level times each of SCALE_FACTORS, with the least squared error."""
    base = groups.abs().amax(dim=1) / codebook.max()
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    best_codes = best_scales = best_error = None
    for factor in SCALE_FACTORS:
        scales = round_scales(base * factor, groups.shape[1])
        codes = torch.bucketize(groups / scales[:, None], midpoints)
        error = (codebook[codes] * scales[:, None] - groups).pow(2).sum(dim=1)
        if best_error is None:
            best_codes, best_scales, best_error = codes, scales, error
        else:
            better = error < best_error
            best_codes = torch.where(better[:, None], codes, best_codes)
            best_scales = torch.where(better, scales, best_scales)
            best_error = torch.where(better, error, best_error)
    return best_codes, best_scales


ScaleRounding = Callable[[torch.Tensor, int], torch.Tensor]
SCALES: dict[str, ScaleRounding] = {"float16": float16_scales, "8-bit": log8_scales}


@dataclass(frozen=True)
class Candidate:
    codebook: torch.Tensor
    group: int
    scales: str

    def dequantize(self, rows: torch.Tensor) -> torch.Tensor:
        groups = rows.float().reshape(-1, self.group)
        codes, scales = quantize_groups(groups, self.codebook, SCALES[self.scales])
        return (self.codebook[codes] * scales[:, None]).reshape(rows.shape)


class Gemvec:
    """gemvec's own int4 (what ``Embedder.load(..., "int4")`` does to the table)."""

    def dequantize(self, rows: torch.Tensor) -> torch.Tensor:
        return quantize(rows, 4).dequantize()


def lloyd_codebook(
    table: torch.Tensor, group: int, scales: str, samples: int = 400_000, rounds: int = 24, seed: int = 0
) -> torch.Tensor:
    """16 levels fitted to ``samples`` random groups of the table: alternately quantise with the
    scale search and move each level to the scale-weighted mean of the values it holds."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, table.shape[0], (samples // (table.shape[1] // group) + 1,), generator=generator)
    groups = table.index_select(0, rows.sort().values).float().reshape(-1, group)
    codebook = torch.tensor(NF4)
    for _ in range(rounds):
        codes, steps = quantize_groups(groups, codebook, SCALES[scales])
        weights = steps[:, None].expand_as(groups)
        numerator = torch.zeros(16).index_add_(0, codes.flatten(), (groups * weights).flatten())
        denominator = torch.zeros(16).index_add_(0, codes.flatten(), (weights * weights).flatten())
        codebook = torch.where(denominator > 0, numerator / denominator.clamp(min=1e-30), codebook)
        codebook = codebook.sort().values / codebook.max()
    return codebook


class CandidateTable:
    """Stands in for the encoder's table: gathered rows quantised with a candidate codebook."""

    def __init__(self, table: torch.Tensor, candidate: Candidate | Gemvec) -> None:
        self.table, self.candidate = table, candidate

    def index_select(self, dim: int, ids: torch.Tensor) -> torch.Tensor:
        return self.candidate.dequantize(self.table.index_select(0, ids))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--every", type=int, default=1, help="use every Nth calibration text")
    parser.add_argument("--cosine", action="store_true", help="also encode the texts with each table")
    parser.add_argument("--fit", action="store_true", help="print the g8 8-bit Lloyd codebook and exit")
    args = parser.parse_args()
    embedder = Embedder.load(args.model, "int4")
    table = embedder.encoder.embed_tokens.weight
    if args.fit:
        print(", ".join(f"{v:.4f}" for v in lloyd_codebook(table, 8, "8-bit").tolist()))
        return
    pairs = calibration_texts()[:: args.every]
    texts, languages = [t for _, t in pairs], [lang for lang, _ in pairs]
    ids = torch.tensor([i for row in embedder.tokenizer.encode(texts).ids for i in row])
    used = table.index_select(0, ids).float()
    print(f"{len(texts)} texts, {ids.numel()} tokens ({ids.unique().numel()} distinct rows)", flush=True)
    uniform = torch.arange(-8, 8, dtype=torch.float32) / 7
    candidates: dict[str, Candidate | Gemvec] = {}
    for group, scales in ((16, "float16"), (8, "8-bit")):
        started = time.perf_counter()
        fitted = lloyd_codebook(table, group, scales)
        print(
            f"lloyd g{group} {scales} fitted in {time.perf_counter() - started:.0f} s: "
            + " ".join(f"{v:+.4f}" for v in fitted.tolist()),
            flush=True,
        )
        for name, codebook in (("uniform", uniform), ("nf4", torch.tensor(NF4)), ("lloyd", fitted)):
            candidates[f"{name} g{group} {scales}"] = Candidate(codebook, group, scales)
    candidates["gemvec int4"] = Gemvec()
    reference = None
    if args.cosine:
        reference = Embedder.load(args.model, "float32").encode_document(texts, batch_size=16)
    for name, candidate in candidates.items():
        approx = candidate.dequantize(used)
        relative = ((approx - used).norm(dim=1) / used.norm(dim=1)).mean().item()
        line = f"{name:22s} row error {relative:.4f}"
        if reference is not None:
            embedder.encoder.embed_tokens = CandidateTable(table, candidate)
            cosine = (embedder.encode_document(texts, batch_size=16) * reference).sum(axis=1)
            worst = min(zip(cosine, languages, strict=True))
            line += (
                f"  cosine mean {cosine.mean():.5f} p10 {np.quantile(cosine, 0.1):.5f} "
                f"worst {worst[0]:.5f} ({worst[1]})"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
