"""Lightning callbacks for the interruption tests, used through the config:
``+trainer.callbacks=[{_target_: tests.resume_probe.PauseAt, ...}]``. Neither changes what is computed."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


def _phase(trainer) -> str:
    return Path(trainer.default_root_dir).name


class PauseAt(pl.Callback):
    """At the start of epoch ``epoch`` of phase ``phase``: write ``<marker>`` and sleep, so that a test
    can send a signal while the run is known to be there (the previous epoch's checkpoint is on disk)."""

    def __init__(self, phase: str, epoch: int, marker: str, seconds: float = 60.0):
        self.phase, self.epoch, self.marker, self.seconds = phase, int(epoch), Path(marker), float(seconds)

    def on_train_epoch_start(self, trainer, pl_module):
        if _phase(trainer) == self.phase and trainer.current_epoch == self.epoch:
            self.marker.write_text(f"{self.phase} epoch {self.epoch}\n")
            time.sleep(self.seconds)


class PoisonWeights(pl.Callback):
    """Sets one output-layer weight to NaN before global step ``step`` of phase ``phase``: a numerical fault."""

    def __init__(self, phase: str, step: int):
        self.phase, self.step = phase, int(step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if _phase(trainer) == self.phase and trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.head.weight[0, 0] = math.nan
