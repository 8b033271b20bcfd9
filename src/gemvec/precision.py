"""Numeric precisions gemvec runs the encoder in, and how the default is chosen."""

from __future__ import annotations

from enum import Enum

import torch

from gemvec.errors import PrecisionError


class Precision(str, Enum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self is Precision.BFLOAT16 else torch.float32


_ALIASES = {"fp32": "float32", "f32": "float32", "bf16": "bfloat16"}
_FLOAT16 = {"float16", "fp16", "f16", "half"}


def parse_precision(value: Precision | str | None) -> Precision:
    """A Precision from its name or alias; None picks :func:`default_precision`."""
    if value is None:
        return default_precision()
    if isinstance(value, Precision):
        return value
    key = str(value).strip().lower().removeprefix("torch.")
    if key in _FLOAT16:
        raise PrecisionError(
            "float16 is not supported: EmbeddingGemma's activations reach about 8e5, past float16's "
            "maximum of 65504, so the vectors would be inf/NaN. Use 'bfloat16' (same memory, float32's "
            "range) or 'float32'."
        )
    key = _ALIASES.get(key, key)
    try:
        return Precision(key)
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise PrecisionError(f"Unknown precision {value!r}. Choose one of: {choices}.") from None


def default_precision() -> Precision:
    """float32: exact parity with the reference implementation on every CPU."""
    return Precision.FLOAT32
