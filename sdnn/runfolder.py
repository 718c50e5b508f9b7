"""The run folder (``hydra.run.dir``): one run per folder, one process per run (no torch, no Lightning).

``claimed(run_dir, config, resume, overwrite)`` holds the folder for a run, before any data is read:

- a lock (``.sdnn-run.lock``, ``fcntl.flock``, released when the process ends, however it ends): a second
  process into the same folder stops at once, naming the first one's pid;
- the run's identity (``.sdnn-run.json``: its configuration fingerprint, ``config_fingerprint``), so that a
  later run into the folder knows what is there. The same configuration again resumes the run or finds it
  complete; another run's folder, or a folder of files that no run wrote, is refused unless
  ``overwrite=true`` (another run's outputs are removed first, other files are left alone) or
  ``checkpoint.resume=force`` (continue from that run's checkpoints anyway).

Hydra's files (``.hydra/``, which ``run.py`` writes once the claim holds, and the job's ``*.log``, which Hydra opens
before the run starts) and the two files above do not count as contents. Under DDP only the first process claims the folder: the others run the same
script in it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdnn.cache import atomic_write_json
from sdnn.errors import ConfigError, disk_error

IDENTITY = ".sdnn-run.json"
LOCK = ".sdnn-run.lock"
# what a run writes into its folder (sdnn.app, sdnn.pipeline, sdnn.figures, the loggers under <phase>/; method=auto's
# candidates under auto/; sdnn.advise's advice.json)
RUN_OUTPUTS = ("results.json", "model", "subclasses.json", "partition.npz", "gradient_norms.npz", "data_skipped.jsonl",
               "fig1_neglect_and_accuracy.png", "fig2_gradient_norms.png", "neglect_vs_error.png",
               "test_accuracy_per_class.png", "hierarchy_tree.png", "phase1", "phase2", "baseline", "reweight",
               "class2str", "auto", "advice.json", "wandb", "lightning_logs")
_COSMETIC = {"logger", "observe", "checkpoint", "hydra", "overwrite"}
_TRAINER_COSMETIC = {"enable_progress_bar", "enable_model_summary", "log_every_n_steps", "callbacks",
                     "enable_checkpointing"}
_held: dict[Path, list[int]] = {}  # folder → [lock file descriptor, claims by this process]


def config_fingerprint(cfg_container: dict[str, Any]) -> dict[str, Any]:
    """The configuration values a run's results and checkpoints depend on, flattened (``a.b.c: value``)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not prefix and key in _COSMETIC or prefix == "trainer." and key in _TRAINER_COSMETIC:
                    continue
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = value

    walk("", cfg_container)
    return json.loads(json.dumps(flat, default=str))


def changes(before: dict[str, Any], after: dict[str, Any], limit: int = 6) -> str:
    """``key: old → new, …`` of two fingerprints."""
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    shown = ", ".join(f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in changed[:limit])
    return shown + (", …" if len(changed) > limit else "")


def first_process() -> bool:
    """Whether this is the process that owns the run folder: not one of the other ranks of a DDP run."""
    return all(os.environ.get(key, "0") == "0"
               for key in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"))


def _hydras(name: str) -> bool:
    """What Hydra (``.hydra/``, the job's log) and this module write before a run starts."""
    return name in (".hydra", IDENTITY, LOCK) or name.endswith(".log")


def _lock(folder: Path) -> int:
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise ConfigError(f"hydra.run.dir={folder} is in use by another run (pid {holder}, which holds {LOCK}); "
                          "wait for it to end, or choose another hydra.run.dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


def previous_fingerprint(folder: Path) -> dict[str, Any] | None:
    """The fingerprint of the run this folder holds: its identity file, or (folders of runs older than it)
    results.json's configuration, or a phase's checkpoint configuration; None when nothing says so."""
    identity = _read_json(folder / IDENTITY)
    if isinstance(identity, dict) and isinstance(identity.get("fingerprint"), dict):
        return identity["fingerprint"]
    results = _read_json(folder / "results.json")
    if isinstance(results, dict) and isinstance(results.get("config"), dict):
        return config_fingerprint(results["config"])
    for stored in sorted(folder.glob("*/checkpoints/config.json")):
        fingerprint = _read_json(stored)
        if isinstance(fingerprint, dict):
            return fingerprint
    return None


def check_contents(folder: Path, fingerprint: dict[str, Any], resume: str, overwrite: bool) -> None:
    """Whether this run may write into ``folder`` (see the module docstring); with ``overwrite``, another run's
    outputs are removed first."""
    contents = sorted(p.name for p in folder.iterdir() if not _hydras(p.name))
    if not contents:
        return
    previous = previous_fingerprint(folder)
    if previous is None:
        if overwrite:
            return
        shown = ", ".join(contents[:3]) + (", …" if len(contents) > 3 else "")
        raise ConfigError(f"hydra.run.dir={folder} holds files that no run of this program wrote ({shown}); choose a "
                          "new or empty folder, or add overwrite=true to write this run among them")
    if previous == fingerprint or resume == "force":
        return
    if overwrite:
        for name in RUN_OUTPUTS:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        return
    raise ConfigError(f"hydra.run.dir={folder} holds another run ({changes(previous, fingerprint)}): use a new "
                      "hydra.run.dir for this one, overwrite=true to replace that run (its results, model and "
                      "checkpoints are removed first), or checkpoint.resume=force to continue from its checkpoints "
                      "anyway")


def _claim(folder: Path, config: dict[str, Any], resume: str, overwrite: bool) -> None:
    if folder in _held:
        _held[folder][1] += 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _lock(folder)
    except OSError as exc:
        raise (disk_error(exc, "choose a writable folder, e.g. hydra.run.dir=outputs/run1") or exc) from None
    try:
        fingerprint = config_fingerprint(config)
        check_contents(folder, fingerprint, str(resume).lower(), bool(overwrite))
        atomic_write_json(folder / IDENTITY, {"fingerprint": fingerprint})
    except BaseException:
        os.close(fd)
        raise
    _held[folder] = [fd, 1]


def _release(folder: Path) -> None:
    _held[folder][1] -= 1
    if _held[folder][1] == 0:
        os.close(_held.pop(folder)[0])


@contextlib.contextmanager
def claimed(run_dir: str | Path, config: dict[str, Any], resume: str = "true", overwrite: bool = False) -> Iterator[None]:
    """Hold ``run_dir`` for this run while the block runs (see the module docstring). Nested claims of the
    same folder by this process (``run.py``, then ``sdnn.app.run``) hold it once."""
    if not first_process():
        yield
        return
    folder = Path(os.path.abspath(run_dir))
    _claim(folder, config, resume, overwrite)
    try:
        yield
    finally:
        _release(folder)
