"""``results.json`` (SPEC §7) and the readable summary printed at the end of a run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sdnn.cache import atomic_write_json

REQUIRED_KEYS = ("method", "dataset", "model", "seed", "selected_classes", "theta", "subclass_to_class",
                 "test", "train_seconds", "config")


def nan_to_none(values):
    return None if values is None else [None if (v is None or math.isnan(v)) else float(v) for v in values]


def write_results(run_dir: str | Path, results: dict[str, Any]) -> Path:
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing:
        raise KeyError(f"results lack {missing}")
    path = Path(run_dir) / "results.json"
    atomic_write_json(path, results)
    return path


def format_summary(results: dict[str, Any], class_names: list[str]) -> str:
    """A table per class: θ, selected, subclass sizes, test accuracy; then the totals."""
    theta = results.get("theta") or [None] * len(class_names)
    selected = set(results.get("selected_classes") or [])
    sizes = results.get("subclass_sizes") or {}
    per_class = results["test"]["per_class_acc"]
    lines = [f"SDNN run: method={results['method']} dataset={results['dataset']} model={results['model']} "
             f"seed={results['seed']}"]
    if results["method"] == "sdnn":
        origin = results.get("phase1", {}).get("origin", "")
        lines.append(f"phase 1: {origin}")
    lines.append(f"{'class':>12} {'theta':>7} {'selected':>8} {'subclass sizes':>16} {'test acc':>9}")
    ranked = sorted((t, i) for i, t in enumerate(theta) if t is not None)
    for i, name in enumerate(class_names):
        t = "-" if theta[i] is None else f"{theta[i]:.3f}"
        mark = "yes" if i in selected else ""
        size = "/".join(str(s) for s in sizes.get(str(i), sizes.get(i, []))) or ""
        lines.append(f"{name[:12]:>12} {t:>7} {mark:>8} {size:>16} {100 * per_class[i]:8.2f}%")
    lines.append(f"test accuracy: {100 * results['test']['acc']:.2f}%   output units S={len(results['subclass_to_class'])}"
                 f"   train time {results['train_seconds']:.1f} s")
    if ranked and results["method"] == "sdnn":
        lines.append("most neglected (highest theta): " + ", ".join(class_names[i] for _, i in reversed(ranked[-3:])))
    rho = (results.get("neglect_vs_error") or {}).get("spearman")
    if rho is not None:
        lines.append(f"Spearman rank correlation of theta with the phase-1 network's per-class test error: {rho:+.2f}")
    if results.get("figures"):
        lines.append("figures: " + ", ".join(f"{name}" for name in results["figures"].values()))
    return "\n".join(lines)
