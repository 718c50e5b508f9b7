"""``python -m sdnn.advise <the overrides of run.py>``: will SDNN pay off on this data? A verdict from phase 1
alone, before the full runs (issue 25).

Trains phase 1 (or takes it from the phase-1 cache, which the later runs then reuse), selects the classes SDNN
would split and splits them as it would (the partition is cached too), computes the label-free indicators of
the split (``sdnn.assess``: no fine labels) and turns them into the expected Δ test accuracy of SDNN and of the
reweight control against the baseline, with 80% intervals, and a recommendation (``sdnn.verdict``, calibrated
on the regime map: docs/reproduction.md, "Predicting the payoff"). Prints a few lines and writes
``advice.json`` into its run folder (``hydra.run.dir``, as run.py).

    python -m sdnn.advise model=lr dataset.merge=[0,0,1,1,2,2,3,3,4,4]
    python -m sdnn.advise dataset=npz dataset.path=features.npz model=lr dataset.val_fraction=0.1
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sdnn.assess import SplitIndicators, split_indicators
from sdnn.cli import hydra_cli, save_hydra_files, stop
from sdnn.config import Method, register
from sdnn.errors import ConfigError, user_message
from sdnn.job import Job
from sdnn.pipeline import partition_once, run_phase1, select
from sdnn.results import Phase1Result, Selection
from sdnn.runlog import quiet
from sdnn.stats import signed
from sdnn.verdict import Calibration, Verdict, judge, load_calibration

register()  # the schema conf/config.yaml starts from
JUDGED = (Method.sdnn, Method.reweight)


@dataclass
class Advice:
    """What ``advice.json`` holds: the verdict, the selection and the indicators behind it, and the cost."""

    verdict: Verdict
    selection: Selection
    indicators: SplitIndicators
    phase1: Phase1Result
    seconds: float           # advise's own work after phase 1 (selection, partition, indicators, verdict)
    runs_estimate: float     # the baseline + SDNN runs it predicts, from phase 1's pace
    calibration: Calibration

    @property
    def total_seconds(self) -> float:
        """What this call cost: its own work, and phase 1 when it was trained now (not taken from the cache)."""
        return self.seconds + (0.0 if self.phase1.cached else self.phase1.seconds)

    def to_json(self, names: list[str]) -> dict[str, Any]:
        probe = self.indicators.probe
        return {**self.verdict.to_json(), "selected_classes": self.selection.classes,
                "per_class": {str(k): {"name": names[k], **v.to_json()} for k, v in self.indicators.per_class.items()},
                "probe": None if probe is None else probe.to_json(), "space": self.indicators.space,
                "seconds": round(self.total_seconds, 3), "seconds_after_phase1": round(self.seconds, 3),
                "phase1": {"cached": self.phase1.cached, "seconds": round(self.phase1.seconds, 3)},
                "runs_estimate_seconds": round(self.runs_estimate, 3),
                "cost_share": round(self.total_seconds / self.runs_estimate, 4) if self.runs_estimate else None,
                "calibration": {"source": self.calibration.source, "cells": list(self.calibration.cells)}}

    def describe(self, names: list[str]) -> str:
        verdict, probe = self.verdict, self.indicators.probe
        lines = [f"advice: {verdict.recommendation} — {verdict.why}"]
        for method in ("sdnn", "reweight"):
            low, mid, high = verdict.expected[method]
            lines.append(f"  expected Δ test accuracy, {method:8s} vs baseline: {signed(mid)} points "
                         f"(80% interval {signed(low)} to {signed(high)})")
        if probe is not None:
            reweight = ("" if probe.reweight is None
                        else f"; reweight {signed(probe.reweight)} ± {probe.reweight_se:.2f}")
            lines.append(f"  probe (ridge heads on {probe.seen()}, {probe.folds}-fold on {probe.n} training "
                         f"observations): subclass heads {signed(probe.delta)} ± {probe.delta_se:.2f} "
                         f"points{reweight}")
        lines.append("  per selected class (gap against one mode: about 0 = no modes to split; stability: ARI of "
                     "the split under resampling):")
        for k, v in self.indicators.per_class.items():
            lines.append(f"    {names[k][:16]:>16}  gap {signed(v.gap, 3)} (z {signed(v.gap_z, 1)})  "
                         f"stability {v.stability:.2f}")
        lines += [f"  note: {note}" for note in verdict.notes]
        share = self.total_seconds / self.runs_estimate if self.runs_estimate else float("nan")
        lines.append(f"  cost: {self.total_seconds:.1f} s ({'phase 1 from the cache' if self.phase1.cached else 'phase 1 included'})"
                     f" = {100 * share:.1f}% of the baseline + SDNN runs it predicts (about {self.runs_estimate:.0f} s "
                     "at phase 1's pace)")
        return "\n".join(lines)


def check_judged(method: Method) -> None:
    """advise judges a split: a method without one is a one-line error (before any data is read)."""
    if method not in JUDGED:
        raise ConfigError(f"method={method}: sdnn.advise judges SDNN's split of the neglected classes (and the "
                          "reweight control); leave method out (or method=sdnn) and keep the other overrides")


def advise(job: Job, calibration: Calibration | None = None) -> Advice:
    """Phase 1 → selection → partition → indicators → verdict, for the run ``job`` describes."""
    check_judged(job.method)
    calibration = calibration or load_calibration()
    phase1 = run_phase1(job)
    start = time.perf_counter()
    selection = select(job, phase1)
    job.data.check_split(selection.classes, job.subclass.per_class)
    partition, _ = partition_once(job, selection, phase1)
    indicators = split_indicators(job, selection, partition, phase1)
    probe = indicators.probe
    verdict = judge(calibration, probe.delta, probe.delta_se, probe.reweight, probe.reweight_se)
    per_epoch = phase1.seconds / max(job.phase1.epochs, 1e-9)
    estimate = per_epoch * (2 * job.training.max_epochs) + phase1.seconds
    return Advice(verdict, selection, indicators, phase1, time.perf_counter() - start, estimate, calibration)


def write_advice(advice: Advice, run_dir: Path, names: list[str]) -> Path:
    from sdnn.cache import atomic_write_json

    path = Path(run_dir) / "advice.json"
    atomic_write_json(path, advice.to_json(names))
    return path


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """The Hydra task: build the run as run.py would, advise, print, write advice.json."""
    from sdnn.build import build_job, config_snapshot
    from sdnn.config import validate_config
    from sdnn.runfolder import claimed

    quiet()
    try:
        settings = validate_config(cfg)
        check_judged(settings.method)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        with claimed(run_dir, config_snapshot(cfg), settings.checkpoint.resume, settings.overwrite):  # one per folder
            save_hydra_files(cfg)
            job = build_job(cfg, run_dir, settings)
            advice = advise(job)
            names = job.data.names()
            path = write_advice(advice, run_dir, names)
            job.say(advice.describe(names))
            job.say(f"advice: {path}")
    except KeyboardInterrupt:
        stop("interrupted (Ctrl-C); phase 1 and the partition are kept in the phase-1 cache where they finished, so "
             "the same command goes on from there", 130, every_rank=False)
    except Exception as exc:  # noqa: BLE001 — ours are one line; anything else is a bug with its traceback
        message = user_message(exc)
        if message is None:
            raise
        stop(f"error: {message}", 2)


if __name__ == "__main__":
    hydra_cli(main)
