"""Where gemvec keeps its files.

Data (collections, downloaded LLMs): ``$GEMVEC_HOME``, else ``$XDG_DATA_HOME/gemvec``, else
``~/.local/share/gemvec``. Caches (eval embeddings, weight hashes: anything that can be
recomputed): ``$GEMVEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/gemvec``, else ``~/.cache/gemvec``.
"""

from __future__ import annotations

import os
from pathlib import Path


def gemvec_home() -> Path:
    """The data folder (collections, downloaded LLMs)."""
    if os.environ.get("GEMVEC_HOME"):
        return Path(os.environ["GEMVEC_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(base).expanduser() / "gemvec"


def cache_home() -> Path:
    """The cache folder: everything in it can be recomputed."""
    if os.environ.get("GEMVEC_CACHE_DIR"):
        return Path(os.environ["GEMVEC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "gemvec"
