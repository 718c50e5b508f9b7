"""``method=auto`` (issue 26): from one phase 1 (cached), train the candidates (``auto.candidates``; by default
the baseline, reweight and SDNN splitting the k = 1, 2, 3 most neglected classes) on the training split, choose
on held-out data only (the validation split; cross-validated when small, ``auto.folds``), and test the chosen
network once.

The guard: a candidate replaces the baseline only when its gain is larger than the noise. Its gain on the
held-out observations is paired (the same observations, candidate − baseline; mean and standard error), and, with
``auto.prior`` (the default), combined with what the label-free indicators of its split expect (``sdnn.advise``'s
verdict: the expected Δ and its 80% interval, from the probe on the training split), each weighted by its
precision — a validation split of a few hundred observations alone cannot tell a 2-point gain from noise. A
candidate passes when the one-sided ``auto.confidence`` (95%) lower bound of that gain is above 0; of those, the
one with the highest gain wins (a tie: the one listed first); none passing keeps the baseline. Each candidate's
``detectable`` gain says how fine the comparison is: the true gain the guard passes in 4 runs of 5 (the minimum
detectable effect; ``detectable_gain``); a smaller real gain is often missed. ``rechoose`` gives a finished run's
choice at another level from its records, without training. With ``auto.skip_hopeless`` a candidate whose
expected Δ lies wholly below 0 is not trained, and results.json says so. ``auto.calibration``: the indicators'
calibration (default ``conf/advise/calibration.yaml``).

``auto.folds``: a validation split of a few hundred observations cannot show a gain of a point (one observation
is worth 100/n points), so by default (``auto``) the comparison is cross-validated until about 1000 observations
were held out (at most 5 folds): fold 1 is the run's own split; fold j >= 2 holds out part j - 1 of the training
split (a seeded order, parts of the validation split's size) and trains phase 1 and every candidate again on the
rest of it and the validation split. The gains are paired within each fold and pooled over all of them; the
chosen network is still fold 1's, trained on the training split, and only it sees the test split.

Each candidate is an ordinary run in ``<run_dir>/auto/<candidate>/`` (its checkpoints, subclasses, partition),
sharing phase 1, and fold j's in ``<run_dir>/auto/fold-<j>/`` (its phase 1 cached under its own key), so a killed
auto run resumes candidate by candidate; ``model/`` and ``results.json`` are the chosen network's, with ``auto``
added: every candidate's validation score, the folds, the choice and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from sdnn.assess import SplitIndicators, split_indicators
from sdnn.cache import Phase1Cache
from sdnn.config import Method
from sdnn.errors import ConfigError
from sdnn.figures import phase1_keys
from sdnn.job import Job
from sdnn.lit.trainer import Training, test_module
from sdnn.pipeline import baseline, partition_once, reweight, run_phase1, sdnn, select
from sdnn.results import Phase1Result, Results
from sdnn.stats import signed, signed_interval
from sdnn.verdict import Z80, Calibration, judge, load_calibration

FOLDER = "auto"
MIN_HELD_OUT, MAX_FOLDS = 1000, 5   # auto.folds=auto: folds until this many held-out observations, at most this many
POWER = 0.8   # ``detectable``: the gain the guard passes this often
RULE = ("a candidate's gain over the baseline: paired on the held-out observations of the validation split (and of "
        "the further folds, auto.folds), combined ({prior} auto.prior) with "
        "the indicators' expectation by precision; chosen when its one-sided {confidence:g} lower bound is above 0, "
        "the highest gain of those")


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


def candidate_job(job: Job, candidate: Candidate, phase1: Phase1Result,
                  indicators: SplitIndicators | None = None, root: Path | None = None) -> Job:
    """The candidate as an ordinary run of its method in ``<root>/<name>/`` (default ``<run_dir>/auto/``): phase 1
    shared (and its split's indicators, where ``expectations`` computed them), no look at the test split, no
    figures of its own."""
    folder = (root or job.run_dir / FOLDER) / candidate.name
    subclass = job.subclass if candidate.k is None else replace(job.subclass, num_classes_to_repartition=candidate.k)
    settings = replace(job.settings, method=candidate.method, subclass=subclass,
                       observe=replace(job.observe, figures=False))
    return replace(job, settings=settings, run_dir=folder, training=_untested_in(job, folder), shared_phase1=phase1,
                   shared_indicators=indicators)


def _untested_in(job: Job, folder: Path) -> Training:
    """The job's training, run in ``folder`` (its checkpoints; its loggers in the run's W&B group) without a look at
    the test split."""
    return replace(job.training, run_dir=folder, test=False, loggers=job.training.loggers.child(folder))


def fold_count(job: Job) -> tuple[int, str]:
    """How many folds the candidates are compared on (``auto.folds``; the module docstring), and why, in words;
    a ``ConfigError`` for more than the training split holds."""
    wanted, n_val, most = job.settings.auto.folds, job.data.validation_size, job.data.max_folds()
    if wanted != "auto":
        if wanted > most:
            raise ConfigError(f"auto.folds={wanted}: the training split holds {most - 1} part(s) the size of the "
                              f"validation split ({n_val}), so at most {most} fold(s); lower auto.folds")
        return wanted, f"auto.folds={wanted}"
    folds = min(MAX_FOLDS, -(-MIN_HELD_OUT // max(n_val, 1)), most)
    if folds == 1:
        short = "" if n_val >= MIN_HELD_OUT else "; the training split holds no further part of its size"
        return 1, f"the validation split's {n_val} observations (auto.folds=auto{short})"
    return folds, (f"{folds} folds of {n_val}: the validation split alone ({n_val}) is fewer than {MIN_HELD_OUT} "
                   f"held-out observations (auto.folds=auto, at most {MAX_FOLDS}; auto.folds=1 turns it off)")


def fold_job(job: Job, fold: int) -> Job:
    """Fold ``fold`` (>= 2) as a run of its own in ``<run_dir>/auto/fold-<fold>/``: part ``fold - 1`` of the
    training split held out, phase 1 trained again on the rest (cached under its own key), no look at the test
    split, no figures, no indicators."""
    folder = job.run_dir / FOLDER / f"fold-{fold}"
    cache = Phase1Cache(job.cache.dir.parent, {**job.cache.key_payload, "auto_fold": fold}, job.cache.say)
    observe = replace(job.observe, figures=False, split_indicators=False, norms_every=0)
    return replace(job, settings=replace(job.settings, observe=observe), run_dir=folder,
                   training=_untested_in(job, folder), data=job.data.fold(fold, job.seed), cache=cache,
                   shared_phase1=None, shared_indicators=None)


def fold_scores(job: Job, fold: int, folds: int, candidates: list[Candidate]) -> dict[str, np.ndarray]:
    """Each candidate's hits on fold ``fold``'s held-out part, trained the way fold 1's were."""
    sub = fold_job(job, fold)
    job.say(f"auto: fold {fold} of {folds}, part {fold - 1} of the training split held out "
            f"({sub.data.validation_size} observations; in {FOLDER}/fold-{fold}/)")
    phase1 = run_phase1(sub)
    return {cand.name: RECIPE[cand.method](candidate_job(sub, cand, phase1, root=sub.run_dir)).module.val_correct()
            .numpy() for cand in candidates}


