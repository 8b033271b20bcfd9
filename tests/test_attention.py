"""Stacked-query attention (int8-dynamic's) against SDPA's flash attention and exact float64."""

from __future__ import annotations

import pytest
import torch

from gemvec.model import attention
from gemvec.model.attention import flash_attention, stacked_attention, stacked_attention_applies

HEADS, HEAD_DIM, SCALE = 3, 64, 64**-0.5


def grid(batch: int = 4, length: int = 40, dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """q (B, L, Nq*D), k, v (B, L, D) of one kv head, a key mask with each text's padding hidden."""
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, length, (HEADS + 2) * HEAD_DIM, generator=generator).to(dtype)
    q, k, v = qkv.split([HEADS * HEAD_DIM, HEAD_DIM, HEAD_DIM], dim=-1)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    key_mask = (torch.arange(length)[None] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L)
    return q, k, v, key_mask, lengths


def exact(q, k, v, key_mask) -> torch.Tensor:
    """The attention in float64, head by head."""
    batch, length = q.shape[:2]
    q64 = q.double().view(batch, length, HEADS, HEAD_DIM).transpose(1, 2)  # (B, Nq, L, D)
    scores = q64 @ k.double().transpose(1, 2)[:, None] * SCALE
    scores = scores.masked_fill(~key_mask, float("-inf"))
    out = scores.softmax(-1) @ v.double()[:, None]
    return out.transpose(1, 2).reshape(batch, length, -1)


def real_rows(t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.cat([t[i, : int(n)] for i, n in enumerate(lengths)])


def test_stacked_attention_matches_exact_and_flash() -> None:
    q, k, v, key_mask, lengths = grid()
    reference = real_rows(exact(q, k, v, key_mask), lengths)
    stacked = real_rows(stacked_attention(q, k, v, key_mask, SCALE), lengths).double()
    flash = real_rows(flash_attention(q, k, v, key_mask, SCALE, kv_heads=1), lengths).double()
    stacked_error, flash_error = (stacked - reference).abs(), (flash - reference).abs()
    assert stacked_error.max() < 0.02
    # bf16-rounded scores: within a small factor of flash attention's own bf16 error
    assert stacked_error.pow(2).mean().sqrt() < 4 * flash_error.pow(2).mean().sqrt()


def test_padded_keys_have_no_influence() -> None:
    q, k, v, key_mask, lengths = grid(seed=1)
    before = stacked_attention(q, k, v, key_mask, SCALE)
    hidden = ~key_mask[:, 0, 0, :, None]  # (B, L, 1)
    k2, v2 = k.masked_fill(hidden, 100.0), v.masked_fill(hidden, -100.0)
    after = stacked_attention(q, k2, v2, key_mask, SCALE)
    torch.testing.assert_close(real_rows(after, lengths), real_rows(before, lengths), rtol=0, atol=0)


def test_unmasked_grid_and_chunks_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, _, _ = grid(batch=3, seed=2)
    whole = stacked_attention(q, k, v, None, SCALE)
    torch.testing.assert_close(
        whole.double(), exact(q, k, v, torch.ones(1, 1, 1, 40, dtype=torch.bool)), atol=0.02, rtol=0
    )
    monkeypatch.setattr(attention, "SCORES_PER_CHUNK", 1)  # one text at a time
    torch.testing.assert_close(stacked_attention(q, k, v, None, SCALE), whole, rtol=0, atol=0)


def test_which_grids_take_stacked_attention() -> None:
    q, _, _, key_mask, _ = grid()
    assert stacked_attention_applies(q, kv_heads=1, mask=key_mask)
    assert stacked_attention_applies(q, kv_heads=1, mask=None)
    assert not stacked_attention_applies(q, kv_heads=2, mask=key_mask), "one kv head only"
    assert not stacked_attention_applies(q.float(), kv_heads=1, mask=key_mask), "float32 keeps flash"
    assert not stacked_attention_applies(q[:1, :12], kv_heads=1, mask=None), "a single query keeps flash"
    band = torch.ones(1, 1, 40, 40, dtype=torch.bool).tril(5).triu(-5)
    assert not stacked_attention_applies(q, kv_heads=1, mask=band), "a sliding band is more than padding"
