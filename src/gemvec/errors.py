"""Errors gemvec raises on purpose. Each message says what is wrong and what to do.

Every class carries the HTTP status and OpenAI-style ``code`` the server answers it with, so
the mapping lives with the error, not in the server: bad input is a 400, a collection another
process is writing is a 409, a model or collection that cannot be used is a 503, an upstream
LLM failure a 502.
"""

from __future__ import annotations

import importlib


class GemvecError(Exception):
    """Base class: an error the user can act on (bad input, missing model, ...)."""

    http_status = 400
    code = "invalid_value"


class InputError(GemvecError, ValueError):
    """The texts or options passed to encode() are unusable."""


class PrecisionError(GemvecError, ValueError):
    """An unsupported or unsafe precision was requested."""


class DatasetError(InputError):
    """A dataset or table file is missing, malformed, or lacks a column the task needs."""


class ModelNotFoundError(GemvecError):
    """The model folder or hub id could not be resolved to a checkpoint."""

    http_status = 503
    code = "model_unavailable"


class CheckpointError(GemvecError):
    """The checkpoint exists but is incomplete, corrupt, or not EmbeddingGemma-shaped."""

    http_status = 503
    code = "model_unavailable"


class CollectionError(GemvecError):
    """A collection is missing, damaged, locked, or cannot be used as asked."""


class CollectionNotFoundError(CollectionError):
    """No collection at the given name or path."""

    http_status = 404
    code = "collection_not_found"


class CollectionMismatchError(CollectionError):
    """The collection was built with another model, dim or vector precision."""

    http_status = 409
    code = "collection_mismatch"


class CollectionLockedError(CollectionError):
    """Another process is writing the collection."""

    http_status = 409
    code = "collection_locked"


class CollectionDamagedError(CollectionError):
    """The collection's files are damaged; ``gemvec collections check/repair`` says more."""

    http_status = 503
    code = "collection_damaged"


class StorageFullError(CollectionError):
    """The disk holding a collection is full; what was committed before is kept."""

    http_status = 507
    code = "storage_full"


class LLMError(GemvecError):
    """The language model (local or OpenAI-compatible server) failed or is unreachable."""

    http_status = 502
    code = "llm_error"


class WorkerStoppedError(GemvecError, RuntimeError):
    """The model's worker thread has stopped (the server is shutting down)."""

    http_status = 503
    code = "shutting_down"


class MissingExtraError(GemvecError, ImportError):
    """An optional dependency is needed for this feature."""

    http_status = 501
    code = "missing_extra"

    def __init__(self, module: str, extra: str, feature: str) -> None:
        # The module is named as Python imports it ('docx', 'bs4'), which is often not the name
        # pip knows (python-docx, beautifulsoup4): the extra is what to install.
        super().__init__(
            f"{feature} needs gemvec's optional '{extra}' dependencies (Python module '{module}' "
            f"is not installed). Install them with: pip install 'gemvec[{extra}]'"
        )


def require(module: str, extra: str, feature: str):
    """Import an optional module or raise MissingExtraError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingExtraError(module.split(".")[0], extra, feature) from exc
