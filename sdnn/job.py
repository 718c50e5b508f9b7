"""``Job``: everything one run needs, as typed parts (``sdnn.build.build_job`` builds it from a
configuration; ``sdnn.pipeline`` runs it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from sdnn.augment import Augmenter
from sdnn.cache import Phase1Cache
from sdnn.config import Class2StrConfig, Method, ObserveConfig, Phase1Config, Settings, SubclassConfig
from sdnn.data.module import SDNNData
from sdnn.lit.module import ModelSpec
from sdnn.lit.trainer import Training
from sdnn.partition import Partitioner
from sdnn.results import PhaseResult, Results


@dataclass
class Job:
    """Everything one run needs, built and checked (``sdnn.build.build_job``)."""

    settings: Settings
    run_dir: Path
    data: SDNNData
    model: ModelSpec
    loss: nn.Module
    partitioner: Partitioner
    augmenter: Augmenter        # resolved for the data (``augmenter=auto``)
    training: Training
    cache: Phase1Cache
    config: dict[str, Any]     # the resolved configuration: an opaque snapshot for results.json
    backbone_config: dict[str, Any]   # the backbone's ``_target_`` and arguments: the model card rebuilds it
    shared_phase1: Any = None   # a Phase1Result the recipe takes instead of running phase 1 (method=auto's candidates)
    shared_indicators: Any = None  # the SplitIndicators of this run's split, when method=auto computed them already

    @property
    def method(self) -> Method:
        return self.settings.method

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def phase1(self) -> Phase1Config:
        return self.settings.phase1

    @property
    def subclass(self) -> SubclassConfig:
        return self.settings.subclass

    @property
    def observe(self) -> ObserveConfig:
        return self.settings.observe

    @property
    def class2str(self) -> Class2StrConfig:
        return self.settings.class2str

    def say(self, message: str) -> None:
        self.training.console.say(message)

    def results(self, subclass_to_class, phase: PhaseResult, epoch_test_acc: dict, **extra) -> Results:
        """``Results`` of the run that trained ``phase`` last (``extra``: the method's own keys)."""
        skipped = self.data.skipped
        return Results(method=str(self.method), dataset=self.data.name, model=self.settings.model_name,
                       seed=self.seed, subclass_to_class=subclass_to_class.tolist(), test=phase.test, val=phase.val,
                       train_seconds=phase.seconds, epoch_test_acc=epoch_test_acc, class_names=self.data.names(),
                       config=self.config, data_skipped={"count": len(skipped), "items": list(skipped)},
                       module=phase.module, **extra)


class Recipe(NamedTuple):
    """A method's recipe and the phases it trains, in order (their checkpoints: ``<run_dir>/<phase>/``)."""

    run: Callable[[Job], Results]
    phases: tuple[str, ...]
