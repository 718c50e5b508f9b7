"""Callbacks: NeglectCallback measures θ (eq. 9) during training at almost no cost."""

from __future__ import annotations

import math

import numpy as np
import pytorch_lightning as pl
import torch

from sdnn.neglect import NeglectAccumulator, neglect_norms, neglect_ratios, ratios_from_norms

NORM_KEYS = ("delta", "delta_hat", "delta_tilde")


class NeglectCallback(pl.Callback):
    """Accumulates r_i every step on the device and closes a window every ``tau`` steps.

    Per step: one ``neglect_ratios`` on the batch already computed by the forward pass, no
    host sync. Per window: the per-class sums and counts (2c numbers) are summed across DDP
    ranks, θ = sums / counts is logged (``theta/<class>``) and appended to ``history``.
    ``tau=None`` means one epoch. A window cut short by the end of training is kept with
    ``complete: False``.

    ``record_norms_every=k > 0`` also keeps ‖δ_i‖, ‖δ̂_i‖, ‖δ̃_i‖ (eq. 6–8, the paper's Fig. 2)
    of every k-th training batch (batch indices 0, k, 2k, … counted from the fit's start
    ``global_step``; equal to ``trainer.global_step`` at the batch's start without gradient
    accumulation). They stay on the device until the window closes and are moved to the host
    there, in one transfer; ``norm_history()`` returns them. Columns are output units (classes
    in phase 1). ‖δ̂_i‖ is NaN where class i had no positive in the batch (where r_i is NaN and
    left out of θ); ‖δ_i‖ = ‖δ̃_i‖ there, as computed. Under DDP each rank keeps its own local
    batch's norms (no communication); rank 0's are the ones plotted. θ is unaffected, and
    ``k = 0`` (the default) costs nothing.
    """

    def __init__(self, num_classes: int, tau: int | None = None, method: str = "auto", record_norms_every: int = 0):
        super().__init__()
        if record_norms_every < 0:
            raise ValueError(f"record_norms_every must be >= 0, got {record_norms_every}")
        self.num_classes = num_classes
        self.tau = tau
        self.method = method
        self.record_norms_every = int(record_norms_every)
        self.history: list[dict] = []
        self._acc: NeglectAccumulator | None = None
        self._steps = 0
        self._window_tau = tau
        self._batch_index = 0
        self._pending_norms: list[torch.Tensor] = []
        self._norm_steps: list[int] = []
        self._norm_chunks: list[np.ndarray] = []
        self._restored: dict | None = None

    def on_train_start(self, trainer, pl_module):
        self._acc = NeglectAccumulator(self.num_classes, device=pl_module.device)
        self._steps = 0
        self._window_tau = self.tau or max(1, int(trainer.num_training_batches))
        self._batch_index = int(trainer.global_step)
        self._pending_norms = []
        if self._restored is None:
            self.history, self._norm_steps, self._norm_chunks = [], [], []
        else:  # resumed from a checkpoint: continue the open window
            state, self._restored = self._restored, None
            self._acc.sums.copy_(state["sums"])
            self._acc.counts.copy_(state["counts"])
            self._steps, self._window_tau = int(state["steps"]), int(state["window_tau"])

    def state_dict(self) -> dict:
        """Saved in checkpoints (a resumed run continues the θ history and the open window)."""
        if self._acc is None:
            return {}
        self._flush_norms()
        return {"history": self.history, "sums": self._acc.sums.cpu(), "counts": self._acc.counts.cpu(),
                "steps": self._steps, "window_tau": self._window_tau, "norm_steps": list(self._norm_steps),
                "norm_chunks": [torch.from_numpy(chunk) for chunk in self._norm_chunks]}

    def load_state_dict(self, state_dict: dict) -> None:
        """The history is restored at once (a fit resumed after its last epoch runs no training hooks)."""
        if not state_dict:
            return
        self._restored = dict(state_dict)
        self.history = list(state_dict["history"])
        self._norm_steps = list(state_dict["norm_steps"])
        self._norm_chunks = [chunk.numpy() for chunk in state_dict["norm_chunks"]]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = (outputs["features"], outputs["logits"], outputs["targets"])
        if self.record_norms_every and self._batch_index % self.record_norms_every == 0:
            norms = neglect_norms(*step, method=self.method)  # computed once, for θ and for Fig. 2
            ratios = ratios_from_norms(*norms, outputs["targets"])
            self._record_norms(norms, ratios)
        else:
            ratios = neglect_ratios(*step, method=self.method)
        self._acc.update(ratios)
        self._batch_index += 1
        self._steps += 1
        if self._steps == self._window_tau:
            self._close_window(trainer, complete=True)

    def on_train_end(self, trainer, pl_module):
        if self._steps > 0:
            self._close_window(trainer, complete=False)
        self._flush_norms()

    def norm_history(self) -> dict[str, np.ndarray]:
        """Fig. 2 data: "steps" (T,) batch indices and "delta", "delta_hat", "delta_tilde" (T, c) float32."""
        self._flush_norms()
        if self._norm_chunks:
            norms = np.concatenate(self._norm_chunks, axis=0)
        else:
            norms = np.zeros((0, len(NORM_KEYS), self.num_classes), dtype=np.float32)
        history = {key: norms[:, k] for k, key in enumerate(NORM_KEYS)}
        history["steps"] = np.asarray(self._norm_steps, dtype=np.int64)
        return history

    def _record_norms(self, norms: tuple[torch.Tensor, torch.Tensor, torch.Tensor], ratios: torch.Tensor) -> None:
        """One (3, c) device tensor (‖δ‖, ‖δ̂‖, ‖δ̃‖); no host sync."""
        pull, push, total = norms
        pull = torch.where(torch.isnan(ratios), torch.full_like(pull, math.nan), pull)
        self._pending_norms.append(torch.stack([total, pull, push]).float())
        self._norm_steps.append(self._batch_index)

    def _flush_norms(self) -> None:
        """Moves the window's recorded norms to the host in one transfer."""
        if self._pending_norms:
            self._norm_chunks.append(torch.stack(self._pending_norms).cpu().numpy())
            self._pending_norms = []

    def _close_window(self, trainer, complete: bool) -> None:
        sums = trainer.strategy.reduce(self._acc.sums.clone(), reduce_op="sum")
        counts = trainer.strategy.reduce(self._acc.counts.clone(), reduce_op="sum")
        theta = torch.where(counts > 0, sums / counts.clamp_min(1), torch.nan).cpu().tolist()
        self._flush_norms()
        self.history.append({"step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                             "steps": self._steps, "complete": complete, "theta": theta})
        if trainer.logger is not None and trainer.is_global_zero:
            metrics = {f"theta/{i}": v for i, v in enumerate(theta) if not math.isnan(v)}
            trainer.logger.log_metrics(metrics, step=int(trainer.global_step))
        self._acc.reset()
        self._steps = 0
