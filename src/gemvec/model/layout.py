"""Where the real tokens of a padded batch sit, and which texts attend together.

Linear layers, norms, RoPE and the MLP work token by token, so the encoder runs them on the
(T, C) rows of real tokens only. Attention needs a padded (B, L) grid per text. When one batch
mixes short and long texts (a server merging requests does), a single grid would be mostly
padding, so runs of consecutive texts of similar length form groups and each group attends on
a grid of its own; a group without padding needs no mask at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A group may hold up to this much padding, relative to its real tokens, before the next text
# starts a new one. Each group costs a few small operations per layer, so a little padding is
# cheaper than a group per length: mixed lengths get faster, similar lengths are unchanged
# (`benchmarks/mixed_lengths.py`; figures in BENCHMARKS.md, "Speed and memory").
GROUP_MAX_PADDING = 0.5


class TokenLayout:
    """Real tokens of a right-padded (B, L) grid as rows: ``unpad`` (B, L, C) -> (T, C) and back."""

    def __init__(self, lengths: torch.Tensor, length: int) -> None:
        self.batch, self.length = len(lengths), length
        real = torch.arange(length)[None, :] < lengths[:, None]  # (B, L)
        self.index = None if bool(real.all()) else real.flatten().nonzero().squeeze(1)  # (T,)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (T, C)."""
        flat = x.reshape(self.batch * self.length, x.shape[-1])
        return flat if self.index is None else flat.index_select(0, self.index)

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        """(T, C) -> (B, L, C), zeros at padding."""
        if self.index is not None:
            grid = rows.new_zeros(self.batch * self.length, rows.shape[-1])
            rows = grid.index_copy_(0, self.index, rows)
        return rows.view(self.batch, self.length, -1)

    def to(self, device: torch.device) -> TokenLayout:
        """The same layout on ``device`` (it is always decided on the CPU)."""
        if self.index is not None:
            self.index = self.index.to(device)
        return self


@dataclass
class AttentionGroup:
    """Consecutive texts that attend on one grid: their token rows, their grid, their masks."""

    rows: slice  # of the batch's (T, C) rows
    layout: TokenLayout
    full_mask: torch.Tensor | None  # (B, 1, L, L) or broadcastable, True = may attend; None = all
    sliding_mask: torch.Tensor | None

    def to(self, device: torch.device) -> AttentionGroup:
        self.layout = self.layout.to(device)
        self.full_mask, self.sliding_mask = (
            None if m is None else m.to(device) for m in (self.full_mask, self.sliding_mask)
        )
        return self


def attention_masks(
    lengths: torch.Tensor, length: int, window: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Boolean masks for full and sliding layers: padded keys hidden, and in sliding layers
    keys with ``|i - j| >= window`` too. None where every query sees every key."""
    positions = torch.arange(length)
    key_ok = positions[None, :] < lengths[:, None]  # (B, L)
    padded = bool((lengths < length).any())
    full = key_ok[:, None, None, :] if padded else None
    if length <= window:
        return full, full
    band = (positions[:, None] - positions[None, :]).abs() < window  # (L, L)
    sliding = band[None, None] & key_ok[:, None, None, :] if padded else band[None, None]
    return full, sliding


def similar_length_runs(lengths: list[int], max_padding: float) -> list[range]:
    """Split texts, in order, into runs whose padded grid holds at most ``max_padding`` × their
    real tokens of padding (a lone text always forms a run)."""
    runs: list[range] = []
    start, longest, real = 0, 0, 0
    for i, n in enumerate(lengths):
        grown = max(longest, n)
        if i > start and grown * (i + 1 - start) > (1 + max_padding) * (real + n):
            runs.append(range(start, i))
            start, grown, real = i, n, 0
        longest, real = grown, real + n
    if lengths:
        runs.append(range(start, len(lengths)))
    return runs


class BatchLayout:
    """A batch's whole layout: its padded grid (ids in, hidden states out) and its attention groups."""

    def __init__(self, lengths: torch.Tensor, length: int, window: int) -> None:
        self.tokens = TokenLayout(lengths, length)
        # each real token's place in its own text, for RoPE on the rows: grid index b*L + l -> l
        index = self.tokens.index
        self.positions = (torch.arange(len(lengths) * length) if index is None else index) % length  # (T,)
        self.groups: list[AttentionGroup] = []
        counts = lengths.tolist()
        first_row = 0
        for run in similar_length_runs(counts, GROUP_MAX_PADDING):
            group_lengths = lengths[run.start : run.stop]
            group_length = max(counts[run.start : run.stop])
            rows = slice(first_row, first_row + sum(counts[run.start : run.stop]))
            masks = attention_masks(group_lengths, group_length, window)
            self.groups.append(AttentionGroup(rows, TokenLayout(group_lengths, group_length), *masks))
            first_row = rows.stop

    def to(self, device: torch.device) -> BatchLayout:
        self.tokens = self.tokens.to(device)
        self.positions = self.positions.to(device)
        self.groups = [group.to(device) for group in self.groups]
        return self
