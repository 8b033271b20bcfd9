"""Where collections live: ``-c NAME`` under ``$GEMVEC_HOME/collections``, ``-c ./path`` anywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

from gemvec.errors import InputError
from gemvec.home import gemvec_home

DB_FILE = "gemvec.sqlite"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def collections_dir() -> Path:
    return gemvec_home() / "collections"


def is_path_like(name_or_path: str | os.PathLike[str]) -> bool:
    text = os.fspath(name_or_path)
    return isinstance(name_or_path, os.PathLike) or "/" in text or "\\" in text or text.startswith(("~", "."))


def resolve_collection(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder of a collection given by name (letters, digits, ``._-``) or by path."""
    if is_path_like(name_or_path):
        return Path(name_or_path).expanduser().resolve()
    name = os.fspath(name_or_path)
    if not _NAME.match(name):
        raise InputError(
            f"Invalid collection name {name!r}: use letters, digits, '.', '_' or '-', "
            "or give a path such as ./my-collection."
        )
    return collections_dir() / name


def list_collections() -> list[Path]:
    """Folders under the collections directory that hold a collection database."""
    root = collections_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / DB_FILE).is_file())
