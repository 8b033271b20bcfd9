"""The sentence-embedding head: mean pooling, two Dense projections, Matryoshka truncation, L2 norm."""

from __future__ import annotations

from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MATRYOSHKA_DIMS = (768, 512, 256, 128)
NORM_EPS = 1e-12  # a row's norm is at least this, so zero rows stay zero


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


@overload
def truncate_and_normalize(vectors: torch.Tensor, dim: int | None, normalize: bool = ...) -> torch.Tensor: ...
@overload
def truncate_and_normalize(vectors: np.ndarray, dim: int | None, normalize: bool = ...) -> np.ndarray: ...
def truncate_and_normalize(
    vectors: torch.Tensor | np.ndarray, dim: int | None, normalize: bool = True
) -> torch.Tensor | np.ndarray:
    """Keep the first `dim` values of each row (Matryoshka), then L2-normalise if asked.

    A tensor stays a tensor of its dtype; a numpy array comes back as a new float32 array.
    """
    if isinstance(vectors, np.ndarray):
        rows = np.array(vectors[..., :dim], dtype=np.float32)
        if normalize:
            rows /= np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), NORM_EPS)
        return rows
    if dim is not None:
        vectors = vectors[..., :dim]
    if normalize:
        vectors = F.normalize(vectors, p=2, dim=-1, eps=NORM_EPS)
    return vectors
