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
    """A ``RichProgressBar`` whose bars are named after the SDNN phase they belong to."""

    def __init__(self, phase: str, **kwargs):
        super().__init__(**kwargs)
        self.title = PHASE_TITLES.get(phase, phase)

    @property
    def validation_description(self) -> str:
        return f"{self.title} · validation"

    @property
    def test_description(self) -> str:
        return f"{self.title} · testing"

    def _get_train_description(self, current_epoch: int) -> str:
        epochs = f"/{self.trainer.max_epochs}" if self.trainer.max_epochs is not None else ""
        return f"{self.title} · epoch {current_epoch + 1}{epochs}"
