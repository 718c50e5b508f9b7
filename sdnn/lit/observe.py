"""Observation-only callbacks: per-class test accuracy per epoch, the right panel of the paper's Fig. 1.

Nothing here feeds back into training or model selection: the held tensors are the test
split, evaluated only to be plotted.
"""

from __future__ import annotations


import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from sdnn.subclass import class_predictions


class PerClassAccuracyHistory(pl.Callback):
    """Per-class test accuracy CCR_i after every ``every_n_epochs``-th training epoch (Fig. 1, right).

    ``x`` (N, C, H, W) or (N, F), uint8 or float as stored, and ``y`` (N,) class labels are
    evaluated in eval mode under ``torch.no_grad`` (each submodule's train/eval mode is restored
    afterwards), in batches of ``batch_size`` on the module's device, through the module's own
    ``inputs`` normalisation (no augmentation) and its ``subclass_to_class`` map: a sample's
    class is the class of the arg-max unit (SPEC §5).

    Logged to every logger at ``trainer.global_step``: ``<prefix>/acc_class_<i>`` and
    ``<prefix>/acc`` (plus ``epoch``); classes absent from ``y`` are not logged. They go to the
    loggers directly, not through ``pl_module.log``, so they never reach ``callback_metrics``
    and nothing (checkpointing, early stopping) can monitor them.

    ``history`` holds one ``{"epoch", "acc", "per_class_acc"}`` per evaluation (epoch 0-based,
    as in ``NeglectCallback.history``); ``as_array()`` gives the (E, c) matrix for
    ``plot_neglect_and_accuracy``. Under DDP each rank evaluates the samples ``rank::world`` and
    the per-class counts (2c numbers) are summed across ranks, so every rank holds the same
    history.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int = 512, every_n_epochs: int = 1,
                 prefix: str = "epoch_test"):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples, y {len(y)}")
        if batch_size < 1 or every_n_epochs < 1:
            raise ValueError(f"batch_size and every_n_epochs must be >= 1, got {batch_size}, {every_n_epochs}")
        self.x = torch.as_tensor(x)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.batch_size = batch_size
        self.every_n_epochs = every_n_epochs
        self.prefix = prefix
        self.history: list[dict] = []
        self._resumed = False

    def on_train_start(self, trainer, pl_module):
        if not self._resumed:
            self.history = []
        self._resumed = False

    def state_dict(self) -> dict:
        """Saved in checkpoints, so that a resumed run keeps the epochs before the interruption."""
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history, self._resumed = list(state_dict.get("history", [])), True

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        correct, total = self._counts(trainer, pl_module)
        # None (null in results.json) for a class without test samples, as in test.per_class_acc
        per_class = [v if n > 0 else None for v, n in zip((correct / total.clamp_min(1)).tolist(), total.tolist())]
        acc = float(correct.sum() / total.sum().clamp_min(1))
        self.history.append({"epoch": int(trainer.current_epoch), "acc": acc, "per_class_acc": per_class})
        if trainer.is_global_zero:
            metrics = {f"{self.prefix}/acc_class_{i}": v for i, v in enumerate(per_class) if v is not None}
            metrics[f"{self.prefix}/acc"] = acc
            metrics["epoch"] = int(trainer.current_epoch)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=int(trainer.global_step))

    def as_array(self) -> np.ndarray:
        """(E, c) per-class accuracy, one row per evaluation; NaN for classes absent from ``y``."""
        return np.array([h["per_class_acc"] for h in self.history], dtype=float).reshape(len(self.history), -1)

    def epochs(self) -> np.ndarray:
        """(E,) 0-based epoch of each row of ``as_array()``."""
        return np.array([h["epoch"] for h in self.history], dtype=int)

    def _counts(self, trainer, pl_module) -> tuple[Tensor, Tensor]:
        """Correct and total per class (c,) each (a device-side bincount by index_add_), over this rank's shard,
        summed across ranks; float64, on the host."""
        c = pl_module.num_classes
        device = pl_module.device
        x = self.x[trainer.global_rank::trainer.world_size]
        y = self.y[trainer.global_rank::trainer.world_size]
        counts = torch.zeros(2 * c, dtype=torch.float64, device=device)
        modes = {module: module.training for module in pl_module.modules()}
        pl_module.eval()
        try:
            with torch.no_grad(), trainer.precision_plugin.val_step_context():
                for start in range(0, len(x), self.batch_size):
                    xb = trainer.precision_plugin.convert_input(x[start:start + self.batch_size])
                    xb = pl_module.inputs(xb.to(device, non_blocking=True), train=False)
                    if pl_module.channels_last and xb.dim() == 4:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    yb = y[start:start + self.batch_size].to(device, non_blocking=True)
                    pred = class_predictions(pl_module(xb)[1], pl_module.subclass_to_class)
                    counts.index_add_(0, yb, (pred == yb).to(counts.dtype))
                    counts.index_add_(0, yb + c, torch.ones_like(counts[:1]).expand(len(yb)))
        finally:
            for module, training in modes.items():
                module.train(training)
        counts = trainer.strategy.reduce(counts, reduce_op="sum").cpu()
        return counts[:c], counts[c:]
