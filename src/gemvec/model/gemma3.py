"""The bidirectional Gemma 3 encoder behind EmbeddingGemma, top to bottom.

Shapes: B batch, L tokens, H hidden (768), Nq query heads (3), Nkv key/value heads (1),
D head dim (256), F MLP width (1152).

Every layer attends bidirectionally. ``full_attention`` layers see the whole sequence;
``sliding_attention`` layers see tokens with ``|i - j| < config.attention_window`` (257 for
the published config, as in the reference implementation). Padding is on the right and
padded keys are masked out. Everything but attention runs on the rows of real tokens only, and
texts of very different lengths attend on separate padded grids (see :mod:`gemvec.model.layout`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gemvec.model.attention import flash_attention, stacked_attention, stacked_attention_applies
from gemvec.model.config import Gemma3TextConfig
from gemvec.model.fused import FusedOp
from gemvec.model.int8_compute import Int8ComputeLinear
from gemvec.model.layout import BatchLayout, TokenLayout
from gemvec.model.quantize import (
    QuantizedEmbedding,
    QuantizedLinear,
    QuantizedWeight,
    planned_bits,
    quantize,
)
from gemvec.precision import cpu_has_native_bf16


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma's RMSNorm, ``x · rsqrt(mean(x²) + eps) · scale`` (scale = 1 + weight), computed in
    float32 whatever x's dtype and rounded to it once, as the reference does.

    ``F.rms_norm`` is a fifth of the ops of the written-out formula, which matters most to one
    short query (op overhead)."""
    return F.rms_norm(x.float(), scale.shape, scale, eps).to(x.dtype)


