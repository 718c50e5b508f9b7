"""A Lightning callback for tests: each rank saves what its training steps saw, to files.

Used through the config: ``+trainer.callbacks=[{_target_: tests.ddp_probe.StepDump, folder: ...}]``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class StepDump(pl.Callback):
    """Per rank and phase: every step's features, logits, targets; the subclass map at fit start."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def _prefix(self, trainer) -> str:
        return f"{Path(trainer.default_root_dir).name}_rank{trainer.global_rank}"

    def on_fit_start(self, trainer, pl_module):
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.subclass_to_class.cpu(), self.folder / f"{self._prefix(trainer)}_map.pt")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = {k: outputs[k].cpu() for k in ("features", "logits", "targets")}
        torch.save(step, self.folder / f"{self._prefix(trainer)}_step{trainer.global_step:05d}.pt")


class InitialWeights(pl.Callback):
    """Per phase: the network's weights when training starts (``<phase>.pt`` in ``folder``)."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_start(self, trainer, pl_module):
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.folder / f"{Path(trainer.default_root_dir).name}.pt")
