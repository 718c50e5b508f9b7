"""``method=auto`` (issue 26): from one phase 1 (cached), train the candidates (``auto.candidates``; by default
the baseline, reweight and SDNN splitting the k = 1, 2, 3 most neglected classes) on the training split, choose
on the validation split only, and test the chosen network once.

The guard: a candidate replaces the baseline only when its validation gain is larger than the noise. The gain
is paired (the same validation observations, candidate − baseline), and a bootstrap over the observations
(``auto.bootstrap`` resamples) must put it above 0 with ``auto.confidence`` (one-sided; default 95%). Among
the candidates that pass, the highest validation accuracy wins (a tie: the one listed first). With
``auto.skip_hopeless`` a candidate whose expected Δ from the label-free indicators (``sdnn.advise``'s verdict,
80% interval) lies wholly below 0 is not trained, and results.json says so.

Each candidate is an ordinary run in ``<run_dir>/auto/<candidate>/`` (its checkpoints, subclasses, partition),
sharing phase 1, so a killed auto run resumes candidate by candidate; ``model/`` and ``results.json`` are the
chosen network's, with ``auto`` added: every candidate's validation score, the choice and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sdnn.assess import split_indicators
from sdnn.config import Method
from sdnn.errors import ConfigError
from sdnn.figures import phase1_keys
from sdnn.job import Job
from sdnn.lit.loggers import LoggerFactory
from sdnn.lit.trainer import test_module
from sdnn.pipeline import baseline, partition_once, reweight, run_phase1, sdnn, select
from sdnn.results import Phase1Result, Results
from sdnn.stats import paired_bootstrap
from sdnn.verdict import judge, load_calibration

FOLDER = "auto"


@dataclass(frozen=True)
class Candidate:
    """``baseline``, ``reweight`` or ``sdnn-k<k>`` (SDNN splitting the k most neglected classes)."""

    name: str
    method: Method
    k: int | None = None

    @classmethod
    def parse(cls, name: str) -> Candidate:
        if name.startswith("sdnn-k"):
            return cls(name, Method.sdnn, int(name.removeprefix("sdnn-k")))
        return cls(name, Method(name))


RECIPE = {Method.baseline: baseline, Method.reweight: reweight, Method.sdnn: sdnn}


def candidates_of(job: Job) -> list[Candidate]:
    """The configured candidates that fit the data: ``sdnn-k<k>`` with k at least the number of classes is left
    out, and the run says so."""
    candidates = [Candidate.parse(name) for name in job.settings.auto.candidates]
    c = job.data.num_classes
    left_out = [cand.name for cand in candidates if cand.k is not None and cand.k >= c]
    if left_out:
        job.say(f"auto: leaving out {', '.join(left_out)} (dataset '{job.data.name}' has {c} classes; SDNN splits "
                f"1 to {c - 1} of them)")
    return [cand for cand in candidates if cand.name not in left_out]


def candidate_job(job: Job, candidate: Candidate, phase1: Phase1Result) -> Job:
    """The candidate as an ordinary run of its method in ``<run_dir>/auto/<name>/``: phase 1 shared, no look at
    the test split, no figures of its own."""
    folder = job.run_dir / FOLDER / candidate.name
    subclass = job.subclass if candidate.k is None else replace(job.subclass, num_classes_to_repartition=candidate.k)
    settings = replace(job.settings, method=candidate.method, subclass=subclass,
                       observe=replace(job.observe, figures=False))
    loggers = LoggerFactory(job.training.loggers.make_logger, folder, job.config)
    training = replace(job.training, run_dir=folder, test=False, loggers=loggers)
    return replace(job, settings=settings, run_dir=folder, training=training, shared_phase1=phase1)


def hopeless(job: Job, phase1: Phase1Result, candidates: list[Candidate]) -> dict[str, str]:
    """Candidates whose expected Δ (the advise verdict on their own split) lies wholly below 0, and why."""
    calibration, out = load_calibration(), {}
    for cand in candidates:
        if cand.method == Method.baseline:
            continue
        sub = candidate_job(job, cand, phase1)
        selection = select(sub, phase1)
        probe = split_indicators(sub, selection, partition_once(sub, selection, phase1)[0], phase1).probe
        verdict = judge(calibration, probe.delta, probe.delta_se, probe.reweight, probe.reweight_se)
        low, mid, high = verdict.expected[str(cand.method)]
        if high < 0:
            out[cand.name] = f"expected Δ {mid:+.2f} points, 80% interval [{low:+.2f}, {high:+.2f}] below 0"
    return out


def choose(scores: dict[str, np.ndarray], job: Job) -> tuple[str, dict[str, dict[str, Any]], str]:
    """The guard (module docstring): the choice, each candidate's validation record, and why, in words."""
    settings, base = job.settings.auto, scores["baseline"]
    records: dict[str, dict[str, Any]] = {}
    passing = []
    for name, hits in scores.items():
        record: dict[str, Any] = {"val_acc": float(hits.mean())}
        if name != "baseline":
            gain = paired_bootstrap(hits.astype(float) - base, settings.bootstrap, job.seed, settings.confidence)
            record.update(val_gain=gain["mean"], val_gain_se=gain["se"], val_gain_lower=gain["lower"],
                          z=gain["mean"] / gain["se"] if gain["se"] > 0 else 0.0)
            if gain["lower"] > 0:
                passing.append(name)
        records[name] = record
    level = f"{100 * settings.confidence:g}%"
    if not passing:
        rivals = [n for n in records if n != "baseline"]
        if not rivals:
            return "baseline", records, "baseline: no other candidate was trained"
        best = max(rivals, key=lambda n: records[n]["val_acc"])
        r = records[best]
        return "baseline", records, (f"baseline: no candidate's validation gain is clear of the noise (best: {best}, "
                                     f"{100 * r['val_gain']:+.2f} points = {r['z']:.1f} standard errors; the paired "
                                     f"bootstrap's {level} lower bound {100 * r['val_gain_lower']:+.2f})")
    chosen = max(passing, key=lambda n: records[n]["val_acc"])  # max keeps the first listed of equals
    r = records[chosen]
    return chosen, records, (f"{chosen}: validation accuracy {100 * r['val_acc']:.2f}% against the baseline's "
                             f"{100 * records['baseline']['val_acc']:.2f}%, a gain of {100 * r['val_gain']:+.2f} "
                             f"points = {r['z']:.1f} standard errors; the paired bootstrap's {level} lower bound "
                             f"{100 * r['val_gain_lower']:+.2f} is above 0")


