"""A run's figures: of phase 1 (Fig. 1, Fig. 2, θ against the per-class error), the per-class test accuracy
after each epoch of every trained phase (every method), Class2Str's latent hierarchy; and the keys
results.json keeps of them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.cache import atomic_savez
from sdnn.class2str import LatentHierarchyClassifier, hierarchy_summary
from sdnn.job import Job
from sdnn.lit.progress import PHASE_TITLES
from sdnn.plots import plot_accuracy_per_epoch, plot_hierarchy_tree, plot_phase1
from sdnn.results import Phase1Result, Results, Selection, nan_to_none
from sdnn.stats import spearman


def phase1_figures(run_dir: Path, phase1: Phase1Result, selection: Selection, names: list[str],
                   fixed: bool = False) -> dict[str, Any]:
    """Fig. 1, Fig. 2 and θ against the phase-1 network's per-class test error (Spearman's ρ); ``fixed``: the
    classes came from ``subclass.classes``, not from θ (the figures say so)."""
    theta = np.array([math.nan if t is None else t for t in selection.theta], dtype=float)
    per_class = (phase1.test or {}).get("per_class_acc")  # multiclass only
    error = 1.0 - np.asarray(per_class, dtype=float) if per_class else None
    rho = spearman(theta, error) if error is not None else math.nan
    if phase1.norms is not None and len(phase1.norms["steps"]):
        atomic_savez(run_dir / "gradient_norms.npz", phase1.norms)
    drawn = plot_phase1(run_dir, phase1.history, phase1.epoch_test_acc, phase1.norms, theta, error, rho,
                        selection.classes, names, fixed=fixed)
    out: dict[str, Any] = {"figures": {k: v.name for k, v in drawn.items()}}
    if error is not None:
        out["neglect_vs_error"] = {"spearman": None if math.isnan(rho) else rho,
                                   "error_of": "phase-1 network, test split"}
    return out


def phase1_keys(job: Job, phase1: Phase1Result | None, selection: Selection) -> dict[str, Any]:
    """What results.json says of phase 1 and the selection (θ, its history, the figures)."""
    extra: dict[str, Any] = {"selected_classes": selection.classes}
    if phase1 is None:
        return {**extra, "phase1": {"cached": False, "seconds": 0.0, "origin": "skipped (fixed subclass.classes)"}}
    extra.update(theta=selection.theta, phase1=phase1.summary(selection.from_complete_window),
                 theta_history=[{**w, "theta": nan_to_none(w["theta"])} for w in phase1.history])
    if rank_zero_only.rank == 0 and job.observe.figures:
        extra.update(phase1_figures(job.run_dir, phase1, selection, job.data.names(),
                                    fixed=job.subclass.classes is not None))
    return extra


def hierarchy_keys(job: Job, head: LatentHierarchyClassifier) -> dict[str, Any]:
    """results.json's ``hierarchy`` (``sdnn.class2str.hierarchy_summary``) and, where a run draws figures,
    the tree of the codes, ``hierarchy_tree.png``, under ``figures``."""
    names = job.data.names()
    hierarchy = hierarchy_summary(head, names)
    if rank_zero_only.rank != 0 or not job.observe.figures:
        return {"hierarchy": hierarchy}
    tree = plot_hierarchy_tree(hierarchy["codes"], names, job.run_dir / "hierarchy_tree.png")
    return {"hierarchy": hierarchy, "figures": {"hierarchy": tree.name}}


def with_accuracy_figure(job: Job, results: Results) -> Results:
    """``test_accuracy_per_class.png``, the per-class test accuracy after each epoch of each phase the run
    trained or took from the cache (``results.epoch_test_acc``), added to ``results.figures``; any method,
    where the run draws figures and observed the accuracy (multiclass data, ``observe.per_class_test_acc``)."""
    phases = {phase: history for phase, history in results.epoch_test_acc.items() if history}
    if rank_zero_only.rank != 0 or not job.observe.figures or not phases:
        return results
    path = plot_accuracy_per_epoch(phases, job.data.names(), job.run_dir / "test_accuracy_per_class.png",
                                   selected=results.selected_classes, titles=PHASE_TITLES)
    results.figures = {**(results.figures or {}), "test_accuracy_per_class": path.name}
    return results