def expectations(job: Job, phase1: Phase1Result, candidates: list[Candidate], calibration: Calibration
                 ) -> tuple[dict[str, tuple[float, float, float]], dict[str, SplitIndicators]]:
    """Each candidate's expected Δ test accuracy (points; the 80% interval and its middle), from the label-free
    indicators of its own split (``sdnn.advise``'s verdict): SDNN's for ``sdnn-k<k>``, reweight's for reweight;
    and those indicators, which the candidate's run then reports instead of computing them again."""
    expected, indicators = {}, {}
    for cand in candidates:
        if cand.method == Method.baseline:
            continue
        sub = candidate_job(job, cand, phase1)
        selection = select(sub, phase1)
        indicators[cand.name] = split_indicators(sub, selection, partition_once(sub, selection, phase1)[0], phase1)
        probe = indicators[cand.name].probe
        verdict = judge(calibration, probe.delta, probe.delta_se, probe.reweight, probe.reweight_se)
        expected[cand.name] = verdict.expected[str(cand.method)]
    return expected, indicators


def combined(hits: np.ndarray, base: np.ndarray, expected: tuple[float, float, float] | None) -> dict[str, float]:
    """The candidate's gain over the baseline (fractions): on validation (paired mean and standard error, at least
    one observation's worth), and combined with the indicators' expectation (``combined_gain``)."""
    diff = hits.astype(float) - base.astype(float)
    n = len(diff)
    gain, se = float(diff.mean()), max(float(diff.std(ddof=1)) / np.sqrt(n) if n > 1 else 0.0, 1.0 / n)
    mean, sd = (gain, se) if expected is None else combined_gain(gain, se, expected)
    return {"val_gain": gain, "val_gain_se": se, "mean": mean, "sd": sd}


