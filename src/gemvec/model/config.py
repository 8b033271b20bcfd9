"""Gemma 3 text-encoder configuration, with fields named exactly like ``config.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gemvec.errors import CheckpointError

SUPPORTED_MODEL_TYPES = ("gemma3_text",)


@dataclass(frozen=True)
class Gemma3TextConfig:
    """The subset of a Gemma 3 ``config.json`` the encoder needs."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    layer_types: tuple[str, ...]
    sliding_window: int
    query_pre_attn_scalar: float
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_local_base_freq: float = 10_000.0
    max_position_embeddings: int = 2048
    pad_token_id: int = 0
    hidden_activation: str = "gelu_pytorch_tanh"
    use_bidirectional_attention: bool = True
    model_type: str = "gemma3_text"

    @property
    def attention_window(self) -> int:
        """Tokens i and j see each other in a sliding layer when ``|i - j| < attention_window``.

        ``config.json`` stores the window as the causal model would read it; the reference
        bidirectional implementation (transformers' Gemma3TextConfig) halves it: 512 -> 257.
        """
        if self.use_bidirectional_attention:
            return self.sliding_window // 2 + 1
        return self.sliding_window

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Gemma3TextConfig:
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(
                f"config.json has model_type {model_type!r}; gemvec runs EmbeddingGemma "
                f"(model_type 'gemma3_text'). Point --model at an EmbeddingGemma checkpoint."
            )
        if raw.get("attn_logit_softcapping") is not None:
            raise CheckpointError(
                "config.json sets attn_logit_softcapping, which EmbeddingGemma does not use."
            )
        rope = raw.get("rope_parameters") or {}
        values = dict(raw)
        if "rope_theta" not in values and "full_attention" in rope:
            values["rope_theta"] = rope["full_attention"]["rope_theta"]
        if "rope_local_base_freq" not in values and "sliding_attention" in rope:
            values["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        if not values.get("layer_types"):
            pattern = int(values.get("_sliding_window_pattern", values.get("sliding_window_pattern", 6)))
            values["layer_types"] = [
                "sliding_attention" if (i + 1) % pattern else "full_attention"
                for i in range(int(values["num_hidden_layers"]))
            ]
        values["layer_types"] = tuple(values["layer_types"])
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is f.default_factory]
        try:
            return cls(**{k: v for k, v in values.items() if k in known})
        except TypeError as exc:
            raise CheckpointError(f"config.json is missing required fields {missing}: {exc}") from None

    @classmethod
    def from_file(cls, path: Path) -> Gemma3TextConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"Cannot read {path}: {exc}. Re-download the checkpoint.") from None
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["layer_types"] = list(self.layer_types)
        return out
