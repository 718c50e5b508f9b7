"""``.npy`` and ``.npz`` files read without pickles and without trusting their headers.

``NpzArrays`` opens an ``.npz`` lazily: its member names come from the zip directory, and an array is
read only when asked for, so an unused member (however large it would expand) is never decompressed.
Before an array is allocated, its header (shape × dtype) is checked against the bytes the file can hold:
the member's size in the zip directory, itself bounded by its compressed size (deflate expands at most
1032-fold), or the ``.npy`` file's size. A header that claims more is a one-line ``DataError``.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Self

import numpy as np

from sdnn.errors import DataError

DEFLATE_RATIO = 1032  # deflate's largest expansion (zlib technical details)
READ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error)


def _header(handle) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an ``.npy`` header; nothing after it is read."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        shape, _, dtype = np.lib.format._read_array_header(handle, version)  # (3, 0): utf-8 field names
    return tuple(shape), dtype


def _check(shape: tuple[int, ...], dtype: np.dtype, available: int, where: str) -> None:
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects ({dtype}), which only unpickling could read; refused")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > available:
        raise DataError(f"{where}: its header says {shape} {dtype} ({claimed / 2**20:.1f} MB) but the file holds "
                        f"{max(available, 0) / 2**20:.1f} MB of data: truncated or damaged")


def read_npy(path: Path) -> np.ndarray:
    """An ``.npy`` file's array, its header checked against the file's size first."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DataError(f"{path}: not a regular file")
            shape, dtype = _header(handle)
            _check(shape, dtype, info.st_size - handle.tell(), str(path))
            handle.seek(0)
            return np.lib.format.read_array(handle, allow_pickle=False)
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


class NpzArrays:
    """An ``.npz`` opened lazily (see the module docstring): ``names``, ``in``, ``read(name)``. Use it as a
    context manager, or ``close()`` it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):  # a FIFO would block, a device never end
                raise DataError(f"{self.path}: not a regular file")
            self._zip = zipfile.ZipFile(self.path)
        except READ_ERRORS as exc:
            raise DataError(f"{self.path}: not a readable .npz file ({exc})") from None
        self._members = {info.filename[:-4]: info for info in self._zip.infolist() if info.filename.endswith(".npy")}

    @property
    def names(self) -> list[str]:
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> np.ndarray:
        """The array ``name``, after its header is checked against what the member can hold."""
        info = self._members[name]
        where = f"{self.path}['{name}']"
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            limit = info.compress_size * DEFLATE_RATIO + 1024
        else:
            raise DataError(f"{where}: compressed with zip method {info.compress_type}; save it with np.savez or "
                            "np.savez_compressed")
        if info.file_size > limit:
            raise DataError(f"{where}: the zip directory says {info.file_size} bytes, more than its "
                            f"{info.compress_size} compressed bytes can hold: damaged")
        try:
            with self._zip.open(info) as handle:
                shape, dtype = _header(handle)
                _check(shape, dtype, info.file_size - handle.tell(), where)
            with self._zip.open(info) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
        except DataError:
            raise
        except READ_ERRORS as exc:
            raise DataError(f"{where}: not a readable array ({exc})") from None

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
