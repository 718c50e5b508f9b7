"""Callbacks for streamed data and fractional epochs (YouTube-8M's phase 1 is a third of an epoch)."""

from __future__ import annotations

import math

import pytorch_lightning as pl


class StreamEpochs(pl.Callback):
    """Tells ``YT8MStream``s their DDP rank and world size and, for training streams, the epoch.

    Lightning calls ``set_epoch`` on samplers only, and an ``IterableDataset`` has none; DataLoader
    workers cannot ask ``torch.distributed``. Both are set here in the main process, before the
    iterator (and its workers) is created: ``setup`` runs before any loader is iterated, and
    ``on_train_epoch_start`` before every epoch's iterator except the first, which is epoch 0 or,
    after a resume, the epoch restored by ``load_state_dict``.
    """

    def __init__(self, train_streams=(), eval_streams=()):
        self.train_streams, self.eval_streams = list(train_streams), list(eval_streams)
        self._next_epoch = 0

    def setup(self, trainer, pl_module, stage):
        for stream in (*self.train_streams, *self.eval_streams):
            stream.place(trainer.global_rank, trainer.world_size)

    def on_train_epoch_start(self, trainer, pl_module):
        self._set_epoch(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        self._next_epoch = trainer.current_epoch + 1  # what a checkpoint written at this epoch's end resumes at

    def state_dict(self) -> dict:
        return {"next_epoch": self._next_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self._set_epoch(int(state_dict.get("next_epoch", 0)))

    def _set_epoch(self, epoch: int) -> None:
        self._next_epoch = epoch
        for stream in self.train_streams:
            stream.set_epoch(epoch)


class FractionalEpochs(pl.Callback):
    """Stops training after ``epochs`` (e.g. 0.333) epochs' worth of optimizer steps.

    The step budget is set once the training loader's length is known on every rank (under DDP it
    is the per-rank length), not from a length computed before the process group exists.
    """

    def __init__(self, epochs: float):
        self.epochs = float(epochs)

    def on_train_start(self, trainer, pl_module):
        batches = trainer.num_training_batches
        if math.isinf(batches):
            raise ValueError("a fractional number of epochs needs a training loader with a length")
        steps = math.ceil(self.epochs * batches / max(1, trainer.accumulate_grad_batches))
        trainer.fit_loop.epoch_loop.max_steps = max(1, steps)
