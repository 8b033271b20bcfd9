"""A strict, memory-mapped safetensors reader.

safetensors is a tiny format (8-byte header length, JSON header, raw data). Reading it
ourselves lets every tensor be a zero-copy view of one read-only ``mmap``: the 805 MB
embedding table is paged in row by row as tokens need it instead of loaded whole, and
a truncated or corrupt file is caught before any tensor is touched.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np
import torch

from gemvec.errors import CheckpointError

_DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    "F32": (np.dtype("<f4"), torch.float32),
    "F16": (np.dtype("<f2"), torch.float16),
    "BF16": (np.dtype("<u2"), torch.bfloat16),  # numpy has no bfloat16: reinterpret the bits
    "I8": (np.dtype("i1"), torch.int8),
    "U8": (np.dtype("u1"), torch.uint8),
    "I32": (np.dtype("<i4"), torch.int32),
    "I64": (np.dtype("<i8"), torch.int64),
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFile:
    """Read-only view of a ``.safetensors`` file; tensors share its memory map."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                size = self.path.stat().st_size
                if size < 8:
                    raise self._corrupt("the file is shorter than its 8-byte header")
                (header_len,) = struct.unpack("<Q", f.read(8))
                if header_len > min(_MAX_HEADER, size - 8):
                    raise self._corrupt(f"the header claims {header_len} bytes but the file has {size}")
                try:
                    header = json.loads(f.read(header_len))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise self._corrupt("its JSON header does not parse") from None
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else None
        except OSError as exc:
            raise CheckpointError(f"Cannot read {self.path}: {exc}") from None
        # The mapping's address, to find which of its pages a tensor view covers (see release).
        self._base = np.frombuffer(self._map, np.uint8).ctypes.data if self._map is not None else 0
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._entries: dict[str, dict] = header
        data_len = size - 8 - header_len
        self._data_start = 8 + header_len
        for name, entry in header.items():
            begin, end = entry.get("data_offsets", (0, -1))
            dtype = entry.get("dtype")
            if dtype not in _DTYPES:
                raise self._corrupt(f"tensor {name!r} has unsupported dtype {dtype!r}")
            expected = int(np.prod(entry["shape"], dtype=np.int64)) * _DTYPES[dtype][0].itemsize
            if not (0 <= begin <= end <= data_len) or end - begin != expected:
                raise self._corrupt(
                    f"tensor {name!r} needs bytes {begin}..{end} ({expected} expected) "
                    f"but the data section holds {data_len}; the file is truncated or damaged"
                )

    def _corrupt(self, why: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path} is not a valid safetensors file: {why}. "
            "Delete it and download the checkpoint again."
        )

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name]["shape"])

    def release(self, tensor: torch.Tensor) -> None:
        """Drop this process's pages of a tensor read from this file, once a copy has been made.

        The mapping is read-only and file-backed, so ``MADV_DONTNEED`` only unmaps the pages
        (they still sit in the page cache) and a later read faults them back in: safe, and
        the copied-from float weights stop counting toward the process's memory. Tensors
        that do not live in this file's mapping are left alone.
        """
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = tensor.data_ptr() - self._base
        end = start + tensor.numel() * tensor.element_size()
        if start < 0 or end > len(self._map) or end <= start:
            return
        first = start - start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, first, end - first)

    def tensor(self, name: str) -> torch.Tensor:
        """Zero-copy, read-only tensor over the memory map (do not write to it)."""
        entry = self._entries[name]
        np_dtype, torch_dtype = _DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        count = (end - begin) // np_dtype.itemsize
        array = np.frombuffer(self._map, dtype=np_dtype, count=count, offset=self._data_start + begin)
        with _silence_readonly_warning():
            out = torch.from_numpy(array.reshape(entry["shape"]))
        return out.view(torch_dtype) if torch_dtype == torch.bfloat16 else out


class _silence_readonly_warning:
    """torch warns that a read-only numpy buffer is not writable; we never write to it."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
