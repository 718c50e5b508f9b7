"""Lightning's rich progress bar, with the phase in every description
("phase 1: neglect scores · epoch 2/29", "phase 2: subclass training · testing")."""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar

PHASE_TITLES = {
    "phase1": "phase 1: neglect scores",
    "phase2": "phase 2: subclass training",
    "baseline": "baseline",
}


class PhaseProgressBar(RichProgressBar):
    """A ``RichProgressBar`` whose bars are named after the SDNN phase they belong to.

    It shows the training loss, read from the device once every ``trainer.log_every_n_steps``
    steps (reading it after every step would stall the GPU's queue once per step).
    """

    def __init__(self, phase: str, **kwargs):
        super().__init__(**kwargs)
        self.title = PHASE_TITLES.get(phase, phase)
        self._loss: float | None = None
        self._loss_step = -1

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        step = trainer.global_step
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and (self._loss is None or step - self._loss_step >= trainer.log_every_n_steps):
            self._loss, self._loss_step = float(loss), step
        if self._loss is not None and trainer.training:
            items["loss"] = f"{self._loss:.4g}"
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
