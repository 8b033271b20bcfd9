"""Errors gemvec raises on purpose. Each message says what is wrong and what to do."""

from __future__ import annotations


class GemvecError(Exception):
    """Base class: an error the user can act on (bad input, missing model, ...)."""


class ModelNotFoundError(GemvecError):
    """The model folder or hub id could not be resolved to a checkpoint."""


class CheckpointError(GemvecError):
    """The checkpoint exists but is incomplete, corrupt, or not EmbeddingGemma-shaped."""


class PrecisionError(GemvecError, ValueError):
    """An unsupported or unsafe precision was requested."""


class InputError(GemvecError, ValueError):
    """The texts or options passed to encode() are unusable."""


class MissingExtraError(GemvecError, ImportError):
    """An optional dependency is needed for this feature."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'gemvec[{extra}]'"
        )


def require(module: str, extra: str, feature: str):
    """Import an optional module or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingExtraError(module.split(".")[0], extra, feature) from exc
