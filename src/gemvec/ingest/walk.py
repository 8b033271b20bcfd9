"""Find the files to ingest: files and folders, recursively, with include/exclude globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from pathlib import Path

from gemvec.errors import InputError
from gemvec.ingest.loaders import SUPPORTED_SUFFIXES


def _matches(path: Path, root: Path, patterns: Sequence[str]) -> bool:
    """A pattern matches the file name, or its path relative to the root (``docs/*.md``, ``**/drafts/*``)."""
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.as_posix()
    return any(
        fnmatch.fnmatch(path.name, p)
        or fnmatch.fnmatch(relative, p)
        or fnmatch.fnmatch(relative, p.removeprefix("**/"))
        for p in patterns
    )


def resolve_path(raw: str | Path) -> Path:
    """The absolute path with symlinks resolved; a symlink loop is an InputError, not a traceback."""
    try:
        return Path(raw).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # Python raises RuntimeError("Symlink loop ...")
        raise InputError(f"{raw} cannot be resolved ({exc}); is it a symlink loop?") from None


def find_files(
    paths: Iterable[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Path]:
    """Absolute, sorted, de-duplicated paths of supported files under ``paths``.

    Files named explicitly are taken even when their type is not matched by ``include``;
    hidden files and folders (``.git``, ``.venv``...) are skipped when walking.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        root = resolve_path(raw)
        if root.is_file():
            if not _matches(root, root.parent, exclude):
                found[root] = None
            continue
        if not root.is_dir():
            raise InputError(f"{raw} does not exist.")
        for path in sorted(root.rglob("*")):
            if path.is_file() and wanted(path, root, include, exclude):
                found[path] = None
    return list(found)


def wanted(path: Path, root: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Whether walking ``root`` takes the file ``path``: not hidden (nor under a hidden folder),
    matched by ``include`` (default: a supported type) and not by ``exclude``."""
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        return False
    taken = _matches(path, root, include) if include else path.suffix.lower() in SUPPORTED_SUFFIXES
    return taken and not _matches(path, root, exclude)
