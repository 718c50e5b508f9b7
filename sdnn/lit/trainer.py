"""``train_phase``: one phase's Trainer (from the typed ``TrainerSettings``), its callbacks, checkpoints and
resume, a fresh seeded network, fit and test → ``PhaseResult``."""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from sdnn.config import CheckpointConfig, TrainerSettings
from sdnn.data.module import SDNNData
from sdnn.lit.loggers import LoggerFactory
from sdnn.lit.module import SDNNModule
from sdnn.lit.observe import PerClassAccuracyHistory
from sdnn.lit.progress import PHASE_TITLES, Console, EpochLines, PhaseProgressBar
from sdnn.lit.resume import AtomicCheckpointIO, CheckpointPlan, EpochSeed, FiniteLossGuard
from sdnn.lit.streams import FractionalEpochs
from sdnn.results import PhaseResult


@dataclass
class Training:
    """What every phase of a run shares: the Trainer's settings (user callbacks as ``_target_`` entries),
    loggers, checkpointing, the seed, observation and the console."""

    run_dir: Path
    seed: int
    trainer: TrainerSettings
    make_trainer: Callable[..., pl.Trainer]          # the ``trainer`` group's class
    callbacks: Sequence[Callable[[], pl.Callback]]   # the user's ``trainer.callbacks``: a fresh one per phase
    loggers: LoggerFactory
    config: dict[str, Any]                  # the resolved configuration (checkpoint fingerprints)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    per_class_test_acc: bool = True
    console: Console = field(default_factory=Console)
    test: bool = True   # False: train and validate only (method=auto tests the chosen candidate alone)

    @property
    def max_epochs(self) -> int:
        return self.trainer.max_epochs

    @property
    def bars(self) -> bool:
        return self.trainer.enable_progress_bar

    def checkpoints(self, phase: str) -> CheckpointPlan:
        return CheckpointPlan(self.run_dir, phase, self.config, self.checkpoint.every_n_epochs, self.checkpoint.resume)


def close_process_group() -> None:
    """Destroy the distributed process group, if one is open (its threads joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@functools.cache
def close_process_group_at_exit() -> None:
    """Once per process: close the process group before the interpreter ends; left open, gloo's threads can abort
    a finished run at exit ("terminate called without an active exception", exit status -6)."""
    atexit.register(close_process_group)


@contextlib.contextmanager
def interruptible(trainer: pl.Trainer):
    """Ctrl-C as ``KeyboardInterrupt``: Lightning catches it, tears the Trainer down and calls ``sys.exit(1)``,
    which would end the run with no word of what was saved (``sdnn.app`` and ``run.py`` say it)."""
    try:
        yield
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def train_phase(phase: str, data: SDNNData, build: Callable[[], SDNNModule], epochs: float, training: Training,
                callbacks: Sequence[pl.Callback] = ()) -> PhaseResult:
    """Train a fresh network (``build()`` after seeding, so a cached phase 1 leaves phase 2
    unchanged) for ``epochs`` (fractions allowed), then test it. ``training.test=False`` (method=auto's
    candidates): no look at the test split at all; one validation pass of the final weights instead (also after
    a resume, which trains no epoch)."""
    test = training.test
    pl.seed_everything(training.seed, workers=True, verbose=False)
    module = build()
    settings = training.trainer
    configured = [make() for make in training.callbacks]
    ours = [*data.callbacks(), *callbacks]
    accuracy = None
    tensors = data.test_tensors()
    if test and training.per_class_test_acc and tensors is not None:
        accuracy = PerClassAccuracyHistory(*tensors, batch_size=4 * data.batch_size)
        ours.append(accuracy)
    live = training.bars and training.console.interactive  # a rich bar on a terminal; else a line per epoch
    if live:
        ours.append(PhaseProgressBar(phase, unit=data.unit, batch_size=data.batch_size))
    ours.append(EpochLines(phase, training.console, show=training.bars and not live, unit=data.unit,
                           batch_size=data.batch_size))
    if epochs != int(epochs):
        ours.append(FractionalEpochs(epochs))
    plan = training.checkpoints(phase)
    resume_from = plan.resume_path()
    if resume_from is not None:
        training.console.say(f"{phase}: resuming from {resume_from}")
    guard = FiniteLossGuard(PHASE_TITLES.get(phase, phase), settings.log_every_n_steps,
                            plan.last if plan.enabled else None)
    logger = training.loggers.make(phase)
    arguments = dict(settings.arguments, devices=settings.devices, num_nodes=settings.num_nodes,
                     precision=settings.precision, accelerator=settings.accelerator,
                     log_every_n_steps=settings.log_every_n_steps)
    arguments.update(max_epochs=math.ceil(epochs), max_steps=-1, logger=logger,
                     callbacks=[EpochSeed(training.seed), guard, *configured, *ours, *plan.callbacks()],
                     default_root_dir=str(training.run_dir / phase), use_distributed_sampler=False,
                     enable_checkpointing=plan.enabled, enable_progress_bar=live,
                     plugins=[*(arguments.get("plugins") or []), AtomicCheckpointIO()])
    if not data.has_validation:
        arguments["limit_val_batches"] = 0
    trainer = training.make_trainer(**arguments)
    if trainer.world_size > 1:  # one process group for every phase of the run; closed when the process ends
        close_process_group_at_exit()
    start = time.perf_counter()
    with interruptible(trainer):
        trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=True)  # sdnn.lit.resume: never code
    seconds = time.perf_counter() - start
    with interruptible(trainer):
        if not test:
            trainer.validate(module, datamodule=data, verbose=False)
    val = trainer.callback_metrics.get("val/acc")  # the validation split's accuracy after the last epoch
    with interruptible(trainer):
        if test:
            trainer.test(module, datamodule=data, verbose=False)
    training.loggers.finish(logger)
    return PhaseResult(test=module.test_results,
                       val={"acc": float(val)} if val is not None and data.has_validation else None,
                       seconds=seconds, epoch_test_acc=accuracy.history if accuracy is not None else [],
                       module=module)


def test_module(module: SDNNModule, data: SDNNData, training: Training) -> dict[str, Any]:
    """The test metrics of a trained ``module`` (method=auto's chosen candidate: the one test of the run)."""
    settings = training.trainer
    trainer = training.make_trainer(accelerator=settings.accelerator, devices=settings.devices,
                                    num_nodes=settings.num_nodes, precision=settings.precision, logger=False,
                                    enable_progress_bar=False, enable_checkpointing=False, use_distributed_sampler=False,
                                    default_root_dir=str(training.run_dir), enable_model_summary=False)
    with interruptible(trainer):
        trainer.test(module, datamodule=data, verbose=False)
    return module.test_results
