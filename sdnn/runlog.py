"""What a run records besides the terminal, with no torch, Lightning or Hydra import (``run.py`` uses it
before the configuration is checked):

- ``record(message)``: a line into the run's log file, ``<run dir>/run.log``, which Hydra's job logging
  opens as a ``logging.FileHandler`` on the root logger; nothing happens where no such handler exists
  (in-process runs, ``hydra/job_logging=disabled``). ``say(message)``: print it and ``record`` it.
- ``quiet()``: other packages' log lines (Lightning's start-up and DDP set-up, alembic's and optuna's in the
  Optuna sweeper, hydra.utils' before our own error) and the warnings that do not apply, off, and the others
  shown as ``warning: <message>`` without a file path (the CLI and ``sdnn.app.run`` call it, so studies and
  in-process runs print no more than the CLI).
- ``terminal()``: whether standard output is a terminal. Where it is not (a file, a pipe, a CI or SLURM
  log, ``| tee``), progress is printed as plain lines (``PlainProgress``) instead of redrawn bars.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

_LOGGER = logging.getLogger("sdnn")


# Loggers of other packages and the level below which their lines are dropped: Lightning's start-up and
# distributed set-up lines (INFO), alembic's "setup plugin" lines (optuna imports it in the Optuna sweeper),
# optuna's "A new study created" (its storages), and hydra.utils' ERROR for a class that does not import,
# which sdnn.build words as one line of its own.
QUIET_LOGGERS = {"pytorch_lightning": logging.WARNING, "lightning_fabric": logging.WARNING,
                 "lightning": logging.WARNING, "alembic": logging.WARNING, "optuna.storages": logging.WARNING,
                 "hydra.utils": logging.CRITICAL}


def quiet() -> None:
    """Other packages' chatter off: the loggers of ``QUIET_LOGGERS``, warnings that do not apply, and the file
    and line of those that do (``show_warning``). Called by the CLI before Hydra starts (a sweeper's imports)
    and in every job, since importing Lightning resets its loggers' levels and launchers such as joblib run
    jobs in fresh worker processes."""
    import warnings

    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    logging.raiseExceptions = False  # a run.log that cannot be written (disk full) is not a traceback per line
    warnings.showwarning = show_warning
    _SHOWN.clear()  # once per job
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    # the LightningModule's own on_after_batch_transfer (normalise + augment on the device) is the one meant
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer` in `LightningModule`.*")
    # YT8MStream divides its shards among DataLoader workers itself, so its length is exact
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")


_SHOWN: set[str] = set()


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """``warnings.showwarning``: ``warning: <message>`` on stderr and in run.log, each text once per process,
    without the file and line of the library that raised it."""
    text = " ".join(str(message).split())
    if text in _SHOWN:
        return
    _SHOWN.add(text)
    try:
        print(f"warning: {text}", file=sys.stderr if file is None else file, flush=True)
    except OSError:  # stderr closed or full: a warning is not worth an error
        pass
    record(f"warning: {text}")


def terminal(stream=None) -> bool:
    """Whether ``stream`` (standard output) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def record(message: str) -> None:
    """``message`` into every log file of the root logger (``run.log``), as an INFO record of the ``sdnn``
    logger; not to the terminal, where the caller has printed it already."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            entry = _LOGGER.makeRecord(_LOGGER.name, logging.INFO, __file__, 0, message, None, None)
            if entry.levelno >= handler.level:
                handler.handle(entry)


def say(message: str) -> None:
    """Print ``message`` and put it in ``run.log`` (warnings of the layers below the console)."""
    print(message, flush=True)
    record(message)


def clock(seconds: float) -> str:
    """``h:mm:ss``, as rich's bars show times."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """A counted loop as a few plain lines: one at every tenth of ``total`` (count, rate, ETA) and one at
    the end, each through ``say``."""

    def __init__(self, say: Callable[[str], None], description: str, total: int, unit: str, steps: int = 10):
        self.say, self.description, self.unit, self.steps = say, description, unit, steps
        self.total = max(int(total), 0)
        self.done, self._shown, self._start = 0, 0, time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += int(count)
        if not self.total:
            return
        reached = min(self.steps, self.done * self.steps // self.total)
        if reached > self._shown and self.done < self.total:
            self._shown = reached
            seconds = time.perf_counter() - self._start
            rate = self.done / seconds if seconds > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            self.say(f"{self.description}: {100 * self.done // self.total}% ({self.done:,}/{self.total:,} {self.unit}, "
                     f"{rate:,.0f} {self.unit}/s, ETA {clock(eta)})")

    def finish(self) -> None:
        seconds = time.perf_counter() - self._start
        rate = f", {self.done / seconds:,.0f} {self.unit}/s" if seconds > 0 else ""
        self.say(f"{self.description}: done, {self.done:,} {self.unit} in {clock(seconds)}{rate}")
