"""Attention on one group's padded grid: SDPA's flash kernel, or two batched bf16 matmuls.

EmbeddingGemma has 3 query heads on a single key/value head, and below the sliding window its
masks hide only padded keys. Then every query row of a text, whatever its head, attends to the
same keys, so the text's L x 3 query rows stack into one (3L, D) matrix and attention is a
batched matmul for the scores, a softmax (summed in float32), and a batched matmul for the values:
on oneDNN's bf16 matmuls twice as fast as flash attention on grids of 32 texts x 95 tokens, one
thread (``benchmarks/attention_kernels.py``). The query rows stack in token order, heads
innermost, which is the layout q already has in its projection's output and the one the output
projection wants back: no transposes.

The cost: the scores leave the bf16 matmul rounded to bf16 (as in the reference's eager
attention in bf16), and are scaled in bf16 (exact for EmbeddingGemma's 1/16); flash attention
keeps them in float32. So only int8-dynamic uses it, whose quantisation error (1 - cosine to
float32: 6e-4) is 25 times what the rounding adds in bfloat16 (2e-5). On the 254 calibration
texts of ``benchmarks/int4_plan.py`` its cosine to float32 went from mean 0.99941 / worst
0.99790 to 0.99938 / 0.99634 (one Urdu text; in bfloat16 the same scores move that text by 3e-5,
int8 amplifies it), every evaluation dataset re-run stayed within 0.5 point of float32, and its
batch throughput rose 9-12% (BENCHMARKS.md, "Issue 19, sixth pass"). Float32 scores in the same
matmuls keep flash attention's figures but gained only 6%. bfloat16 keeps flash attention (4%
faster with bf16 scores, its error up by a third).
Tiny grids (a single query) and grids whose masks are more than padded keys take flash
attention as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STACKED_MIN_CELLS = 64  # batch x length below which flash attention is faster (a single query)
SCORES_PER_CHUNK = 1 << 24  # bf16 scores computed at once: 32 MB (one 2,048-token text is 12.6M)


def stacked_attention_applies(q: torch.Tensor, kv_heads: int, mask: torch.Tensor | None) -> bool:
    """Whether :func:`stacked_attention` can and should run a (B, L, Nq*D) bf16 CPU grid."""
    batch, length = q.shape[:2]
    return (
        kv_heads == 1
        and q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and batch * length >= STACKED_MIN_CELLS
        and (mask is None or mask.shape[-2] == 1)
    )


def stacked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """q (B, L, Nq*D), k and v (B, L, D) of one key/value head, ``key_mask`` (B, 1, 1, L) with
    True for keys that may be seen, or None -> the attention output (B, L, Nq*D)."""
    batch, length = q.shape[:2]
    head_dim = k.shape[-1]
    rows = q.reshape(batch, -1, head_dim)  # (B, L*Nq, D): token-major, heads innermost
    hidden = None if key_mask is None else ~key_mask.view(batch, 1, length)
    chunk = max(1, SCORES_PER_CHUNK // (rows.shape[1] * length))
    out = torch.empty_like(rows)
    for start in range(0, batch, chunk):
        part = slice(start, start + chunk)
        scores = torch.bmm(rows[part], k[part].transpose(1, 2)).mul_(scale)
        if hidden is not None:
            scores.masked_fill_(hidden[part], float("-inf"))
        torch.bmm(scores.softmax(-1), v[part], out=out[part])  # the softmax sums in float32
    return out.view(q.shape)


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float, kv_heads: int
) -> torch.Tensor:
    """q (B, L, Nq*D), k and v (B, L, Nkv*D), a boolean ``mask`` broadcastable to (B, 1, L, L)
    -> (B, L, Nq*D), by SDPA (float32 scores)."""
    batch, length = q.shape[:2]
    head_dim = k.shape[-1] // kv_heads
    q, k, v = (t.view(batch, length, -1, head_dim).transpose(1, 2) for t in (q, k, v))  # (B, N, L, D)
    # grouped-query attention: each k/v head serves Nq / Nkv query heads
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale, enable_gqa=q.shape[1] != kv_heads
    )  # (B, Nq, L, D)
    return out.transpose(1, 2).reshape(batch, length, -1)
