"""Phase-1 artifacts on disk, outside the run folder, reused across runs (SPEC §5).

A phase-1 entry is keyed by everything that changes phase 1 (dataset, model, optimiser,
phase-1 epochs and τ, seed, precision) and holds the θ history, the phase-1 weights and
partitions computed from them (keyed further by the subclass settings). Every file is
written atomically (temporary file, then rename), so a killed run never leaves a half file
that a later run trusts; a lock lets parallel runs of a sweep compute phase 1 once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 2  # 2: partitions carry their subclass sizes


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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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


class Phase1Cache:
    """The folder of one phase-1 key: ``meta.json``, ``theta.json``, ``model.pt``, ``partitions/``."""

    def __init__(self, root: str | Path, key_payload: Mapping[str, Any]):
        self.key = stable_hash({"version": CACHE_VERSION, **key_payload})
        self.dir = Path(root).expanduser().resolve() / self.key
        self.key_payload = dict(key_payload)

    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock while phase 1 is computed, so a parallel run waits and then reuses it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def has_phase1(self) -> bool:
        return (self.dir / "meta.json").is_file() and (self.dir / "theta.json").is_file() and (self.dir / "model.pt").is_file()

    def save_phase1(self, history: list[dict], state_dict: dict, meta: Mapping[str, Any]) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        atomic_write_bytes(self.dir / "model.pt", buffer.getvalue())
        atomic_write_json(self.dir / "theta.json", history)
        atomic_write_json(self.dir / "meta.json", {"key": self.key_payload, **meta})  # last: marks completion

    def load_phase1(self) -> tuple[list[dict], dict, dict]:
        history = json.loads((self.dir / "theta.json").read_text())
        meta = json.loads((self.dir / "meta.json").read_text())
        import torch

        state = torch.load(self.dir / "model.pt", map_location="cpu", weights_only=True)
        return history, state, meta

    def save_arrays(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Extra phase-1 arrays (e.g. the gradient norms of Fig. 2), written atomically."""
        atomic_savez(self.dir / f"{name}.npz", arrays)

    def load_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.dir / f"{name}.npz"
        if not path.is_file():
            return None
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}

    def partition_path(self, settings: Mapping[str, Any]) -> Path:
        return self.dir / "partitions" / f"{stable_hash(settings)}.npz"

    def load_partition(self, settings: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        path = self.partition_path(settings)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as arrays:
            return {k: arrays[k] for k in arrays.files}

    def save_partition(self, settings: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        atomic_savez(self.partition_path(settings), arrays)
