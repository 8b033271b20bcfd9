"""The bidirectional Gemma 3 encoder behind EmbeddingGemma, top to bottom.

Shapes: B batch, L tokens, H hidden (768), Nq query heads (3), Nkv key/value heads (1),
D head dim (256), F MLP width (1152).

Every layer attends bidirectionally. ``full_attention`` layers see the whole sequence;
``sliding_attention`` layers see tokens with ``|i - j| < config.attention_window`` (257 for
the published config, as in the reference implementation). Padding is on the right and
padded keys are masked out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gemvec.model.config import Gemma3TextConfig
from gemvec.model.quantize import (
    ATTENTION_MIN_BITS,
    QuantizedEmbedding,
    QuantizedLinear,
    QuantizedWeight,
    quantize,
)


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: scale by ``1 + weight``, computed in float32 whatever the input dtype."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float().clone(), persistent=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * (1.0 + self.weight)).to(x.dtype)


class Linear(nn.Module):
    """A bias-free linear layer holding its weight as a plain buffer (quantised variants swap in)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class RotaryTable(nn.Module):
    """cos/sin for every position up to the model's maximum, computed once per RoPE base."""

    def __init__(self, head_dim: int, base: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        freqs = torch.arange(max_positions, dtype=torch.float)[:, None] * inv_freq  # (P, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (P, D)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x (B, N, L, D) by its positions 0..L-1."""
        length = x.shape[-2]
        cos, sin = self.cos[:length].to(x.dtype), self.sin[:length].to(x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin


class TokenLayout:
    """Where the real tokens of a padded (B, L) batch sit, so everything but attention skips padding.

    Linear layers, norms and the MLP work row by row, so they run on the (T, C) rows of real
    tokens only; attention alone needs the (B, L) grid. With texts of mixed lengths in one batch
    (a server merging requests) most of the padded grid can be padding.
    """

    def __init__(self, lengths: torch.Tensor, length: int) -> None:
        self.batch, self.length = len(lengths), length
        real = torch.arange(length)[None, :] < lengths[:, None]  # (B, L)
        self.index = None if bool(real.all()) else real.flatten().nonzero().squeeze(1)  # (T,)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (T, C)."""
        flat = x.reshape(self.batch * self.length, x.shape[-1])
        return flat if self.index is None else flat.index_select(0, self.index)

    def to(self, device: torch.device) -> TokenLayout:
        """The same layout with its index on ``device`` (the layout itself is decided on the CPU)."""
        if self.index is not None:
            self.index = self.index.to(device)
        return self

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        """(T, C) -> (B, L, C), zeros at padding."""
        if self.index is not None:
            grid = rows.new_zeros(self.batch * self.length, rows.shape[-1])
            rows = grid.index_copy_(0, self.index, rows)
        return rows.view(self.batch, self.length, -1)


class Attention(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], config: Gemma3TextConfig, make_linear) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        # q, k and v in one matmul: rows [q | k | v] of a single weight.
        self.qkv_proj = make_linear([w["q_proj"], w["k_proj"], w["v_proj"]], ATTENTION_MIN_BITS)
        self.o_proj = make_linear([w["o_proj"]], ATTENTION_MIN_BITS)
        self.q_norm = RMSNorm(w["q_norm"], config.rms_norm_eps)
        self.k_norm = RMSNorm(w["k_norm"], config.rms_norm_eps)
        self.scale = config.query_pre_attn_scalar**-0.5

    def forward(
        self, x: torch.Tensor, rope: RotaryTable, mask: torch.Tensor | None, layout: TokenLayout
    ) -> torch.Tensor:
        """Token rows (T, H) -> (T, H); only the attention itself runs on the padded grid."""
        batch, length = layout.batch, layout.length
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        q, k, v = layout.pad(self.qkv_proj(x)).split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, Nq, L, D)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Nkv, L, D)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope(self.q_norm(q)), rope(self.k_norm(k))
        repeat = self.num_heads // self.num_kv_heads
        if repeat > 1:  # grouped-query attention: share each k/v head across `repeat` query heads
            k = k.repeat_interleave(repeat, dim=1)
            v = v.repeat_interleave(repeat, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)  # (B, Nq, L, D)
        return self.o_proj(layout.unpad(out.transpose(1, 2).reshape(batch, length, q_size)))


class MLP(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], make_linear) -> None:
        super().__init__()
        self.width = w["gate_proj"].shape[0]
        self.gate_up_proj = make_linear([w["gate_proj"], w["up_proj"]])
        self.down_proj = make_linear([w["down_proj"]])

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

    def forward(
        self, x: torch.Tensor, rope: RotaryTable, mask: torch.Tensor | None, layout: TokenLayout
    ) -> torch.Tensor:
        attended = self.self_attn(self.input_layernorm(x), rope, mask, layout)
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
    ) -> None:
        """``release(tensor)`` is called on every loaded weight once it has been copied, so the
        memory-mapped originals can leave memory while the next layer loads (peak RSS)."""
        super().__init__()
        self.config, self.dtype = config, dtype

        def make_linear(parts: list, min_bits: int | None = None) -> nn.Module:
            """One layer from row blocks (q|k|v, gate|up); quantised parts are concatenated as is.

            ``min_bits``: quantise to at least this many bits (attention: int8 even for int4)."""
            if isinstance(parts[0], QuantizedWeight):
                layer = QuantizedLinear(QuantizedWeight.cat(parts))
                loaded = [t for p in parts for t in (p.codes, p.scales)]
            else:
                weight = torch.cat([p.to(dtype) for p in parts])  # always a copy: the file mapping can go
                bits = max(quantize_bits, min_bits or 0) if quantize_bits else None
                layer = QuantizedLinear(quantize(weight, bits)) if bits else Linear(weight)
                loaded = parts
            for tensor in loaded:
                release(tensor)
            return layer

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
            DecoderLayer(_sub(weights, f"layers.{i}."), config, layer_type, make_linear)
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

    def attention_masks(
        self, lengths: torch.Tensor, length: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Boolean masks (B, 1, L, L), True = may attend, for full and sliding layers (None = all)."""
        positions = torch.arange(length)
        key_ok = positions[None, :] < lengths[:, None]  # (B, L)
        padded = bool((lengths < length).any())
        full = key_ok[:, None, None, :] if padded else None
        window = self.config.attention_window
        if length <= window:
            return full, full
        band = (positions[:, None] - positions[None, :]).abs() < window  # (L, L)
        sliding = band[None, None] & key_ok[:, None, None, :] if padded else band[None, None]
        return full, sliding

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
        layout = TokenLayout(lengths, input_ids.shape[1])
        x = self.embed(layout.unpad(input_ids[..., None]).squeeze(-1)).to(device)  # (T, H): real tokens
        full_mask, sliding_mask = (
            None if mask is None else mask.to(device)
            for mask in self.attention_masks(lengths, input_ids.shape[1])
        )
        layout = layout.to(device)
        for layer in self.layers:
            if layer.is_sliding:
                x = layer(x, self.rope_sliding, sliding_mask, layout)
            else:
                x = layer(x, self.rope_full, full_mask, layout)
        return layout.pad(self.norm(x))
