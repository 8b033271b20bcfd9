"""int8 / int4 weight quantisation, and the layers that compute with quantised weights.

Weights only: activations stay float32. EmbeddingGemma's activations have outliers that
per-tensor activation quantisation (fbgemm's dynamic int8) cannot hold — it drops the
cosine to float32 below 0.93 — so the saving here is memory, at float32 speed.

- int8: symmetric, one scale per output row.
- int4: 16 levels of a codebook fitted to the embedding table (:data:`INT4_CODEBOOK`) times an
  8-bit scale per group of ``INT4_GROUP`` input values (the scale of least squared error,
  :func:`quantize`), two values a byte — 5 bits a weight, as many as the uniform groups of 16
  with float16 scales it replaced (folders of format 2), at 0.54x their squared error — the
  embedding table (two thirds of the weights) and the encoder projections the int4 plan
  (:func:`planned_bits`) marks; the rest of the encoder stays int8, as llama.cpp's K-quant mixes
  keep sensitive tensors at more bits. The plan was chosen by measured sensitivity per byte
  on a calibration set that is no evaluation set (``benchmarks/int4_plan.py``, BENCHMARKS.md).
  Folders saved before load as saved (the group is the scales' width): format 2 holds the
  table uniform int4 in groups of 16, format 1 also the MLPs, in groups of 32.

A :class:`QuantizedWeight` concatenates along rows without re-quantising, which is how the
encoder fuses q/k/v and gate/up, and how a saved quantised checkpoint reloads exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INT4_GROUP = 8
# int4's 16 levels (times a group's scale): fitted to EmbeddingGemma's embedding table by
# Lloyd-Max under this quantiser (``benchmarks/int4_table.py --fit``). Against the integers -8..7
# in groups of 16 with float16 scales (the same 5 bits a weight) the table's rows lose 27% less
# (relative error 0.060 vs 0.082 on the calibration texts' tokens).
INT4_CODEBOOK = (
    -0.9647, -0.7419, -0.5660, -0.4227, -0.3015, -0.1969, -0.1044, -0.0215,
    0.0590, 0.1451, 0.2400, 0.3447, 0.4624, 0.6013, 0.7725, 1.0,
)  # fmt: skip
# An int4 group's scale is 8 bits: its row's float32 scale times 2^(-k / SCALE_STEPS_PER_OCTAVE).
SCALE_STEPS_PER_OCTAVE = 32
_STEP_FACTORS = torch.exp2(-torch.arange(256, dtype=torch.float32) / SCALE_STEPS_PER_OCTAVE)
# int8-dynamic multiplies in a basis rotated by block-diagonal Hadamard matrices of this size
# (gemvec.model.int8_compute); a saved folder records it as ROTATION (manifest format 3).
ROTATION_BLOCK = 128
ROTATION = {"kind": "hadamard", "block": ROTATION_BLOCK}
# Per precision, a tag that changes with its numbers, so that caches of vectors made from a
# float checkpoint (gemvec.eval) do not serve an earlier scheme's: "-2" is issue 19's rotated
# int8-dynamic, "-3" its codebook int4.
SCHEME_TAGS = {"int4": "-3", "int8-dynamic": "-2"}

# The encoder's linear layers, as fused: q|k|v, o, gate|up, down.
PROJECTIONS = ("qkv", "o", "gate_up", "down")
# The int4 plan: the layers (by index) whose projection of each kind is 4-bit; every other
# projection is 8-bit. None, by measurement (``benchmarks/int4_plan.py``, BENCHMARKS.md): per
# byte saved, 4-bit projections cost 12-50x the cosine to float32 that the 4-bit embedding
# table does (even the least sensitive, the MLPs of the first layers), and int4 with every MLP
# 4-bit lost up to 2.3 points on the evaluation suite. The table, 2/3 of the weights, is 4-bit.
INT4_PLAN: dict[str, range] = {}


def planned_bits(bits: int, layer: int, projection: str) -> int:
    """Bits of encoder ``layer``'s ``projection`` (one of :data:`PROJECTIONS`) in a ``bits``-bit
    model: 8 in an int8 model; in an int4 model, 4 where :data:`INT4_PLAN` says so, else 8."""
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}; expected one of {PROJECTIONS}")
    return 4 if bits == 4 and layer in INT4_PLAN.get(projection, ()) else 8


@dataclass
class QuantizedWeight:
    """Integer codes plus scales for a (rows, cols) weight.

    - 8-bit: int8 codes (rows, cols), float32 scales (rows,).
    - 4-bit (format 4, :func:`quantize`): packed uint8 code pairs (rows, cols // 2) indexing
      ``codebook`` (16 float32 levels); uint8 ``scales`` (rows, cols // group), each the step
      k of the group's scale ``row_scales[row] * 2^(-k / 32)``; float32 ``row_scales`` (rows,).
    - 4-bit of folders saved before (formats 1-2): codes are the integers -8..7 offset by 8,
      ``scales`` float16 (float32 in format 1) per group, no codebook.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    bits: int
    row_scales: torch.Tensor | None = None
    codebook: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        rows, width = self.codes.shape
        return (rows, width * 2 if self.bits == 4 else width)

    def parts(self) -> dict[str, torch.Tensor]:
        """The stored tensors by checkpoint suffix (``NAME.codes``, ``NAME.scales``, ...)."""
        parts = {"codes": self.codes, "scales": self.scales}
        if self.codebook is not None:
            parts |= {"row_scales": self.row_scales, "codebook": self.codebook}
        return parts

    def rows(self, block: slice) -> QuantizedWeight:
        """The rows of ``block``, with a copy of the codebook (safetensors stores no shared tensor)."""
        row_scales = None if self.row_scales is None else self.row_scales[block]
        codebook = None if self.codebook is None else self.codebook.clone()
        return QuantizedWeight(self.codes[block], self.scales[block], self.bits, row_scales, codebook)

    def dequantize(self, rows: slice | torch.Tensor | None = None) -> torch.Tensor:
        """float32 weight (all rows, a slice, or gathered row indices)."""
        codes = self.codes if rows is None else self.codes[rows]
        scales = self.scales if rows is None else self.scales[rows]
        if self.bits == 8:
            return codes.float() * scales.unsqueeze(-1)
        nibbles = torch.stack((codes & 0x0F, codes >> 4), dim=-1).flatten(-2)  # (..., cols)
        if self.codebook is None:
            values = nibbles.to(torch.int8).float() - 8
            group_scales = scales.float()
        else:
            values = self.codebook[nibbles.long()]
            row_scales = self.row_scales if rows is None else self.row_scales[rows]
            group_scales = row_scales.unsqueeze(-1) * _STEP_FACTORS[scales.long()]
        grouped = values.unflatten(-1, (scales.shape[-1], -1)) * group_scales.unsqueeze(-1)
        return grouped.flatten(-2)

    @staticmethod
    def cat(parts: list[QuantizedWeight]) -> QuantizedWeight:
        first = parts[0]
        row_scales = None if first.row_scales is None else torch.cat([p.row_scales for p in parts])
        return QuantizedWeight(
            torch.cat([p.codes for p in parts]),
            torch.cat([p.scales for p in parts]),
            first.bits,
            row_scales,
            first.codebook,
        )


def quantize(weight: torch.Tensor, bits: int) -> QuantizedWeight:
    """Quantise a 2-D float weight: int8 symmetric round-to-nearest per row; int4 per group of
    :data:`INT4_GROUP` to the nearest of :data:`INT4_CODEBOOK`'s levels times the group's 8-bit
    scale of least squared error (19 candidates around absmax; rows are independent)."""
    weight = weight.float()
    if bits == 8:
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        codes = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        return QuantizedWeight(codes.contiguous(), scales.contiguous(), 8)
    if bits != 4:
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    cols = weight.shape[1]
    if cols % INT4_GROUP:
        raise ValueError(f"int4 needs a width divisible by {INT4_GROUP}, got {cols}")
    chunks = [_int4_rows(chunk) for chunk in weight.split(_INT4_CHUNK_ROWS)]
    codes, steps, row_scales = (torch.cat(part).contiguous() for part in zip(*chunks, strict=True))
    return QuantizedWeight(codes, steps, 4, row_scales, torch.tensor(INT4_CODEBOOK))


_INT4_CHUNK_ROWS = 8192  # the scale search holds a few float copies of this many rows
# Candidate int4 scales, as multiples of a group's absmax (over the codebook's top level).
INT4_SCALE_GRID = (*(1 - 0.02 * k for k in range(16)), 1.05, 1.1, 8 / 7)


def _int4_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed codes (rows, cols // 2), uint8 scale steps (rows, cols // INT4_GROUP) and float32
    row scales (rows,) of float32 rows."""
    rows, cols = weight.shape
    codebook = torch.tensor(INT4_CODEBOOK)
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    grouped = weight.view(rows, cols // INT4_GROUP, INT4_GROUP)
    base = grouped.abs().amax(dim=-1) / codebook.max()
    # Every candidate of every group is at most its row's scale, so no step is negative.
    row_scales = (base.amax(dim=1) * max(INT4_SCALE_GRID)).clamp(min=1e-30)
    best = None
    for factor in INT4_SCALE_GRID:
        steps = torch.log2(base * factor / row_scales[:, None]).mul(-SCALE_STEPS_PER_OCTAVE)
        steps = steps.nan_to_num(255).round().clamp(0, 255)
        scales = row_scales[:, None] * _STEP_FACTORS[steps.long()]
        codes = torch.bucketize(grouped / scales[..., None], midpoints)
        error = (codebook[codes] * scales[..., None] - grouped).pow(2).sum(dim=-1)
        if best is None:
            best = [codes, steps, error]
        else:
            better = error < best[2]
            best = [
                torch.where(better[..., None], codes, best[0]),
                torch.where(better, steps, best[1]),
                torch.where(better, error, best[2]),
            ]
    codes = best[0].view(rows, cols // 2, 2).to(torch.uint8)
    return codes[..., 0] | (codes[..., 1] << 4), best[1].to(torch.uint8), row_scales


class QuantizedLinear(nn.Module):
    """Bias-free linear layer over a quantised weight, dequantised to float32 per call."""

    def __init__(self, weight: QuantizedWeight) -> None:
        super().__init__()
        self.bits = weight.bits
        self.register_buffer("codes", weight.codes, persistent=False)
        self.register_buffer("scales", weight.scales, persistent=False)
        self.register_buffer("row_scales", weight.row_scales, persistent=False)
        self.register_buffer("codebook", weight.codebook, persistent=False)

    @property
    def quantized(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scales, self.bits, self.row_scales, self.codebook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized.dequantize().to(x.dtype))


class QuantizedEmbedding:
    """A (vocab, hidden) table with quantised rows; only the rows a batch needs are touched.

    Built from a saved quantised table, or from a float table (memory-mapped) whose gathered
    rows are quantised on the fly: rows are quantised independently, so both give the same
    numbers and the float table is never read whole.
    """

    def __init__(self, weight: QuantizedWeight | torch.Tensor, bits: int | None = None) -> None:
        self.weight, self.bits = weight, bits if bits is not None else getattr(weight, "bits", None)

    def index_select(self, dim: int, ids: torch.Tensor) -> torch.Tensor:
        if dim != 0:
            raise ValueError("embedding rows are selected along dim 0")
        if isinstance(self.weight, QuantizedWeight):
            return self.weight.dequantize(ids)
        # Each distinct row once: the int4 scale search costs ~0.6 ms a row on one thread.
        distinct, where = ids.unique(return_inverse=True)
        return quantize(self.weight.index_select(0, distinct), self.bits).dequantize()[where]

    def quantized(self) -> QuantizedWeight:
        """The whole table quantised (reads a float table once)."""
        return self.weight if isinstance(self.weight, QuantizedWeight) else quantize(self.weight, self.bits)
