"""Callbacks: NeglectCallback measures θ (eq. 9) during training at almost no cost."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from sdnn.neglect import NeglectAccumulator, neglect_ratios


class NeglectCallback(pl.Callback):
    """Accumulates r_i every step on the device and closes a window every ``tau`` steps.

    Per step: one ``neglect_ratios`` on the batch already computed by the forward pass, no
    host sync. Per window: the per-class sums and counts (2c numbers) are summed across DDP
    ranks, θ = sums / counts is logged (``theta/<class>``) and appended to ``history``.
    ``tau=None`` means one epoch. A window cut short by the end of training is kept with
    ``complete: False``.
    """

    def __init__(self, num_classes: int, tau: int | None = None, method: str = "auto"):
        super().__init__()
        self.num_classes = num_classes
        self.tau = tau
        self.method = method
        self.history: list[dict] = []
        self._acc: NeglectAccumulator | None = None
        self._steps = 0
        self._window_tau = tau

    def on_train_start(self, trainer, pl_module):
        self._acc = NeglectAccumulator(self.num_classes, device=pl_module.device)
        self._steps = 0
        self._window_tau = self.tau or max(1, int(trainer.num_training_batches))
        self.history = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        ratios = neglect_ratios(outputs["features"], outputs["logits"], outputs["targets"], method=self.method)
        self._acc.update(ratios)
        self._steps += 1
        if self._steps == self._window_tau:
            self._close_window(trainer, complete=True)

    def on_train_end(self, trainer, pl_module):
        if self._steps > 0:
            self._close_window(trainer, complete=False)

    def _close_window(self, trainer, complete: bool) -> None:
        sums = trainer.strategy.reduce(self._acc.sums.clone(), reduce_op="sum")
        counts = trainer.strategy.reduce(self._acc.counts.clone(), reduce_op="sum")
        theta = torch.where(counts > 0, sums / counts.clamp_min(1), torch.nan).cpu().tolist()
        self.history.append({"step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                             "steps": self._steps, "complete": complete, "theta": theta})
        if trainer.logger is not None and trainer.is_global_zero:
            metrics = {f"theta/{i}": v for i, v in enumerate(theta) if not math.isnan(v)}
            trainer.logger.log_metrics(metrics, step=int(trainer.global_step))
        self._acc.reset()
        self._steps = 0
