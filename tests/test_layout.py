"""Token layout and attention groups: texts of very different lengths attend on separate grids,
with the same vectors as one padded grid."""

from __future__ import annotations

import pytest
import torch

from gemvec import Embedder
from gemvec.model import layout
from gemvec.model.layout import BatchLayout, TokenLayout, similar_length_runs


def test_runs_split_where_padding_would_exceed_the_allowance() -> None:
    assert similar_length_runs([], 0.5) == []
    assert similar_length_runs([7], 0.0) == [range(0, 1)]
    assert similar_length_runs([4, 4, 2, 2, 2, 5], 0.0) == [range(0, 2), range(2, 5), range(5, 6)]
    # 10+10+9+3+3 real tokens in a 5x10 grid is 50 <= 1.5*35; adding the 1 makes 60 > 1.5*36
    assert similar_length_runs([10, 10, 9, 3, 3, 1], 0.5) == [range(0, 5), range(5, 6)]
    assert similar_length_runs([1, 3, 3, 9, 10], 0.5) == [range(0, 3), range(3, 5)]
    assert similar_length_runs([3, 100, 3], float("inf")) == [range(0, 3)]


def test_token_layout_round_trip_and_positions() -> None:
    lengths = torch.tensor([3, 1, 2])
    tokens = TokenLayout(lengths, 3)
    grid = torch.arange(9.0).view(3, 3, 1)
    rows = tokens.unpad(grid)
    assert rows.squeeze(1).tolist() == [0, 1, 2, 3, 6, 7]
    assert BatchLayout(lengths, 3, window=9).positions.tolist() == [0, 1, 2, 0, 0, 1]
    assert tokens.pad(rows).squeeze(-1).tolist() == [[0, 1, 2], [3, 0, 0], [6, 7, 0]]


def test_groups_cover_every_row_once_with_their_own_grids() -> None:
    lengths = torch.tensor([12, 2, 2, 1])  # 12 and 2 in one 2x12 grid: 24 > 1.5 * 14
    batch = BatchLayout(lengths, 12, window=9)
    assert [(g.rows.start, g.rows.stop) for g in batch.groups] == [(0, 12), (12, 17)]
    alone, short = batch.groups
    assert (alone.layout.length, short.layout.length) == (12, 2)
    assert alone.full_mask is None  # no padding: every token sees every other
    assert alone.sliding_mask is not None and alone.sliding_mask.shape == (1, 1, 12, 12)  # 12 > window 9
    assert short.full_mask is not None and short.full_mask.shape == (3, 1, 1, 2)
    assert short.sliding_mask is short.full_mask  # shorter than the window


@pytest.mark.parametrize("max_padding", [0.0, 0.5])
def test_split_attention_gives_the_vectors_of_one_padded_grid(
    tiny_embedder: Embedder, monkeypatch: pytest.MonkeyPatch, max_padding: float
) -> None:
    texts = ["a", "two words", "a sentence that runs well past the tiny model's sliding window " * 3, "b c"]
    monkeypatch.setattr(layout, "GROUP_MAX_PADDING", float("inf"))
    one_grid = tiny_embedder.encode(texts, batch_size=len(texts))
    monkeypatch.setattr(layout, "GROUP_MAX_PADDING", max_padding)
    lengths = torch.tensor(sorted(tiny_embedder.count_tokens(texts), reverse=True))
    window = tiny_embedder.encoder.config.attention_window
    assert len(BatchLayout(lengths, int(lengths[0]), window).groups) >= 2
    split = tiny_embedder.encode(texts, batch_size=len(texts))
    torch.testing.assert_close(torch.from_numpy(split), torch.from_numpy(one_grid), atol=1e-6, rtol=0)
