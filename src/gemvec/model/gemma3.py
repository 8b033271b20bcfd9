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

from gemvec.model.config import Gemma3TextConfig
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


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: scale by ``1 + weight``, computed in float32 whatever the input dtype."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float().clone(), persistent=False)
        self.register_buffer("scale", 1.0 + self.weight, persistent=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x · rsqrt(mean(x²) + eps) · (1 + weight) in one fused kernel: a fifth of the ops of
        # the written-out formula, which matters most to one short query (op overhead).
        return F.rms_norm(x.float(), self.scale.shape, self.scale, self.eps).to(x.dtype)


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
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * self.cos + rotated * self.sin


class Attention(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], config: Gemma3TextConfig, make_linear) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        # q, k and v in one matmul: rows [q | k | v] of a single weight.
        self.qkv_proj = make_linear([w["q_proj"], w["k_proj"], w["v_proj"]], "qkv")
        self.o_proj = make_linear([w["o_proj"]], "o")
        self.q_norm = RMSNorm(w["q_norm"], config.rms_norm_eps)
        self.k_norm = RMSNorm(w["k_norm"], config.rms_norm_eps)
        self.scale = config.query_pre_attn_scalar**-0.5

    def forward(self, x: torch.Tensor, rotate: Rotation, layout: BatchLayout, sliding: bool) -> torch.Tensor:
        """Token rows (T, H) -> (T, H).

        Projections, q/k norms and RoPE work token by token, so they run on the real rows; only
        the attention itself needs padded grids, one per group of similar-length texts.
        """
        rows = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = rotate(self.q_norm(q.view(rows, self.num_heads, self.head_dim)))
        k = rotate(self.k_norm(k.view(rows, self.num_kv_heads, self.head_dim)))
        qkv = torch.cat((q.flatten(1), k.flatten(1), v), dim=-1)  # (T, q+k+v)
        out = [
            self._attend(qkv[g.rows], g.layout, g.sliding_mask if sliding else g.full_mask)
            for g in layout.groups
        ]
        return self.o_proj(out[0] if len(out) == 1 else torch.cat(out))

    def _attend(self, qkv: torch.Tensor, layout: TokenLayout, mask: torch.Tensor | None) -> torch.Tensor:
        """One group's (T_g, q+k+v) rows -> attention output rows (T_g, Nq·D), on its padded grid."""
        batch, length = layout.batch, layout.length
        q, k, v = layout.pad(qkv).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, Nq, L, D)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Nkv, L, D)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        # grouped-query attention: each k/v head serves num_heads / num_kv_heads query heads
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=self.num_heads != self.num_kv_heads
        )  # (B, Nq, L, D)
        return layout.unpad(out.transpose(1, 2).reshape(batch, length, self.q_size))


class MLP(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], make_linear) -> None:
        super().__init__()
        self.width = w["gate_proj"].shape[0]
        self.gate_up_proj = make_linear([w["gate_proj"], w["up_proj"]], "gate_up")
        self.down_proj = make_linear([w["down_proj"]], "down")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.width, dim=-1)  # (B, L, F) each
        return self.down_proj(F.gelu(gate, approximate="tanh") * up)


class DecoderLayer(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], config: Gemma3TextConfig, layer_type: str, make_linear):
        super().__init__()
        eps = config.rms_norm_eps
        self.is_sliding = layer_type == "sliding_attention"
        self.self_attn = Attention(_sub(w, "self_attn."), config, make_linear)
        self.mlp = MLP(_sub(w, "mlp."), make_linear)
        self.input_layernorm = RMSNorm(w["input_layernorm"], eps)
        self.post_attention_layernorm = RMSNorm(w["post_attention_layernorm"], eps)
        self.pre_feedforward_layernorm = RMSNorm(w["pre_feedforward_layernorm"], eps)
        self.post_feedforward_layernorm = RMSNorm(w["post_feedforward_layernorm"], eps)

    def forward(self, x: torch.Tensor, rotate: Rotation, layout: BatchLayout) -> torch.Tensor:
        attended = self.self_attn(self.input_layernorm(x), rotate, layout, self.is_sliding)
        x = x + self.post_attention_layernorm(attended)
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


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
        ``rotated`` says whether quantised ones were saved in its rotated basis already."""
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
                loaded = [t for p in parts for t in (p.codes, p.scales)]
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
        self._table_parts = [table.codes, table.scales] if isinstance(table, QuantizedWeight) else [table]
        self._release = release
        # The reference multiplies in the weight dtype: sqrt(768) becomes 27.75 in bfloat16.
        self.embed_scale = torch.tensor(math.sqrt(config.hidden_size)).to(dtype)
        self.layers = nn.ModuleList(
            DecoderLayer(
                _sub(weights, f"layers.{i}."), config, layer_type, functools.partial(make_linear, layer=i)
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
        for layer in self.layers:
            x = layer(x, rotate_sliding if layer.is_sliding else rotate_full, layout)
        return layout.tokens.pad(self.norm(x))
