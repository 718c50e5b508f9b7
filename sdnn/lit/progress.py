"""What the terminal shows: the run's progress lines, spinners and bars (``Console``), and
Lightning's rich progress bar with the phase in every description
("phase 1: neglect scores · epoch 2/29", "phase 2: subclass training · testing"). Where standard output
is not a terminal (a file, a pipe, a CI or SLURM log) there are no bars: ``EpochLines`` prints one plain
line per epoch instead. Every line the run prints also goes into ``run.log`` (``sdnn.runlog.record``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.runlog import PlainProgress, clock, record, terminal

PHASE_TITLES = {
    "phase1": "phase 1: neglect scores",
    "phase2": "phase 2: subclass training",
    "baseline": "baseline",
    "reweight": "reweight: eq. 3, selected classes × H",
    "class2str": "class2str: latent-hierarchy classifier",
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
        items.pop("v_num", None)  # the logger's version number: 0 in every run folder
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


class EpochLines(pl.Callback):
    """One plain line per training epoch, e.g. "phase 2: subclass training · epoch 3/30 · loss 0.01234 ·
    2,592 samples/s · val acc 97.50% · ETA 0:00:33": printed when ``show`` (progress on, no bar drawn:
    the output is a file or a pipe), always written to ``run.log``. The rate counts the training steps
    only; the ETA is the phase's remaining epochs at the mean time per epoch so far (evaluation included)."""

    def __init__(self, phase: str, console: Console, show: bool, unit: str = "samples",
                 batch_size: int | None = None):
        self.title = PHASE_TITLES.get(phase, phase)
        self.console, self.show, self.unit, self.batch_size = console, show, unit, batch_size
        self._fit: tuple[float, int] = (time.perf_counter(), 0)
        self._epoch: tuple[float, int] = self._fit
        self._last: tuple[float, int] | None = None

    def on_train_start(self, trainer, pl_module):
        self._fit = (time.perf_counter(), trainer.current_epoch)  # a resumed fit starts at a later epoch

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch, self._last = (time.perf_counter(), trainer.global_step), None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._last = (time.perf_counter(), trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        epoch, epochs = trainer.current_epoch + 1, trainer.max_epochs
        parts = [f"{self.title} · epoch {epoch}/{epochs}"]
        loss = trainer.callback_metrics.get("train/loss")  # one read from the device per epoch
        if loss is not None:
            parts.append(f"loss {float(loss):.4g}")
        if self.batch_size and self._last is not None:
            seconds, steps = self._last[0] - self._epoch[0], self._last[1] - self._epoch[1]
            if seconds > 0 and steps > 0:
                parts.append(f"{steps * self.batch_size * trainer.world_size / seconds:,.0f} {self.unit}/s")
        val = trainer.callback_metrics.get("val/acc")
        if val is not None:
            parts.append(f"val acc {100 * float(val):.2f}%")
        done = epoch - self._fit[1]
        if done > 0 and epochs is not None:
            parts.append(f"ETA {clock((epochs - epoch) * (time.perf_counter() - self._fit[0]) / done)}")
        line = " · ".join(parts)
        if self.show:
            self.console.say(line)
        else:
            self.console.record(line)


class Console:
    """Progress lines, printed once (by rank 0 under DDP) and written to ``run.log``; with ``bars``,
    spinners and bars for work outside Lightning's loops: rich ones on a terminal, a few plain lines
    where the output is a file or a pipe (``interactive``: standard output is a terminal)."""

    def __init__(self, bars: bool = True, interactive: bool | None = None):
        self.bars = bars
        self.interactive = terminal() if interactive is None else interactive

    @property
    def shows(self) -> bool:
        return rank_zero_only.rank == 0

    @property
    def live(self) -> bool:
        """Whether progress is drawn as rich bars (on, and to a terminal)."""
        return self.bars and self.interactive

    def say(self, message: str) -> None:
        if self.shows:
            print(message, flush=True)
            record(message)

    def record(self, message: str) -> None:
        """Into ``run.log`` only."""
        if self.shows:
            record(message)

    def status(self, message: str):
        """A spinner while the block runs (none in a file or a pipe: the run's own lines say what runs)."""
        if not (self.live and self.shows):
            return contextlib.nullcontext()
        from rich.console import Console as RichConsole

        return RichConsole(stderr=True).status(message)

    def progress(self, batches: Iterable, total: int, description: str, unit: str = "videos") -> Iterator:
        """The batches, with a bar in ``unit`` and ``unit``/s (a batch's size is its first item's length);
        in a file or a pipe, a line at every tenth and one at the end."""
        if not (self.bars and self.shows):
            yield from batches
            return
        if not self.interactive:
            lines = PlainProgress(self.say, description, total, unit)
            for batch in batches:
                yield batch
                lines.advance(len(batch[0]))
            lines.finish()
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                                   TimeRemainingColumn)
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else "")

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for batch in batches:
                yield batch
                bar.advance(task, len(batch[0]))


def short(items, limit: int = 12) -> str:
    """A list or dict for a progress line, cut after ``limit`` entries (YT8M selects 386 classes)."""
    if isinstance(items, dict):
        parts = [f"{k}: {v}" for k, v in items.items()]
        opening, closing = "{", "}"
    else:
        parts = [str(v) for v in items]
        opening, closing = "[", "]"
    more = f", … ({len(parts)} in all)" if len(parts) > limit else ""
    return opening + ", ".join(parts[:limit]) + more + closing
