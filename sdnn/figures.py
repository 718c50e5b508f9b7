"""A run's figures of phase 1 (Fig. 1, Fig. 2, θ against the per-class error) and the keys results.json
keeps of them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sdnn.cache import atomic_savez
from sdnn.plots import plot_phase1
from sdnn.results import Phase1Result, Selection
from sdnn.stats import spearman


def phase1_figures(run_dir: Path, phase1: Phase1Result, selection: Selection, names: list[str]) -> dict[str, Any]:
    """Fig. 1, Fig. 2 and θ against the phase-1 network's per-class test error (Spearman's ρ)."""
    theta = np.array([math.nan if t is None else t for t in selection.theta], dtype=float)
    per_class = (phase1.test or {}).get("per_class_acc")  # multiclass only
    error = 1.0 - np.asarray(per_class, dtype=float) if per_class else None
    rho = spearman(theta, error) if error is not None else math.nan
    if phase1.norms is not None and len(phase1.norms["steps"]):
        atomic_savez(run_dir / "gradient_norms.npz", phase1.norms)
    drawn = plot_phase1(run_dir, phase1.history, phase1.epoch_test_acc, phase1.norms, theta, error, rho,
                        selection.classes, names)
    out: dict[str, Any] = {"figures": {k: v.name for k, v in drawn.items()}}
    if error is not None:
        out["neglect_vs_error"] = {"spearman": None if math.isnan(rho) else rho,
                                   "error_of": "phase-1 network, test split"}
    return out
