"""One content hash of a checkpoint: it changes when any weight value does.

Collections, the eval cache and saved classifiers record it, so vectors of another checkpoint (a
fine-tune with the same shapes included) are never mixed with theirs, while copies of one
checkpoint share it. It covers every file that decides the vectors: the weights (``*.safetensors``
anywhere: the encoder and the Dense heads), the JSON configs (``config.json``, the head's configs,
the quantisation manifest, ``tokenizer.json``) and ``tokenizer.model``. Hidden paths are skipped.

Reading 1.2 GB on every load would be slow, so each file's sha256 is cached in
``cache_home()/fingerprints.json`` under its resolved path, with its size, mtime, ctime and inode:
an unchanged file is read once, a rewritten one again (even with its mtime put back, as ``cp -p``
does: that changes the ctime). The cache is only a shortcut: a missing, corrupt or unwritable one
just means the hashes are computed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from gemvec.errors import CheckpointError
from gemvec.home import cache_home

HASHED_SUFFIXES = (".safetensors", ".json")
HASHED_NAMES = ("tokenizer.model",)
CACHE_FILE = "fingerprints.json"
_CACHE_FORMAT = 1
_READ_CHUNK = 4 << 20
_LEGACY_CHUNK = 1 << 20


def model_fingerprint(folder: Path | None, name: str) -> str:
    """16 hex characters identifying the checkpoint in ``folder`` (the hash of ``name`` without one)."""
    if folder is None:
        return hashlib.sha256(name.encode()).hexdigest()[:16]
    folder = Path(folder)
    files = hashed_files(folder)
    if not any(path.suffix == ".safetensors" for path in files):
        raise CheckpointError(f"{folder} holds no *.safetensors weights: it is not a checkpoint folder.")
    digests = _file_digests(files)
    total = hashlib.sha256()
    for path in files:
        total.update(f"{path.relative_to(folder).as_posix()}\0{digests[path]}\n".encode())
    return total.hexdigest()[:16]


def hashed_files(folder: Path) -> list[Path]:
    """The files of ``folder`` the fingerprint covers, in a fixed order."""
    found = [
        path
        for path in folder.rglob("*")
        if (path.suffix in HASHED_SUFFIXES or path.name in HASHED_NAMES)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes (the one place files are read; ``hashlib.file_digest`` is 3.11+)."""
    digest = hashlib.sha256()
    buffer = bytearray(_READ_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def _file_digests(files: list[Path]) -> dict[Path, str]:
    """sha256 of each file: from the cache when its stat is unchanged, else read (and cached)."""
    cache_path = cache_home() / CACHE_FILE
    cached = _read_cache(cache_path)
    fresh: dict[str, dict[str, object]] = {}
    digests: dict[Path, str] = {}
    for path in files:
        real = path.resolve()
        stamp = _stamp(real)  # before reading: a file changed meanwhile gets a new stamp next time
        entry = cached.get(str(real))
        if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str):
            digests[path] = entry["sha256"]
        else:
            digests[path] = sha256_file(real)
            fresh[str(real)] = {"stat": stamp, "sha256": digests[path]}
    if fresh:
        _write_cache(cache_path, fresh)
    return digests


def _stamp(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _read_cache(path: Path) -> dict[str, object]:
    """The cached entries, or none when the file is missing, unreadable or not ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ours = isinstance(data, dict) and data.get("format") == _CACHE_FORMAT
    return data["files"] if ours and isinstance(data.get("files"), dict) else {}


def _write_cache(path: Path, fresh: dict[str, dict[str, object]]) -> None:
    """Merge ``fresh`` into the cache file atomically (temp file + rename); failing is harmless.

    Entries of files that no longer exist are dropped, so the cache stays small. Two processes
    writing at once may lose one's entries: they are recomputed on the next call.
    """
    files = {key: value for key, value in _read_cache(path).items() if os.path.exists(key)}
    files.update(fresh)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": _CACHE_FORMAT, "files": files}, f)
        os.replace(temp, path)
    except OSError:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def legacy_eval_fingerprint(folder: Path) -> str:
    """The fingerprint the eval cache and saved classifiers used before :func:`model_fingerprint`:
    the size and the first and last MiB of each weight file. Only to recognise what was recorded
    with it (an old eval cache file's name, an old classifier's ``fingerprint``)."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "2_Dense/model.safetensors", "3_Dense/model.safetensors"):
        path = folder / name
        if not path.exists():
            continue
        size = path.stat().st_size
        digest.update(f"{name}:{size}".encode())
        with path.open("rb") as f:
            digest.update(f.read(_LEGACY_CHUNK))
            if size > _LEGACY_CHUNK:
                f.seek(max(size - _LEGACY_CHUNK, _LEGACY_CHUNK))
                digest.update(f.read(_LEGACY_CHUNK))
    return digest.hexdigest()[:16]
