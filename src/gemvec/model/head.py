"""The sentence-embedding head: mean pooling, two Dense projections, Matryoshka truncation, L2 norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MATRYOSHKA_DIMS = (768, 512, 256, 128)


class EmbeddingHead(nn.Module):
    """Hidden states (B, L, H) and lengths (B,) -> sentence embeddings (B, 768), float32.

    Pooling averages every non-pad token, the prompt included, as the published
    ``1_Pooling`` config asks (``include_prompt: true``). The head runs in float32
    whatever the encoder's precision: it is two small matmuls per text.
    """

    def __init__(self, dense_weights: list[torch.Tensor]) -> None:
        super().__init__()
        for i, weight in enumerate(dense_weights):
            self.register_buffer(f"dense{i}", weight.float().contiguous(), persistent=False)
        self.num_dense = len(dense_weights)
        self.out_features: int = dense_weights[-1].shape[0]

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(hidden.device)
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        mask = (positions[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, L, 1)
        summed = (hidden.float() * mask).sum(dim=1)  # (B, H)
        pooled = summed / lengths.clamp(min=1).unsqueeze(-1).float()
        for i in range(self.num_dense):
            pooled = F.linear(pooled, getattr(self, f"dense{i}"))
        return pooled


def truncate_and_normalize(vectors: torch.Tensor, dim: int | None, normalize: bool) -> torch.Tensor:
    """Keep the first `dim` values (Matryoshka), then L2-normalise if asked."""
    if dim is not None:
        vectors = vectors[..., :dim]
    if normalize:
        vectors = F.normalize(vectors, p=2, dim=-1)
    return vectors
