"""``Job``: everything one run needs, as typed parts (``sdnn.app.assemble`` builds it from a
configuration; ``sdnn.pipeline`` runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from sdnn.augment import Augmenter
from sdnn.cache import Phase1Cache
from sdnn.config import Class2StrConfig, Method, ObserveConfig, Phase1Config, SubclassConfig
from sdnn.data.module import SDNNData
from sdnn.lit.module import ModelSpec
from sdnn.lit.trainer import Training
from sdnn.partition import Partitioner
from sdnn.results import PhaseResult, Results


@dataclass
class Job:
    """Everything one run needs, built and checked (``sdnn.app.assemble``)."""

    method: Method
    seed: int
    run_dir: Path
    data: SDNNData
    model: ModelSpec
    loss: nn.Module
    partitioner: Partitioner
    augmenter: Augmenter        # resolved for the data (``augmenter=auto``)
    phase1: Phase1Config
    subclass: SubclassConfig
    observe: ObserveConfig
    training: Training
    cache: Phase1Cache
    labels: dict[str, str]     # names in results.json: model, loss
    config: dict[str, Any]     # the resolved configuration, for results.json
    class2str: Class2StrConfig = field(default_factory=Class2StrConfig)   # method=class2str

    def say(self, message: str) -> None:
        self.training.console.say(message)

    def results(self, subclass_to_class, phase: PhaseResult, epoch_test_acc: dict, **extra) -> Results:
        """``Results`` of the run that trained ``phase`` last (``extra``: the method's own keys)."""
        skipped = self.data.skipped
        return Results(method=str(self.method), dataset=self.data.name, model=self.labels["model"], seed=self.seed,
                       subclass_to_class=subclass_to_class.tolist(), test=phase.test, val=phase.val,
                       train_seconds=phase.seconds, epoch_test_acc=epoch_test_acc, class_names=self.data.names(),
                       config=self.config, data_skipped={"count": len(skipped), "items": list(skipped)},
                       module=phase.module, **extra)
