"""int8 compute: int8 activations times int8 weights, accumulated in int32 (``int8-dynamic``).

Weights are the int8 per-row codes of :mod:`gemvec.model.quantize` (a saved ``int8`` folder
holds exactly them). Activations are quantised per token row at run time — one scale per row,
its largest magnitude over 127 — so a token with an outlier only coarsens its own row. A
single scale for the whole activation tensor (fbgemm's dynamic int8) lets EmbeddingGemma's
outlier tokens flatten every other row and drops the cosine to float32 to 0.90
(``benchmarks/int8_activation_quant.py``).

The matmul is oneDNN's int8 linear with the weight scales applied inside it; it is told the
activations' scale is 1, and each row's own scale is applied to its output afterwards, which is
exact: row ``t`` of ``(s_t q_t) W`` is ``s_t (q_t W)``. Which kernel (:func:`int8_kernel`): on
AMX, signed codes; on AVX512-VNNI / AVX-VNNI, the same codes plus 128 as unsigned bytes with a
zero point of 128 (VNNI multiplies unsigned by signed: oneDNN falls back to its reference
kernel, thousands of times slower, for signed ones); on a GPU ``torch._int_mm``. On other CPUs (AVX2 only,
Arm) the int8 kernels' sums are wrong (AVX2 saturates pairs of products at 16 bits), so the
codes are multiplied in float32, exactly (sums stay below 2^24), at float32's speed.
Rotating and quantising the rows is one native pass (:mod:`gemvec.model.rotate_quantize`)
where a C compiler is at hand; otherwise a matmul by the Hadamard blocks, then for a large batch
one fused ``torch.compile`` loop, for a small one (a query) plain ops, whose per-call cost is lower.

Outliers: a token's largest value is typically 10-30 times its root mean square (in the MLP's
down projection one channel can hold nearly all of a token's energy), so per-token int8 leaves
the rest of the row a few bits. Each layer therefore multiplies in a rotated basis, as QuaRot
does: ``x W^T = (x B)(W B)^T`` for an orthogonal ``B``, here block-diagonal 128x128 Hadamard
matrices. The weights are rotated once at load; each activation row is rotated before it is
quantised, which spreads an outlier over its block of 128 channels. On 64 calibration texts
(``benchmarks/int8_outliers.py``) this lifts the mean cosine to float32 from 0.9979 to 0.9994,
weight-only int8's (worst 0.9964 -> 0.9986), for one small matmul per projection. A
SmoothQuant-style scale migration helped less (0.9985) and hurt the down projection, whose
outliers belong to tokens, not channels (``BENCHMARKS.md``, "int8-dynamic (issue 19)").
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from gemvec.model.fused import FUSED_MIN_ROWS, FusedOp
from gemvec.model.quantize import ROTATION_BLOCK, QuantizedWeight, quantize  # 128 divides 768 and 1152
from gemvec.model.rotate_quantize import native_rotate_quantize
from gemvec.precision import cpu_int8_dot_products, onednn_int8_available

INT8_MAX = 127
UNSIGNED_OFFSET = 128  # signed codes + 128 = unsigned codes with zero point 128 (VNNI's operands)


def rotation_block(width: int) -> int:
    """The Hadamard block for rows of ``width``: 128, or the largest power of two dividing a
    width 128 does not divide (1: no rotation)."""
    return min(ROTATION_BLOCK, width & -width)


def hadamard(size: int) -> torch.Tensor:
    """The (size, size) Sylvester Hadamard matrix of +-1 (size a power of two): ``H H^T = size I``.

    Unnormalised, so it is exact in bfloat16; the 1/size its square leaves is folded into the
    weights (:func:`rotate_weight`). A new tensor each call (callers may keep it as a buffer)."""
    return _hadamard(size).clone()


@functools.cache
def _hadamard(size: int) -> torch.Tensor:
    if size < 1 or size & (size - 1):
        raise ValueError(f"a Hadamard block must be a power of two, got {size}")
    matrix = torch.ones(1, 1)
    while matrix.shape[0] < size:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)])
    return matrix


def rotate(x: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """Each row of ``x`` times blockdiag(block, ..., block): one matmul over 128-wide slices."""
    size = block.shape[0]
    return (x.reshape(-1, size) @ block).view(x.shape)


def rotate_weight(weight: torch.Tensor) -> torch.Tensor:
    """(N, K) weight ``W`` -> ``W B / b`` in float32, so that ``(x B)(W B / b)^T = x W^T``."""
    size = rotation_block(weight.shape[1])
    return rotate(weight.float(), _hadamard(size)) / size


def quantize_rotated(weight: torch.Tensor) -> QuantizedWeight:
    """int8 per-row codes of :func:`rotate_weight` of a float (N, K) weight, in one native pass
    where the kernel is built (the rotation's 1/b is a power of two: it goes to the scales
    exactly), else with torch ops."""
    weight = weight.float().contiguous()
    block = rotation_block(weight.shape[1])
    native = native_rotate_quantize(weight, block, 0)
    if native is None:
        return quantize(rotate_weight(weight), 8)
    codes, scales = native
    return QuantizedWeight(codes, scales.view(-1) / block, 8)


def quantize_rows(x: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, K) float rows -> int8 codes (T, K) and float32 scales (T, 1), one scale per row;
    with ``offset`` 128, the codes plus 128 as uint8."""
    x32 = x.float()
    scales = x32.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / INT8_MAX
    codes = torch.round(x32 / scales).clamp(-INT8_MAX, INT8_MAX)
    return (codes + offset).to(torch.uint8 if offset else torch.int8), scales


QUANTIZE_ROWS = FusedOp(quantize_rows, dynamic={0: (0, 1)})  # one loop for every width