def add_and_norm(
    x: torch.Tensor,
    update: torch.Tensor,
    row_scale: torch.Tensor | None,
    post_scale: torch.Tensor,
    next_scale: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The step between sublayers: the residual stream ``x + post_norm(update)``, and the
    next sublayer's input, ``next_norm`` of it. ``row_scale``: see :func:`project`."""
    x = x + rms_norm(_scaled(update, row_scale), post_scale, eps)
    return x, rms_norm(x, next_scale, eps)


def gelu_times_up(gate_up: torch.Tensor, row_scale: torch.Tensor | None) -> torch.Tensor:
    """The MLP's (T, 2F) gate|up rows -> GELU(gate) · up, (T, F)."""
    gate, up = _scaled(gate_up, row_scale).chunk(2, dim=-1)
    return F.gelu(gate, approximate="tanh") * up


GELU_TWICE_INNER = 2 * math.sqrt(2 / math.pi)


def gelu_times_up_by_sigmoid(gate_up: torch.Tensor, row_scale: torch.Tensor | None) -> torch.Tensor:
    """:func:`gelu_times_up` with GELU's tanh form written as ``0.5 (1 + tanh(u)) = sigmoid(2u)``:
    the same function, and compiled, an exp-based sigmoid takes 60% of tanh's time. Rounded to
    the activation dtype where F.gelu rounds (bfloat16: 1 output in 15,000 moves one unit)."""
    gate, up = _scaled(gate_up, row_scale).chunk(2, dim=-1)
    z = gate.float()
    gelu = z * torch.sigmoid(GELU_TWICE_INNER * (z + 0.044715 * z * z * z))
    return gelu.to(gate.dtype) * up


def _scaled(rows: torch.Tensor, row_scale: torch.Tensor | None) -> torch.Tensor:
    return rows if row_scale is None else rows * row_scale.to(rows.dtype)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of token rows x (T, N, D) by their cos/sin rows (T, 1, D)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def norm_and_rope(
    qkv: torch.Tensor,
    row_scale: torch.Tensor | None,
    q_scale: torch.Tensor,
    k_scale: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float,
    heads: int,
    kv_heads: int,
) -> torch.Tensor:
    """(T, q|k|v) projections -> the same rows with each q and k head normed and rotated."""
    rows, head_dim = qkv.shape[0], q_scale.shape[0]
    qkv = _scaled(qkv, row_scale)
    q, k, v = qkv.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
    q = rope(rms_norm(q.view(rows, heads, head_dim), q_scale, eps), cos, sin)
    k = rope(rms_norm(k.view(rows, kv_heads, head_dim), k_scale, eps), cos, sin)
    return torch.cat((q.flatten(1), k.flatten(1), v), dim=-1)


Projected = tuple[torch.Tensor, torch.Tensor | None]  # rows, and per-row scales still to apply


def project(linear: nn.Module, x: torch.Tensor) -> Projected:
    """``linear(x)`` as (rows, None); for an int8-compute layer, its rows before their per-row
    scales and the (T, 1) scales, which the fused loop consuming the rows applies."""
    if isinstance(linear, Int8ComputeLinear):
        return linear.unscaled(x)
    return linear(x), None


# The memory-bound chains between the matmuls, each one compiled loop on large batches.
ADD_AND_NORM = FusedOp(add_and_norm, dynamic={0: (0,), 1: (0,), 2: (0,)})
GELU_TIMES_UP = FusedOp(gelu_times_up, dynamic={0: (0,), 1: (0,)}, compiled_form=gelu_times_up_by_sigmoid)
NORM_AND_ROPE = FusedOp(norm_and_rope, dynamic={0: (0,), 1: (0,), 4: (0,), 5: (0,)})


class RMSNorm(nn.Module):
    """Gemma's RMSNorm (:func:`rms_norm`): scale by ``1 + weight``."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float().clone(), persistent=False)
        self.register_buffer("scale", 1.0 + self.weight, persistent=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.scale, self.eps)


class Linear(nn.Module):
    """A bias-free linear layer (quantised variants swap in).

    A bfloat16 weight on a CPU with native bf16 is kept in oneDNN's blocked layout, packed once
    (as inductor's freezing does): ``F.linear`` re-lays the plain weight out on every call,
    which a one-query call pays 96 times. Same kernel, bit-identical outputs; one query
    1.2-1.3x faster on an AMX CPU (interleaved A/B, BENCHMARKS.md, issue 19)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        packed = pack_bfloat16_weight(weight)
        self.packed = packed is not None
        self.register_buffer("stored", packed if self.packed else weight, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """The (N, K) weight in the plain layout (a copy where it is kept packed)."""
        return self.stored.to_dense() if self.packed else self.stored

    def _apply(self, fn, recurse: bool = True):
        if self.packed:
            probe = fn(torch.empty(0, dtype=torch.bfloat16))
            if probe.device.type == "cpu" and probe.dtype == torch.bfloat16:
                return self  # nothing moves (and fn cannot take oneDNN's opaque tensor)
            self.stored, self.packed = self.stored.to_dense(), False  # to a GPU or a dtype: plain
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.stored, None, "none", [], "")
        if x.dtype == torch.bfloat16 and x.device.type == "cpu" and not cpu_has_native_bf16():
            return bfloat16_linear_in_float32(x, self.stored)
        return F.linear(x, self.stored)


PACKING_ROWS_HINT = 64  # oneDNN picks the blocked layout for about this many rows; any count works


def pack_bfloat16_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's packed copy of a CPU bfloat16 weight where the CPU multiplies bf16 natively,
    else None (float32 stays on PyTorch's default kernel: packing changes its numbers)."""
    if weight.dtype != torch.bfloat16 or weight.device.type != "cpu" or not cpu_has_native_bf16():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight, PACKING_ROWS_HINT)
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return None


def bfloat16_linear_in_float32(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of bfloat16 operands, computed in float32 and rounded to bfloat16 once.

    Native bf16 kernels also accumulate in float32 and round once, so the numbers are the same
    up to summation order (one element in ~10,000 lands one bf16 step away). Without AMX or
    AVX512-BF16, PyTorch's bf16 matmul is several times slower than this (benchmarks/matmul_kernels.py,
    figures in BENCHMARKS.md).
    """
    return F.linear(x.float(), weight.float()).to(torch.bfloat16)


class RotaryTable(nn.Module):
    """cos/sin for every position up to the model's maximum, computed once per RoPE base."""

    def __init__(self, head_dim: int, base: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        freqs = torch.arange(max_positions, dtype=torch.float)[:, None] * inv_freq  # (P, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (P, D)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def at(self, positions: torch.Tensor, dtype: torch.dtype) -> Rotation:
        """The rotation of token rows at ``positions`` (T,), in ``dtype`` as the reference casts."""
        return Rotation(self.cos[positions, None].to(dtype), self.sin[positions, None].to(dtype))


class Rotation:
    """RoPE for one batch: cos/sin rows (T, 1, D) gathered once and shared by every layer."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        self.cos, self.sin = cos, sin

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate token rows x (T, N, D)."""
        return rope(x, self.cos, self.sin)


class Attention(nn.Module):
    def __init__(
        self, w: dict[str, torch.Tensor], config: Gemma3TextConfig, make_linear, rounded_scores: bool = False
    ) -> None:
        """``rounded_scores``: attention may take bf16-rounded scores for speed
        (:mod:`gemvec.model.attention`; int8-dynamic)."""
        super().__init__()
        self.rounded_scores = rounded_scores
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        # q, k and v in one matmul: rows [q | k | v] of a single weight.
        self.qkv_proj = make_linear([w["q_proj"], w["k_proj"], w["v_proj"]], "qkv")
        self.o_proj = make_linear([w["o_proj"]], "o")
        self.q_norm = RMSNorm(w["q_norm"], config.rms_norm_eps)
        self.k_norm = RMSNorm(w["k_norm"], config.rms_norm_eps)
        self.scale = config.query_pre_attn_scalar**-0.5

    def forward(self, x: torch.Tensor, rotate: Rotation, layout: BatchLayout, sliding: bool) -> Projected:
        """Token rows (T, H) -> (T, H), as :func:`project` gives them.

        Projections, q/k norms and RoPE work token by token, so they run on the real rows; only
        the attention itself needs padded grids, one per group of similar-length texts.
        """
        qkv = NORM_AND_ROPE(
            *project(self.qkv_proj, x),
            self.q_norm.scale,
            self.k_norm.scale,
            rotate.cos,
            rotate.sin,
            self.q_norm.eps,
            self.num_heads,
            self.num_kv_heads,
        )  # (T, q+k+v)
        out = [
            self._attend(qkv[g.rows], g.layout, g.sliding_mask if sliding else g.full_mask)
            for g in layout.groups
        ]
        return project(self.o_proj, out[0] if len(out) == 1 else torch.cat(out))

    def _attend(self, qkv: torch.Tensor, layout: TokenLayout, mask: torch.Tensor | None) -> torch.Tensor:
        """One group's (T_g, q+k+v) rows -> attention output rows (T_g, Nq·D), on its padded grid."""
        q, k, v = layout.pad(qkv).split([self.q_size, self.kv_size, self.kv_size], dim=-1)  # (B, L, ·)
        if self.rounded_scores and stacked_attention_applies(q, self.num_kv_heads, mask):
            out = stacked_attention(q, k, v, mask, self.scale)
        else:
            out = flash_attention(q, k, v, mask, self.scale, self.num_kv_heads)
        return layout.unpad(out)


class MLP(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], make_linear) -> None:
        super().__init__()
        self.width = w["gate_proj"].shape[0]  # F: the gate|up rows split here (save.py)
        self.gate_up_proj = make_linear([w["gate_proj"], w["up_proj"]], "gate_up")
        self.down_proj = make_linear([w["down_proj"]], "down")

    def forward(self, x: torch.Tensor) -> Projected:
        return project(self.down_proj, GELU_TIMES_UP(*project(self.gate_up_proj, x)))


class DecoderLayer(nn.Module):
    def __init__(
        self,
        w: dict[str, torch.Tensor],
        config: Gemma3TextConfig,
        layer_type: str,
        make_linear,
        rounded_scores: bool = False,
    ):
        super().__init__()
        eps = config.rms_norm_eps
        self.is_sliding = layer_type == "sliding_attention"
        self.self_attn = Attention(_sub(w, "self_attn."), config, make_linear, rounded_scores)
        self.mlp = MLP(_sub(w, "mlp."), make_linear)
        self.input_layernorm = RMSNorm(w["input_layernorm"], eps)
        self.post_attention_layernorm = RMSNorm(w["post_attention_layernorm"], eps)
        self.pre_feedforward_layernorm = RMSNorm(w["pre_feedforward_layernorm"], eps)
        self.post_feedforward_layernorm = RMSNorm(w["post_feedforward_layernorm"], eps)

    def forward(
        self, x: torch.Tensor, normed: torch.Tensor, rotate: Rotation, layout: BatchLayout, next_norm: RMSNorm
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual stream x (T, H) and its input_layernorm -> the stream after this layer
        and ``next_norm`` of it (the next layer's input norm, or the final norm): each residual
        add is fused with the norms on either side of it."""
        attended = self.self_attn(normed, rotate, layout, self.is_sliding)
        x, normed = self._add_and_norm(
            x, attended, self.post_attention_layernorm, self.pre_feedforward_layernorm
        )
        return self._add_and_norm(x, self.mlp(normed), self.post_feedforward_layernorm, next_norm)

    @staticmethod
    def _add_and_norm(x: torch.Tensor, update: Projected, post: RMSNorm, following: RMSNorm):
        """``update``: a sublayer's (rows, row scales or None), as :func:`project` gives them."""
        return ADD_AND_NORM(x, *update, post.scale, following.scale, post.eps)


def _sub(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Weights under `prefix`, renamed without it and without a trailing `.weight`."""
    return {k[len(prefix) :].removesuffix(".weight"): v for k, v in weights.items() if k.startswith(prefix)}


class Gemma3Encoder(nn.Module):
    """Token ids (B, L) and lengths (B,) -> final hidden states (B, L, H)."""

    def __init__(
        self,
        config: Gemma3TextConfig,
        weights: dict[str, torch.Tensor],
        dtype: torch.dtype = torch.float32,
        quantize_bits: int | None = None,
        release: Callable[[torch.Tensor], None] = lambda tensor: None,
        int8_compute: bool = False,
        rotated: bool = False,
    ) -> None:
        """``release(tensor)`` is called on every loaded weight once it has been copied, so the
        memory-mapped originals can leave memory while the next layer loads (peak RSS).

        ``int8_compute``: linear layers multiply int8 activations by int8 weights
        (:mod:`gemvec.model.int8_compute`); the weights are int8 (``quantize_bits`` 8), and
        ``rotated`` says whether quantised ones were saved in its rotated basis already; its
        attention may round the scores to bf16 (:mod:`gemvec.model.attention`)."""
        super().__init__()
        self.config, self.dtype = config, dtype

        def quantized_linear(weight: QuantizedWeight) -> nn.Module:
            return Int8ComputeLinear(weight, rotated) if int8_compute else QuantizedLinear(weight)

        def make_linear(parts: list, projection: str, layer: int) -> nn.Module:
            """One layer from row blocks (q|k|v, gate|up); quantised parts are concatenated as is.

            Quantised to the bits :func:`planned_bits` gives ``projection`` of ``layer`` (int4
            keeps most projections 8-bit)."""
            if isinstance(parts[0], QuantizedWeight):
                module = quantized_linear(QuantizedWeight.cat(parts))
                loaded = [t for p in parts for t in p.parts().values()]
            else:
                bits = planned_bits(quantize_bits, layer, projection) if quantize_bits else None
                # always a copy (the file mapping can go); quantised from the float32 values
                weight = torch.cat([p.to(torch.float32 if bits else dtype) for p in parts])
                if int8_compute:
                    module = Int8ComputeLinear.from_float(weight)
                else:
                    module = QuantizedLinear(quantize(weight, bits)) if bits else Linear(weight)
                loaded = parts
            for tensor in loaded:
                release(tensor)
            return module

        # The table stays as loaded (memory-mapped, maybe quantised): rows are gathered per batch.
        table = weights["embed_tokens.weight"]
        if isinstance(table, QuantizedWeight) or quantize_bits:
            self.embed_tokens = QuantizedEmbedding(table, quantize_bits)
        else:
            self.embed_tokens = table
        # After each gather the table's pages are let go again: the kernel maps up to 64 KB of
        # page cache around every row a batch touches, which over many batches pulls most of
        # the 805 MB table into the process's RSS though only the gathered rows are needed.
        self._table_parts = list(table.parts().values()) if isinstance(table, QuantizedWeight) else [table]
        self._release = release
        # The reference multiplies in the weight dtype: sqrt(768) becomes 27.75 in bfloat16.
        self.embed_scale = torch.tensor(math.sqrt(config.hidden_size)).to(dtype)
        self.layers = nn.ModuleList(
            DecoderLayer(
                _sub(weights, f"layers.{i}."),
                config,
                layer_type,
                functools.partial(make_linear, layer=i),
                rounded_scores=int8_compute,
            )
            for i, layer_type in enumerate(config.layer_types)
        )
        self.norm = RMSNorm(weights["norm.weight"], config.rms_norm_eps)
        self.rope_full = RotaryTable(config.head_dim, config.rope_theta, config.max_position_embeddings)
        self.rope_sliding = RotaryTable(
            config.head_dim, config.rope_local_base_freq, config.max_position_embeddings
        )

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.embed_tokens.index_select(0, input_ids.reshape(-1))
        for part in self._table_parts:
            self._release(part)
        return rows.to(self.dtype).view(*input_ids.shape, -1) * self.embed_scale

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) and lengths (B,), on the CPU -> hidden states (B, L, H) on the encoder's
        device, zeros at padding.

        The embedding table stays in host memory (memory-mapped): rows are gathered on the CPU
        and only the (T, H) rows of the batch travel to the device; layout and masks are
        decided on the CPU too and moved once per batch.
        """
        device = self.device
        layout = BatchLayout(lengths, input_ids.shape[1], self.config.attention_window)
        ids = layout.tokens.unpad(input_ids[..., None]).squeeze(-1)
        x = self.embed(ids).to(device)  # (T, H): real tokens only
        layout = layout.to(device)
        rotate_full = self.rope_full.at(layout.positions, self.dtype)
        rotate_sliding = self.rope_sliding.at(layout.positions, self.dtype)
        normed = self.layers[0].input_layernorm(x)
        following = [layer.input_layernorm for layer in self.layers[1:]] + [self.norm]
        for layer, next_norm in zip(self.layers, following, strict=True):
            rotate = rotate_sliding if layer.is_sliding else rotate_full
            x, normed = layer(x, normed, rotate, layout, next_norm)
        return layout.tokens.pad(normed)
