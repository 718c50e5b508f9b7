"""Phase-1 artifacts on disk, outside the run folder, reused across runs (SPEC §5).

A phase-1 entry is keyed by everything that changes phase 1 (dataset, model, optimiser,
phase-1 epochs and τ, seed, precision) and holds the θ history, the phase-1 weights and
partitions computed from them (keyed further by the subclass settings). Every file is
written atomically (temporary file, then rename), so a killed run never leaves a half file
that a later run trusts; a lock lets parallel runs of a sweep compute phase 1 once.

It is a cache: a damaged file (truncated, garbled, not ours) is reported with its path and that
entry is computed again; a cache that cannot be written (disk full, read-only) is a warning and
the run goes on without it, so a trained phase 1 is never lost to a failed cache write. The
weights are read with ``torch.load(weights_only=True)`` and the arrays without pickles, so no
file in the cache can run code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sdnn.runlog import say

CACHE_VERSION = 2  # 2: partitions carry their subclass sizes
T = TypeVar("T")


def stable_hash(payload: Mapping[str, Any], length: int = 16) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:  # a write or fsync names no file: name the target
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` written atomically (temporary file, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, default=_json_default) + "\n").encode())


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if hasattr(value, "tolist"):  # numpy and torch arrays (torch is not imported here)
        return value.tolist()
    return str(value)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


class Phase1Cache:
    """The folder of one phase-1 key: ``meta.json``, ``theta.json``, ``model.pt``, ``norms.npz``, ``partitions/``.

    ``say`` prints the warnings (a damaged file and its recomputation, a cache that cannot be written)."""

    def __init__(self, root: str | Path, key_payload: Mapping[str, Any], say: Callable[[str], None] = say):
        self.key = stable_hash({"version": CACHE_VERSION, **key_payload})
        self.dir = Path(root).expanduser().resolve() / self.key
        self.key_payload = dict(key_payload)
        self.say = say
        self.unwritable: str | None = None  # why this cache cannot be written (warned once)

    def _cannot_write(self, exc: OSError) -> None:
        if self.unwritable is None:
            where = exc.filename if exc.filename is not None else self.dir
            self.unwritable = f"{where}: {exc.strerror or exc}"
            self.say(f"warning: cannot write the phase-1 cache ({self.unwritable}); the run goes on without caching "
                     "(free space or set phase1.cache_dir to a writable folder to reuse phase 1 in later runs)")

    def _damaged(self, path: Path, exc: BaseException, what: str) -> None:
        text = str(exc).strip().splitlines()
        self.say(f"warning: the phase-1 cache file {path} is damaged ({type(exc).__name__}: "
                 f"{text[0] if text else ''}); computing {what} again (it is a cache)")

    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock while phase 1 is computed, so a parallel run waits and then reuses it (no lock, with a
        warning, where the cache folder cannot be written)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.dir / ".lock", "w")
        except OSError as exc:
            self._cannot_write(exc)
            handle = None
        if handle is None:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def has_phase1(self) -> bool:
        return (self.dir / "meta.json").is_file() and (self.dir / "theta.json").is_file() and (self.dir / "model.pt").is_file()

    def save_phase1(self, history: list[dict], state_dict: dict, meta: Mapping[str, Any],
                    norms: Mapping[str, np.ndarray] | None = None) -> bool:
        """Writes the entry (``meta.json`` last: it marks completion); False, with a warning, if it cannot."""
        if self.unwritable is not None:
            return False
        import torch

        try:
            if norms is not None:
                atomic_savez(self.dir / "norms.npz", norms)
            buffer = io.BytesIO()
            torch.save(state_dict, buffer)
            atomic_write_bytes(self.dir / "model.pt", buffer.getvalue())
            atomic_write_json(self.dir / "theta.json", history)
            atomic_write_json(self.dir / "meta.json", {"key": self.key_payload, **meta})
        except OSError as exc:
            self._cannot_write(exc)
            return False
        return True

    def load_phase1(self) -> tuple[list[dict], dict, dict, dict[str, np.ndarray] | None] | None:
        """θ history, weights, meta and the gradient norms (None if not recorded); None if the entry is not
        there, or (with a warning naming the file) if a file of it is damaged."""
        if not self.has_phase1():
            return None
        import torch

        path = self.dir / "theta.json"
        try:
            history = json.loads(path.read_text())
            if not isinstance(history, list) or not all(isinstance(w, dict) and "theta" in w for w in history):
                raise ValueError("not a list of θ windows")
            path = self.dir / "meta.json"
            meta = json.loads(path.read_text())
            if not isinstance(meta, dict) or not isinstance(meta.get("seconds"), (int, float)):
                raise ValueError("not the metadata of a phase-1 entry")
            path = self.dir / "model.pt"
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ValueError("not a state dict of tensors")
            path = self.dir / "norms.npz"
            norms = _load_npz(path) if path.is_file() else None
        except Exception as exc:  # noqa: BLE001 — whatever is wrong, the entry is computed again
            self._damaged(path, exc, "phase 1")
            return None
        return history, state, meta, norms

    def partition_path(self, settings: Mapping[str, Any]) -> Path:
        return self.dir / "partitions" / f"{stable_hash(settings)}.npz"

    def load_partition(self, settings: Mapping[str, Any], parse: Callable[[dict[str, np.ndarray]], T]) -> T | None:
        """``parse`` of the cached partition's arrays; None if it is not there, or (with a warning) if damaged."""
        path = self.partition_path(settings)
        if not path.is_file():
            return None
        try:
            return parse(_load_npz(path))
        except Exception as exc:  # noqa: BLE001
            self._damaged(path, exc, "the partition")
            return None

    def save_partition(self, settings: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bool:
        if self.unwritable is not None:
            return False
        try:
            atomic_savez(self.partition_path(settings), arrays)
        except OSError as exc:
            self._cannot_write(exc)
            return False
        return True
