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
    lines = [f"SDNN run: method={results['method']} dataset={results['dataset']} model={results['model']} "
             f"seed={results['seed']}"]
    if results["method"] == "sdnn":
        origin = results.get("phase1", {}).get("origin", "")
        lines.append(f"phase 1: {origin}")
    if "per_class_acc" not in results["test"]:
        return "\n".join(lines + _multilabel_summary(results, theta, class_names, sizes))
    per_class = results["test"]["per_class_acc"]
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


def _multilabel_summary(results: dict[str, Any], theta, class_names: list[str], sizes) -> list[str]:
    """YouTube-8M: the four metrics and the most neglected classes (a table of 3,862 classes would
    bury them)."""
    test = results["test"]
    lines = [f"validate: Hit@1 {100 * test['hit_at_1']:.2f}%   PERR {100 * test['perr']:.2f}%   "
             f"mAP {100 * test['map']:.2f}%   GAP@20 {100 * test['gap']:.2f}%",
             f"output units S={len(results['subclass_to_class'])}   train time {results['train_seconds']:.1f} s"]
    ranked = sorted(((t, i) for i, t in enumerate(theta) if t is not None), reverse=True)
    if ranked and results["method"] == "sdnn":
        lines.append(f"selected {len(results['selected_classes'])} classes; the most neglected (highest theta):")
        for t, i in ranked[:5]:
            size = "/".join(str(s) for s in sizes.get(str(i), [])) or "-"
            lines.append(f"  {class_names[i][:24]:>24}  theta {t:.3f}  subclass sizes {size}")
    return lines