def build_fused_quantiser() -> bool:
    """Build the compiled quantiser now and wait for it (benchmarks of the steady state);
    whether it is in use."""
    offset = activation_offset(int8_kernel(torch.device("cpu")))
    return QUANTIZE_ROWS.build(torch.randn(FUSED_MIN_ROWS, 256, dtype=torch.bfloat16), offset)


def int8_kernel(device: torch.device) -> str:
    """How int8 layers on ``device`` multiply: ``onednn-signed`` (AMX), ``onednn-unsigned``
    (VNNI), ``int_mm`` (a GPU) or ``float`` (CPUs without int8 dot products: exact, not faster)."""
    if device.type != "cpu":
        return "int_mm"
    dots = cpu_int8_dot_products()
    if dots is None or not onednn_int8_available():
        return "float"
    return "onednn-signed" if dots == "amx" else "onednn-unsigned"


def activation_offset(kernel: str) -> int:
    """What a kernel's activation codes carry: +128 as uint8 for VNNI's unsigned-by-signed one."""
    return UNSIGNED_OFFSET if kernel == "onednn-unsigned" else 0


def _onednn_linear(
    codes: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, zero_points: torch.Tensor, dtype
) -> torch.Tensor:
    """oneDNN's int8 linear; uint8 ``codes`` carry :data:`UNSIGNED_OFFSET` as their zero point."""
    offset = UNSIGNED_OFFSET if codes.dtype == torch.uint8 else 0
    return torch.ops.onednn.qlinear_pointwise(
        codes, 1.0, offset, packed, scales, zero_points, None, 1.0, 0, dtype, "none", [], ""
    )


class Int8ComputeLinear(nn.Module):
    """Bias-free linear layer computing in int8: ``x @ W.T`` with both sides quantised, in the
    rotated basis of the module docstring.

    ``weight``: int8 per-row codes of the rotated weight (:func:`rotate_weight`, as a saved
    int8-dynamic folder holds them), or with ``rotated=False`` of the weight itself (an ``int8``
    folder), which is then dequantised, rotated and quantised again."""

    bits = 8

    def __init__(self, weight: QuantizedWeight, rotated: bool = True) -> None:
        super().__init__()
        if weight.bits != 8:
            raise ValueError(f"int8 compute needs 8-bit weights, got {weight.bits}-bit")
        if not rotated:
            weight = quantize_rotated(weight.dequantize())
        # +-1 entries are exact in either activation dtype: one copy each, no cast per call
        self.register_buffer("rotation", hadamard(rotation_block(weight.shape[1])), persistent=False)
        self.register_buffer("rotation_bf16", self.rotation.to(torch.bfloat16), persistent=False)
        self.register_buffer("scales", weight.scales.float().contiguous(), persistent=False)  # (N,)
        zero_points = torch.zeros(weight.shape[0], dtype=torch.int32)  # symmetric: all zero
        self.register_buffer("zero_points", zero_points, persistent=False)
        self.kernel = int8_kernel(weight.codes.device)
        # oneDNN's packed (K, N) weight, the plain (K, N) codes for torch._int_mm, or in float32
        codes_t = weight.codes.t()
        if self.onednn:
            weight_t = torch.ops.onednn.qlinear_prepack(weight.codes, None)
        else:
            weight_t = codes_t.float() if self.kernel == "float" else codes_t
        self.register_buffer("weight_t", weight_t.contiguous(), persistent=False)

    @property
    def onednn(self) -> bool:
        return self.kernel.startswith("onednn")

    @property
    def quantized(self) -> QuantizedWeight:
        codes_t = self.weight_t.to_dense() if self.onednn else self.weight_t.to(torch.int8)
        return QuantizedWeight(codes_t.t().contiguous(), self.scales, 8)

    def _apply(self, fn, recurse: bool = True):
        probe = fn(torch.empty(0))
        if probe.device.type != "cpu" and self.kernel != "int_mm":  # to a GPU: plain int8 codes
            self.weight_t = self.quantized.codes.t().contiguous()
            self.kernel = "int_mm"
        return super()._apply(fn, recurse)

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> Int8ComputeLinear:
        """From a float (N, K) weight: rotated, then quantised per row (one rounding)."""
        return cls(quantize_rotated(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, row_scales = self.unscaled(x)
        return (out * row_scales.to(out.dtype)).view(*x.shape[:-1], -1)

    def unscaled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, K) rows -> the (T, N) output before each row's activation scale, and the (T, 1)
        scales: ``forward`` is their product, which a fused loop downstream can take in its pass."""
        offset = activation_offset(self.kernel)
        rows = x.reshape(-1, x.shape[-1])
        quantized = native_rotate_quantize(rows, self.rotation.shape[0], offset)
        if quantized is None:
            block = self.rotation_bf16 if x.dtype == torch.bfloat16 else self.rotation.to(x.dtype)
            quantized = QUANTIZE_ROWS(rotate(rows, block), offset)
        codes, row_scales = quantized
        if self.onednn:
            out = _onednn_linear(codes, self.weight_t, self.scales, self.zero_points, x.dtype)
        elif self.kernel == "float":
            out = ((codes.float() @ self.weight_t) * self.scales).to(x.dtype)
        else:
            out = (_int_mm(codes, self.weight_t).float() * self.scales).to(x.dtype)
        return out, row_scales


def _int_mm(codes: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``torch._int_mm``, with the rows padded to 17 where CUDA's kernel needs more than 16."""
    rows = codes.shape[0]
    if codes.device.type == "cuda" and rows <= 16:
        codes = torch.nn.functional.pad(codes, (0, 0, 0, 17 - rows))
    return torch._int_mm(codes, weight_t)[:rows]
