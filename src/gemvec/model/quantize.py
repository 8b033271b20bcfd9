"""int8 / int4 weight quantisation, and the layers that compute with quantised weights.

Weights only: activations stay float32. EmbeddingGemma's activations have outliers that
per-tensor activation quantisation (fbgemm's dynamic int8) cannot hold — it drops the
cosine to float32 below 0.93 — so the saving here is memory, at float32 speed.

- int8: symmetric, one scale per output row.
- int4: symmetric, one float16 scale per group of ``INT4_GROUP`` input values (the scale of
  least squared error, :func:`quantize`), two values a byte — 5 bits a weight, as many as the
  round-to-nearest groups of 32 with float32 scales it replaced, at 0.6x their squared error —
  the embedding table (two thirds of the weights) and the encoder projections the int4 plan
  (:func:`planned_bits`) marks; the rest of the encoder stays int8, as llama.cpp's K-quant mixes
  keep sensitive tensors at more bits. The plan was chosen by measured sensitivity per byte
  on a calibration set that is no evaluation set (``benchmarks/int4_plan.py``, BENCHMARKS.md).
  Folders saved before (manifest format 1) hold attention int8 and the MLPs and table int4 in
  groups of 32 with float32 scales; they load as saved (the group is the scales' width).

A :class:`QuantizedWeight` concatenates along rows without re-quantising, which is how the
encoder fuses q/k/v and gate/up, and how a saved quantised checkpoint reloads exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INT4_GROUP = 16
# int8-dynamic multiplies in a basis rotated by block-diagonal Hadamard matrices of this size
# (gemvec.model.int8_compute); a saved folder records it as ROTATION (manifest format 3).
ROTATION_BLOCK = 128
ROTATION = {"kind": "hadamard", "block": ROTATION_BLOCK}
# Per precision, a tag that changes with its numbers, so that caches of vectors made from a
# float checkpoint (gemvec.eval) do not serve an earlier scheme's: "-2" is issue 19's int4 and
# its rotated int8-dynamic.
SCHEME_TAGS = {"int4": "-2", "int8-dynamic": "-2"}

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
    """Integer codes plus float32 scales for a (rows, cols) weight."""

    codes: torch.Tensor  # int8 (rows, cols) or uint8 (rows, cols // 2) for int4
    scales: torch.Tensor  # float32 (rows,) for int8; float16 (float32 before) (rows, cols // group) for int4
    bits: int

    @property
    def shape(self) -> tuple[int, int]:
        rows, width = self.codes.shape
        return (rows, width * 2 if self.bits == 4 else width)

    def dequantize(self, rows: slice | torch.Tensor | None = None) -> torch.Tensor:
        """float32 weight (all rows, a slice, or gathered row indices)."""
        codes = self.codes if rows is None else self.codes[rows]
        scales = self.scales if rows is None else self.scales[rows]
        if self.bits == 8:
            return codes.float() * scales.unsqueeze(-1)
        low = (codes & 0x0F).to(torch.int8) - 8
        high = (codes >> 4).to(torch.int8) - 8
        values = torch.stack((low, high), dim=-1).flatten(-2).float()  # (..., cols)
        grouped = values.unflatten(-1, (scales.shape[-1], -1)) * scales.unsqueeze(-1)
        return grouped.flatten(-2)

    @staticmethod
    def cat(parts: list[QuantizedWeight]) -> QuantizedWeight:
        return QuantizedWeight(
            torch.cat([p.codes for p in parts]), torch.cat([p.scales for p in parts]), parts[0].bits
        )


def quantize(weight: torch.Tensor, bits: int) -> QuantizedWeight:
    """Symmetric quantisation of a 2-D float weight: int8 round-to-nearest per row; int4 per
    group with the float16 scale, of 19 around absmax / 7, that gives the group the least
    squared error (rounding then clips the group's largest values a little when that pays)."""
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
    codes, scales = zip(*(_int4_rows(chunk) for chunk in weight.split(_INT4_CHUNK_ROWS)), strict=True)
    return QuantizedWeight(torch.cat(codes).contiguous(), torch.cat(scales).contiguous(), 4)


_INT4_CHUNK_ROWS = 8192  # the scale search holds a few float copies of this many rows
# Candidate int4 scales, as multiples of absmax / 7 (1.0 is plain round-to-nearest).
INT4_SCALE_GRID = (*(1 - 0.02 * k for k in range(16)), 1.05, 1.1, 8 / 7)
_FLOAT16_TINY = 2.0**-24  # float16's smallest positive value: a scale never rounds to 0


def _int4_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed codes (rows, cols // 2) and float16 scales (rows, cols // INT4_GROUP) of float32 rows."""
    rows, cols = weight.shape
    grouped = weight.view(rows, cols // INT4_GROUP, INT4_GROUP)
    absmax = grouped.abs().amax(dim=-1) / 7
    best_scales = best_error = None
    for factor in INT4_SCALE_GRID:
        scales = (absmax * factor).clamp(min=_FLOAT16_TINY).to(torch.float16)
        step = scales.float()[..., None]
        error = ((grouped / step).round().clamp(-8, 7) * step - grouped).pow(2).sum(dim=-1)
        if best_scales is None:
            best_scales, best_error = scales, error
        else:
            better = error < best_error
            best_scales, best_error = (
                torch.where(better, scales, best_scales),
                torch.where(better, error, best_error),
            )
    values = (grouped / best_scales.float()[..., None]).round().clamp(-8, 7).to(torch.int16) + 8  # 0..15
    values = values.view(rows, cols // 2, 2).to(torch.uint8)
    return values[..., 0] | (values[..., 1] << 4), best_scales


class QuantizedLinear(nn.Module):
    """Bias-free linear layer over a quantised weight, dequantised to float32 per call."""

    def __init__(self, weight: QuantizedWeight) -> None:
        super().__init__()
        self.bits = weight.bits
        self.register_buffer("codes", weight.codes, persistent=False)
        self.register_buffer("scales", weight.scales, persistent=False)

    @property
    def quantized(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scales, self.bits)

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
        return quantize(self.weight.index_select(0, ids), self.bits).dequantize()

    def quantized(self) -> QuantizedWeight:
        """The whole table quantised (reads a float table once)."""
        return self.weight if isinstance(self.weight, QuantizedWeight) else quantize(self.weight, self.bits)
