"""Interruption and resume, and numerical faults: the Lightning glue that lets a killed run continue.

- ``AtomicCheckpointIO`` writes every checkpoint to ``<name>.partial`` and renames it, so a kill
  mid-write leaves the previous checkpoint intact and never a half file that a later run trusts; it
  loads checkpoints with ``weights_only=True`` (tensors and plain values only), so a planted
  ``last.ckpt`` cannot run code, and a damaged one is a one-line error naming it and the fix.
- ``EpochSeed`` reseeds torch, numpy and ``random`` at the start of every epoch from
  (seed, epoch): an epoch's augmentation and dropout draws do not depend on what ran before it
  in the same process, so a run resumed at epoch e draws exactly what an uninterrupted run draws.
- ``FiniteLossGuard`` stops training when the loss becomes NaN or ±Inf, without a host sync per
  step: a device-side flag is read every ``check_every`` steps and at each epoch end, before
  the epoch's checkpoint is written, so the last checkpoint on disk is always a finite one.
- ``CheckpointPlan`` decides where a phase's checkpoints live and whether an earlier run's
  checkpoint may be resumed (same configuration, or ``checkpoint.resume=force``).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.cache import atomic_write_json
from sdnn.errors import CheckpointError, ConfigError, SDNNError, disk_error
from sdnn.runfolder import changes, config_fingerprint


class NumericalError(SDNNError):
    """The training loss became NaN or infinite."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<path>.partial``, then ``os.replace`` onto ``path``; ``torch.load`` with
    ``weights_only=True`` whatever the caller asks. Our checkpoints hold tensors, numbers, strings, lists,
    dicts and the ``collections.Counter`` of MultiStepLR's milestones, all on torch's own allow-list."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, path)
        except OSError as exc:  # disk full or read-only: the previous checkpoint stays, the half file goes
            partial.unlink(missing_ok=True)
            raise (disk_error(OSError(exc.errno, exc.strerror, str(path))) or exc) from None

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, **({"map_location": map_location} if map_location else {}),
                                           weights_only=True)
        except Exception as exc:  # noqa: BLE001 — whatever is wrong with the file, the fix is the same
            raise _unloadable(path, exc) from None


def check_loadable(path: Path) -> None:
    """A ``CheckpointError`` now, before any work, if ``path`` is not a checkpoint that loads with
    ``weights_only=True``: reads the zip's directory and its pickle (which globals it names), not the tensors."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # noqa: BLE001
        raise _unloadable(path, exc) from None
    if unsafe:
        raise _unloadable(path, pickle.UnpicklingError(", ".join(unsafe[:5])), refused=", ".join(unsafe[:5]))


def _unloadable(path, exc: BaseException, refused: str | None = None) -> CheckpointError:
    text = str(exc).strip()
    found = re.search(r"GLOBAL ([\w.]+)", text) if isinstance(exc, pickle.UnpicklingError) else None
    refused = refused or (found.group(1) if found else None)
    if refused:
        detail = (f"it names {refused}, which loading would have to import and run; it was not written by this "
                  "program, so it is not loaded")
    else:
        first = text.splitlines()[0] if text else ""
        detail = f"not a readable checkpoint: damaged, truncated or foreign; {type(exc).__name__}: {first}"
    return CheckpointError(f"{path} cannot be resumed ({detail}): run the same command with checkpoint.resume=false "
                           "to start this phase over (the file is removed), or use a new hydra.run.dir")


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) + 1) % 2**32


class EpochSeed(pl.Callback):
    """Seeds every RNG that training draws from at each epoch's start, from (seed, epoch) alone."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer, pl_module):
        value = epoch_seed(self.seed, trainer.current_epoch)
        torch.manual_seed(value)  # CPU and every CUDA device
        np.random.seed(value)
        random.seed(value)


