"""The label-free indicators (``sdnn.indicators``) of a run's split, from the phase-1 network and the partition
SDNN trains with: every ``sdnn``/``reweight`` run records them (results.json ``split_indicators``), so a run says
after the fact whether its split was meaningful; ``sdnn.advise`` turns them into a verdict before any training."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sdnn.indicators import ClassIndicators, ProbeResult, class_indicators, probe_targets, ridge_probe
from sdnn.job import Job
from sdnn.lit.module import embedder
from sdnn.repartition import Partition, embed_chunks
from sdnn.results import Phase1Result, Selection
from sdnn.stats import signed
from sdnn.subclass import subclass_numbers

MAX_ROWS = 20_000   # training observations the indicators look at (a seeded subset beyond it)
MAX_REWEIGHTED = 64  # the reweight probe solves one system per selected class: beyond this many it is left out


@dataclass
class SplitIndicators:
    """Per split class: separation against a one-mode reference and stability (``ClassIndicators``); for the
    whole split: the ridge probe on the frozen phase-1 features (None without a phase-1 network)."""

    per_class: dict[int, ClassIndicators]
    probe: ProbeResult | None
    space: str        # where the partition (and the per-class indicators) live: input | features
    rows: int         # training observations looked at
    seconds: float

    def describe(self, names: list[str]) -> str:
        """One line: each class's gap / stability, the probe's Δ (points) with its standard error."""
        parts = ", ".join(f"{names[k]} gap {v.gap:.3f} stability {v.stability:.2f}" for k, v in self.per_class.items())
        probe = self.probe
        if probe is None:
            return f"{parts}; no probe (no phase-1 network)"
        reweight = "" if probe.reweight is None else f", reweight {signed(probe.reweight)} ± {probe.reweight_se:.2f}"
        return (f"{parts}; probe on the phase-1 features: subclass heads {signed(probe.delta)} ± {probe.delta_se:.2f} "
                f"points over class heads{reweight}")

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "rows": self.rows, "seconds": round(self.seconds, 3),
                "per_class": {str(k): v.to_json() for k, v in self.per_class.items()},
                "probe": None if self.probe is None else self.probe.to_json()}


def assess(job: Job, selection: Selection, partition: Partition, phase1: Phase1Result | None) -> dict | None:
    """results.json ``split_indicators`` (None with ``observe.split_indicators=false``), said in one line."""
    if not job.observe.split_indicators:
        return None
    indicators = job.shared_indicators or split_indicators(job, selection, partition, phase1)
    job.say(f"split indicators: {indicators.describe(job.data.names())}")
    return indicators.to_json()


def split_indicators(job: Job, selection: Selection, partition: Partition, phase1: Phase1Result | None) -> SplitIndicators:
    """The indicators of ``partition`` (the selected classes' subclasses) on at most ``MAX_ROWS`` training
    observations; the probe needs the phase-1 network (its penultimate features)."""
    start = time.perf_counter()
    data, per_class, partitioner = job.data, job.subclass.per_class, job.partitioner
    sample = data.indicator_sample(partition, MAX_ROWS)
    s2c = data.subclass_to_class(partition)
    pipeline = data.input_pipeline()
    backbone = job.model.trained_backbone(data.input_shape, phase1.state) if phase1 is not None else None
    features = None if backbone is None else torch.from_numpy(embed_chunks(embedder(pipeline, backbone), sample.x))
    # the partition's space: phase 1 always runs where it is the features (sdnn.pipeline.sdnn)
    space = features.numpy() if partitioner.space == "features" else embed_chunks(embedder(pipeline), sample.x)
    mean = space.mean(0)

    def resplit(vectors: np.ndarray, seed: int, centre: np.ndarray) -> np.ndarray:  # on other observations
        return partitioner.split(vectors, per_class, centre, job.seed + seed, np.random.default_rng(job.seed + seed))

    indicators = {}
    for cls in selection.classes:  # k classes, once per run
        members, numbers = subclass_numbers(sample.units, s2c, cls)
        indicators[cls] = class_indicators(space[members.numpy()], numbers.numpy(), resplit, seed=job.seed + cls,
                                           mean=mean)
    probe = None
    if features is not None:
        classes, units = probe_targets(sample.labels, sample.units, data.num_classes, len(s2c))
        probe = ridge_probe(features, classes, units, s2c, selection.classes, per_class, seed=job.seed,
                            reweight=len(selection.classes) <= MAX_REWEIGHTED)
    return SplitIndicators(indicators, probe, partitioner.space, len(sample.x), time.perf_counter() - start)
