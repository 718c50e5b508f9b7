"""Lightning's rich progress bar, with the phase in every description
("phase 1: neglect scores · epoch 2/29", "phase 2: subclass training · testing")."""

from __future__ import annotations

import time

from pytorch_lightning.callbacks import RichProgressBar

PHASE_TITLES = {
    "phase1": "phase 1: neglect scores",
    "phase2": "phase 2: subclass training",
    "baseline": "baseline",
}


class PhaseProgressBar(RichProgressBar):
    """A ``RichProgressBar`` whose bars are named after the SDNN phase they belong to.

    It shows the training loss, read from the device once every ``trainer.log_every_n_steps``
    steps (reading it after every step would stall the GPU's queue once per step), and, given
    ``batch_size``, the training rate in ``unit``/s over all ranks ("videos/s" for YouTube-8M).
    """

    def __init__(self, phase: str, unit: str = "samples", batch_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.title = PHASE_TITLES.get(phase, phase)
        self.unit, self.batch_size = unit, batch_size
        self._loss: float | None = None
        self._loss_step = -1
        self._epoch_start: tuple[float, int] | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        super().on_train_epoch_start(trainer, pl_module)
        self._epoch_start = (time.perf_counter(), trainer.global_step)

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        step = trainer.global_step
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and (self._loss is None or step - self._loss_step >= trainer.log_every_n_steps):
            self._loss, self._loss_step = float(loss), step
        if self._loss is not None and trainer.training:
            items["loss"] = f"{self._loss:.4g}"
        if self.batch_size and self._epoch_start is not None and trainer.training:
            seconds, steps = time.perf_counter() - self._epoch_start[0], step - self._epoch_start[1]
            if seconds > 0 and steps > 0:
                items[f"{self.unit}/s"] = f"{steps * self.batch_size * trainer.world_size / seconds:,.0f}"
        return items

    @property
    def validation_description(self) -> str:
        return f"{self.title} · validation"

    @property
    def test_description(self) -> str:
        return f"{self.title} · testing"

    def _get_train_description(self, current_epoch: int) -> str:
        epochs = f"/{self.trainer.max_epochs}" if self.trainer.max_epochs is not None else ""
        return f"{self.title} · epoch {current_epoch + 1}{epochs}"