def auto(job: Job) -> Results:
    """Phase 1 → each candidate (validation only) → the guard's choice → its test metrics."""
    if not job.data.has_validation:
        raise ConfigError(f"method=auto chooses on a validation split, and dataset '{job.data.name}' has none; add "
                          "dataset.val_fraction=0.2 (the test split is never used to choose)")
    start = time.perf_counter()
    candidates = candidates_of(job)
    phase1 = run_phase1(job)
    skipped = hopeless(job, phase1, candidates) if job.settings.auto.skip_hopeless else {}
    for name, why in skipped.items():
        job.say(f"auto: skipping {name} ({why})")
    trained: dict[str, Results] = {}
    for i, cand in enumerate([c for c in candidates if c.name not in skipped], 1):
        job.say(f"auto: candidate {i} of {len(candidates) - len(skipped)}, {cand.name} (in {FOLDER}/{cand.name}/)")
        trained[cand.name] = RECIPE[cand.method](candidate_job(job, cand, phase1))
    scores = {name: r.module.val_correct().numpy() for name, r in trained.items()}
    chosen, records, why = choose(scores, job)
    for name, why_skipped in skipped.items():
        records[name] = {"skipped": why_skipped}
    job.say(f"auto: chose {why}")
    results = trained[chosen]
    results.test = test_module(results.module, job.data, job.training)
    results.method = str(Method.auto)
    results.auto = {"candidates": {c.name: records[c.name] for c in candidates}, "chosen": chosen, "why": why,
                    "rule": f"paired bootstrap over the validation observations ({job.settings.auto.bootstrap} "
                            f"resamples), one-sided {job.settings.auto.confidence:g}: lower bound above 0",
                    "seconds": time.perf_counter() - start}
    if results.selected_classes:
        results.figures = phase1_keys(job, phase1, select(candidate_job(job, Candidate.parse(chosen), phase1),
                                                          phase1)).get("figures")
    return results
