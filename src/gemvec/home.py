"""Where gemvec keeps its data: ``$GEMVEC_HOME``, else ``$XDG_DATA_HOME/gemvec``, else ``~/.local/share/gemvec``."""

from __future__ import annotations

import os
from pathlib import Path


def gemvec_home() -> Path:
    """The data folder (collections, downloaded LLMs)."""
    if os.environ.get("GEMVEC_HOME"):
        return Path(os.environ["GEMVEC_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(base).expanduser() / "gemvec"