def combined_gain(gain: float, se: float, expected: tuple[float, float, float]) -> tuple[float, float]:
    """(mean, sd) of a validation gain ± se (fractions) and the indicators' expectation (80% interval in points),
    each weighted by its precision."""
    low, mid, high = (v / 100 for v in expected)
    prior_sd = max((high - low) / (2 * Z80), 1e-6)
    weight, prior_weight = 1 / se ** 2, 1 / prior_sd ** 2
    return (gain * weight + mid * prior_weight) / (weight + prior_weight), float(np.sqrt(1 / (weight + prior_weight)))


def choose(scores: dict[str, np.ndarray], job: Job,
           expected: dict[str, tuple[float, float, float]]) -> tuple[str, dict[str, dict[str, Any]], str]:
    """The guard (module docstring): the choice, each candidate's record, and why, in words."""
    settings, base = job.settings.auto, scores["baseline"]
    records: dict[str, dict[str, Any]] = {}
    for name, hits in scores.items():
        record: dict[str, Any] = {"val_acc": float(hits.mean())}
        if name != "baseline":
            prior = expected.get(name) if settings.prior else None
            gain = combined(hits, base, prior)
            record = bounded({**record, "val_gain": gain["val_gain"], "val_gain_se": gain["val_gain_se"],
                              "gain": gain["mean"], "gain_sd": gain["sd"],
                              "expected": None if prior is None else [round(v, 4) for v in prior]},
                             settings.confidence)
        records[name] = record
    chosen, why = decide(records, settings.confidence)
    return chosen, records, why


def bounded(record: dict[str, Any], confidence: float) -> dict[str, Any]:
    """A candidate's record with its one-sided ``confidence`` ``lower`` bound and its ``detectable`` gain, from its
    ``gain`` ± ``gain_sd``, ``val_gain_se`` and ``expected``."""
    expected = record.get("expected")
    return {**record, "lower": record["gain"] - NormalDist().inv_cdf(confidence) * record["gain_sd"],
            "detectable": detectable_gain(record["val_gain_se"], record["gain_sd"],
                                          None if expected is None else expected[1] / 100, confidence)}


def rechoose(records: dict[str, dict[str, Any]], confidence: float) -> tuple[str, str]:
    """The guard's choice (and why) at another ``auto.confidence``, from an auto run's recorded candidates
    (results.json ``auto.candidates``): each bound is computed again from the recorded gain; nothing is retrained.
    Candidates that were not trained (``auto.skip_hopeless``) stay out."""
    again = {name: record if name == "baseline" else bounded(record, confidence)
             for name, record in records.items() if name == "baseline" or "gain" in record}
    return decide(again, confidence)


def detectable_gain(se: float, sd: float, expected_mid: float | None, confidence: float) -> float:
    """The true gain (fractions) the guard passes with probability ``POWER``. The held-out gain ĝ ~ N(gain, se²)
    enters the combined gain with the weight w = sd² / se² beside the expectation's middle m (``combined_gain``), so
    the bound clears 0 when ĝ > (z·sd − (1 − w)·m) / w; that threshold plus z_POWER·se. Without an expectation
    (w = 1) it is (z + z_POWER)·se. 0 where the expectation alone would carry the candidate."""
    z, z_power = NormalDist().inv_cdf(confidence), NormalDist().inv_cdf(POWER)
    weight = sd ** 2 / se ** 2
    threshold = (z * sd - (1 - weight) * (expected_mid or 0.0)) / weight
    return max(threshold + z_power * se, 0.0)