class FiniteLossGuard(pl.Callback):
    """Raises ``NumericalError`` (phase, step, epoch, learning rate, last good checkpoint, the fix)
    once the training loss has been NaN or infinite."""

    def __init__(self, phase: str, check_every: int = 50, checkpoint: Path | None = None):
        self.phase = phase
        self.check_every = max(1, int(check_every))
        self.checkpoint = checkpoint
        self._first_bad: torch.Tensor | None = None  # steps since fit start of the first bad loss; -1 = none
        self._kind: torch.Tensor | None = None  # 1: NaN, 2: infinite
        self._count: torch.Tensor | None = None
        self._start_step = 0

    def on_train_start(self, trainer, pl_module):
        self._first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)
        self._kind = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self._count = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self._start_step = int(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach()
        new = ~torch.isfinite(loss) & (self._first_bad < 0)
        self._first_bad = torch.where(new, self._count, self._first_bad)
        self._kind = torch.where(new, torch.where(torch.isnan(loss), 1, 2), self._kind)
        self._count += 1
        if (trainer.global_step - self._start_step) % self.check_every == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer)

    def _check(self, trainer) -> None:
        """One host read (and, under DDP, one max over ranks so that every rank stops together)."""
        found = trainer.strategy.reduce(torch.stack([self._first_bad, self._kind]), reduce_op="max")
        first, kind = (int(v) for v in found.tolist())
        if first < 0:
            return
        step = self._start_step + first
        what = "NaN" if kind == 1 else "infinite"
        lr = trainer.optimizers[0].param_groups[0]["lr"]  # the epoch's rate: schedules step per epoch
        if self.checkpoint is not None and self.checkpoint.is_file():
            kept = (f"The last good checkpoint is kept: {self.checkpoint} (written at the end of an earlier epoch); "
                    "to continue from it with the fix, run the same command with the same hydra.run.dir, the fix "
                    "and checkpoint.resume=force.")
        else:
            kept = "No checkpoint was written before it (it happened in the first epoch)."
        raise NumericalError(
            f"{self.phase}: the training loss became {what} at step {step} (epoch {trainer.current_epoch}), "
            f"learning rate {lr:g}; training stopped and no results were written. {kept} "
            f"Fixes: a lower learning rate (optim.lr={lr / 10:g}), gradient clipping "
            "(+trainer.gradient_clip_val=1.0), trainer.precision=32-true if you use bf16/16-bit, or check the "
            "input data for extreme values.")


class CheckpointPlan:
    """Where phase ``phase`` of the run in ``run_dir`` keeps its checkpoint, and whether to resume it.

    ``every_n_epochs=0`` turns checkpoints (and resuming) off. ``resume``: ``true`` continues
    from ``<run_dir>/<phase>/checkpoints/last.ckpt`` when it exists and was written with the same
    configuration (else a ``ConfigError`` lists the changed keys); ``force`` continues even if the
    configuration changed; ``false`` starts over (``resume_path`` removes the old checkpoint).
    """

    def __init__(self, run_dir: Path, phase: str, cfg_container: dict[str, Any], every_n_epochs: int = 1,
                 resume: bool | str = True):
        self.dir = Path(run_dir) / phase / "checkpoints"
        self.phase = phase
        self.every_n_epochs = int(every_n_epochs)
        self.resume = resume
        self.fingerprint = config_fingerprint(cfg_container)  # the values themselves

    @property
    def enabled(self) -> bool:
        return self.every_n_epochs > 0

    @property
    def last(self) -> Path:
        return self.dir / "last.ckpt"

    def resume_path(self) -> Path | None:
        """The checkpoint to continue from, after checking that the configuration matches; when
        starting over, an earlier checkpoint is removed first so that no later run resumes it."""
        mode = str(self.resume).lower()
        if not self.enabled or not self.last.is_file():
            return None
        if mode == "false":
            if rank_zero_only.rank == 0:
                self.last.unlink(missing_ok=True)
            return None
        stored_path = self.dir / "config.json"
        try:
            stored = json.loads(stored_path.read_text()) if stored_path.is_file() else {}
        except (OSError, ValueError) as exc:
            if mode == "force":
                stored = dict(self.fingerprint)
            else:
                raise CheckpointError(
                    f"{stored_path} (the configuration of {self.last}) is damaged ({type(exc).__name__}: {exc}); "
                    "checkpoint.resume=force continues from the checkpoint anyway, checkpoint.resume=false starts "
                    "this phase over") from None
        if stored != self.fingerprint and mode != "force":
            raise ConfigError(
                f"{self.last} was written by a run with another configuration ({changes(stored, self.fingerprint)}"
                "). Use a new hydra.run.dir to start a new run, "
                "checkpoint.resume=false to start this one over, or checkpoint.resume=force to continue "
                "from the checkpoint anyway.")
        check_loadable(self.last)
        return self.last

    def callbacks(self) -> list[pl.Callback]:
        if not self.enabled:
            return []
        self.dir.mkdir(parents=True, exist_ok=True)
        return [_ConfigRecorder(self.dir / "config.json", self.fingerprint),
                EpochCheckpoint(self.last, self.every_n_epochs)]


class EpochCheckpoint(Checkpoint):
    """``trainer.save_checkpoint(path)`` at the end of every ``every_n_epochs``-th epoch. As a
    ``Checkpoint``, Lightning runs it after the other callbacks, so the file holds their state for
    the epoch (θ history, per-class accuracy) and is written only once the loss guard has passed."""

    def __init__(self, path: Path, every_n_epochs: int = 1):
        self.path, self.every_n_epochs = Path(path), int(every_n_epochs)

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            trainer.save_checkpoint(self.path, weights_only=False)  # the full state (and no INFO line about it)


class _ConfigRecorder(pl.Callback):
    """Writes the configuration fingerprint beside the checkpoints when training starts (rank 0)."""

    def __init__(self, path: Path, fingerprint: dict[str, Any]):
        self.path, self.fingerprint = path, fingerprint

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            atomic_write_json(self.path, self.fingerprint)