def decide(records: dict[str, dict[str, Any]], confidence: float) -> tuple[str, str]:
    """The choice among candidates' records (``bounded``: ``gain``, its one-sided ``lower`` bound, ``detectable``)
    and why, in words: the largest gain whose bound is above 0, else the baseline (and the smallest gain the
    comparison detects)."""
    level = f"{100 * confidence:g}%"
    rivals = [n for n in records if n != "baseline"]
    passing = [n for n in rivals if records[n]["lower"] > 0]
    if not passing:
        if not rivals:
            return "baseline", "baseline: no other candidate was trained"
        best = max(rivals, key=lambda n: records[n]["gain"])
        why = f"baseline: no candidate's gain is clear of the noise (best: {_said(best, records[best], level)})"
        finest = min(records[n]["detectable"] for n in rivals)
        return "baseline", (f"{why}; this comparison detects a gain of {100 * finest:.2f} points or more "
                            f"{100 * POWER:g}% of the time, so a smaller one may be missed (more held-out data, "
                            "dataset.val_fraction or auto.folds, detects smaller ones)")
    chosen = max(passing, key=lambda n: records[n]["gain"])  # max keeps the first listed of equals
    return chosen, _said(chosen, records[chosen], level) + " is above 0"


def _said(name: str, r: dict[str, Any], level: str) -> str:
    """A candidate's evidence in words: the validation gain, the expectation, their combination and its bound."""
    text = f"{name}: validation gain {signed(100 * r['val_gain'])} ± {100 * r['val_gain_se']:.2f} points"
    if r.get("expected") is not None:
        text += (f", expected {signed_interval(r['expected'])} from the indicators; combined "
                 f"{signed(100 * r['gain'])} ± {100 * r['gain_sd']:.2f}")
    return text + f"; one-sided {level} lower bound {signed(100 * r['lower'])}"


def auto(job: Job) -> Results:
    """Phase 1 → each candidate (validation only) → the guard's choice → its test metrics."""
    if not job.data.has_validation:
        raise ConfigError(f"method=auto chooses on a validation split, and dataset '{job.data.name}' has none; add "
                          "dataset.val_fraction=0.2 (the test split is never used to choose)")
    start = time.perf_counter()
    candidates = candidates_of(job)
    folds, folds_why = fold_count(job)
    phase1 = run_phase1(job)
    settings = job.settings.auto
    needed = settings.prior or settings.skip_hopeless
    expected, indicators = expectations(job, phase1, candidates,
                                        load_calibration(*filter(None, [settings.calibration]))) if needed else ({}, {})
    skipped = {name: f"expected Δ {signed(mid)} points, 80% interval [{signed(low)}, {signed(high)}] below 0"
               for name, (low, mid, high) in expected.items() if settings.skip_hopeless and high < 0}
    for name, why in skipped.items():
        job.say(f"auto: skipping {name} ({why})")
    kept = [c for c in candidates if c.name not in skipped]
    trained: dict[str, Results] = {}
    for i, cand in enumerate(kept, 1):
        job.say(f"auto: candidate {i} of {len(kept)}, {cand.name} (in {FOLDER}/{cand.name}/)")
        trained[cand.name] = RECIPE[cand.method](candidate_job(job, cand, phase1, indicators.get(cand.name)))
    by_fold = [{name: r.module.val_correct().numpy() for name, r in trained.items()}]
    by_fold += [fold_scores(job, fold, folds, kept) for fold in range(2, folds + 1)]
    scores = {name: np.concatenate([hits[name] for hits in by_fold]) for name in trained}  # paired within each fold
    chosen, records, why = choose(scores, job, expected)
    if folds > 1:
        for name in trained:
            if name != "baseline":
                records[name]["fold_gains"] = [float(hits[name].mean() - hits["baseline"].mean()) for hits in by_fold]
    for name, why_skipped in skipped.items():
        records[name] = {"skipped": why_skipped}
    job.say(f"auto: chose {why}")
    results = trained[chosen]
    results.test = test_module(results.module, job.data, job.training)
    results.method = str(Method.auto)
    results.auto = {"candidates": {c.name: records[c.name] for c in candidates}, "chosen": chosen, "why": why,
                    "folds": {"count": folds, "held_out": len(scores["baseline"]), "why": folds_why},
                    "rule": RULE.format(confidence=settings.confidence, prior="with" if settings.prior else "without"),
                    "calibration": settings.calibration or "conf/advise/calibration.yaml",
                    "seconds": time.perf_counter() - start}
    # phase 1 as every run with one reports it (θ, its windows, the figures), marking the chosen split's classes
    keys = phase1_keys(job, phase1, select(candidate_job(job, Candidate.parse(chosen), phase1), phase1))
    results.theta, results.theta_history, results.phase1 = keys["theta"], keys["theta_history"], keys["phase1"]
    results.figures = keys.get("figures")
    return results
