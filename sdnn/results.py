"""What the stages hand each other, and ``results.json`` (SPEC §7): one schema, written by
``Results.to_json`` and read by ``Results.from_json`` (the summary, the W&B summary, ``sdnn.report``
and ``sdnn.study`` all read it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdnn.cache import atomic_write_json
from sdnn.stats import signed

REQUIRED_KEYS = ("method", "dataset", "model", "seed", "selected_classes", "theta", "subclass_to_class",
                 "test", "train_seconds", "config")


def nan_to_none(values):
    return None if values is None else [None if (v is None or math.isnan(v)) else float(v) for v in values]


@dataclass
class PhaseResult:
    """One trained phase: test metrics (``acc`` + ``per_class_acc``, or the four multilabel ones),
    the validation accuracy (None without a validation split), training seconds, per-class test
    accuracy after each epoch (if observed) and the trained LightningModule (not serialised)."""

    test: dict[str, Any]
    val: dict[str, Any] | None
    seconds: float
    epoch_test_acc: list[dict] = field(default_factory=list)
    module: Any = None


@dataclass
class Phase1Result:
    """Phase 1 (SPEC §5): θ per window, the network's weights (cached on disk), where it came from."""

    history: list[dict]
    state: dict[str, Any]
    cached: bool
    seconds: float
    test: dict[str, Any] | None
    epoch_test_acc: list[dict]
    norms: dict[str, Any] | None
    cache_dir: str
    origin: str

    def summary(self, selected_from_complete_window: bool | None = None) -> dict[str, Any]:
        """results.json's ``phase1`` (``selected_from_complete_window`` where θ selected classes)."""
        out = {"cached": self.cached, "seconds": self.seconds, "cache_dir": self.cache_dir, "origin": self.origin}
        if selected_from_complete_window is not None:
            out["selected_from_complete_window"] = selected_from_complete_window
        return out


@dataclass(frozen=True)
class Selection:
    """The classes to split (eq. 10, or a fixed list). ``priority``: most neglected first (fixed
    lists: ascending); ``theta``: the last window's θ (None without phase 1)."""

    classes: list[int]
    priority: list[int]
    theta: list[float] | None = None
    from_complete_window: bool = True


@dataclass
class Results:
    """``results.json``. Keys present only for some methods are None here and left out of the file.
    ``module``: the network trained last (an ``SDNNModule``), which ``sdnn.app`` keeps in ``model/``."""

    method: str
    dataset: str
    model: str
    seed: int
    subclass_to_class: list[int]
    test: dict[str, Any]
    val: dict[str, Any] | None
    train_seconds: float
    epoch_test_acc: dict[str, list]
    class_names: list[str]
    config: dict[str, Any]
    data_skipped: dict[str, Any]
    selected_classes: list[int] = field(default_factory=list)
    theta: list[float | None] | None = None
    theta_history: list[dict] | None = None
    phase1: dict[str, Any] | None = None
    subclass_sizes: dict[str, list[int]] | None = None
    partition_seconds: float | None = None
    augmenter: str | None = None
    figures: dict[str, str] | None = None
    neglect_vs_error: dict[str, Any] | None = None
    partition_quality: dict[str, Any] | None = None   # NMI / ARI against fine labels; None without them
    positive_weight: list[float] | None = None        # method=reweight: eq. 3's weight of each class's positive term
    hierarchy: dict[str, Any] | None = None           # method=class2str: the classes' codes, parameter counts
    split_indicators: dict[str, Any] | None = None    # sdnn/reweight: label-free indicators of the split (sdnn.assess)
    auto: dict[str, Any] | None = None                # method=auto: the candidates' validation records, the choice
    module: Any = field(default=None, repr=False, compare=False)  # the network trained last (not serialised)

    ORDER = ("method", "dataset", "model", "seed", "selected_classes", "theta", "theta_history", "phase1",
             "epoch_test_acc", "figures", "neglect_vs_error", "subclass_to_class", "test", "val", "train_seconds",
             "subclass_sizes", "partition_seconds", "partition_quality", "split_indicators", "augmenter",
             "positive_weight", "hierarchy", "auto", "class_names", "config", "data_skipped")
    ALWAYS = set(REQUIRED_KEYS) | {"val", "epoch_test_acc", "class_names", "data_skipped", "partition_quality"}

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.ORDER
                if key in self.ALWAYS or getattr(self, key) is not None}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Results:
        """A ``results.json`` read back (missing optional keys are None)."""
        missing = [k for k in ("method", "dataset", "model", "seed", "test") if k not in payload]
        if missing:
            raise KeyError(f"results lack {missing}")
        known = {k: payload.get(k) for k in cls.ORDER}
        known["selected_classes"] = known["selected_classes"] or []
        known["epoch_test_acc"] = known["epoch_test_acc"] or {}
        known["class_names"] = known["class_names"] or []
        known["config"] = known["config"] or {}
        known["data_skipped"] = known["data_skipped"] or {"count": 0, "items": []}
        known["subclass_to_class"] = known["subclass_to_class"] or []
        return cls(**known)

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / "results.json"
        atomic_write_json(path, self.to_json())
        return path

    def names(self) -> list[str]:
        c = len(self.theta or self.test.get("per_class_acc") or [])
        return self.class_names or [str(i) for i in range(c)]


# the network whose test accuracy a run reports, per method (the summary names it)
FINAL_PHASE = {"sdnn": "phase 2", "baseline": "baseline", "reweight": "reweight", "class2str": "class2str",
               "auto": "chosen"}


def format_summary(results: Results) -> str:
    """A table per class: θ after phase 1, selected, subclass sizes, the final network's test accuracy (each
    column where the method has it, its header naming the phase); then the totals."""
    class_names = results.names()
    theta = results.theta or [None] * len(class_names)
    selected = set(results.selected_classes)
    sizes = results.subclass_sizes or {}
    lines = [f"SDNN run: method={results.method} dataset={results.dataset} model={results.model} "
             f"seed={results.seed}"]
    if results.phase1 is not None:
        lines.append(f"phase 1: {results.phase1.get('origin', '')}")
    if "per_class_acc" not in results.test:
        return "\n".join(lines + _multilabel_summary(results, theta, class_names, sizes))
    final = FINAL_PHASE.get(results.method, results.method)
    per_class = results.test["per_class_acc"]
    codes = (results.hierarchy or {}).get("codes") or [""] * len(class_names)
    columns = [("class", 12, lambda i: class_names[i][:12])]
    if results.theta is not None:
        columns.append(("θ after phase 1", 15, lambda i: "-" if theta[i] is None else f"{theta[i]:.3f}"))
    if results.method in ("sdnn", "reweight", "auto"):
        columns.append(("selected", 8, lambda i: "yes" if i in selected else ""))
    if results.subclass_sizes is not None:
        columns.append(("subclass sizes", 14, lambda i: "/".join(str(s) for s in sizes.get(str(i), []))))
    # None: no test sample of the class
    columns.append((f"test acc ({final})", 9, lambda i: "-" if per_class[i] is None else f"{100 * per_class[i]:.2f}%"))
    if any(codes):
        columns.append(("code", max(map(len, codes)), lambda i: codes[i]))
    widths = [max(width, len(header)) for header, width, _ in columns]
    lines.append("  ".join(f"{header:>{w}}" for (header, _, _), w in zip(columns, widths)))
    for i in range(len(class_names)):
        lines.append("  ".join(f"{cell(i):>{w}}" for (_, _, cell), w in zip(columns, widths)))
    lines.append(f"test accuracy ({final}): {100 * results.test['acc']:.2f}%   output units S="
                 f"{len(results.subclass_to_class)}   train time ({final}) {results.train_seconds:.1f} s")
    ranked = sorted((t, i) for i, t in enumerate(theta) if t is not None)
    if ranked and results.phase1 is not None:
        lines.append("most neglected (highest θ after phase 1): "
                     + ", ".join(class_names[i] for _, i in reversed(ranked[-3:])))
    quality = results.partition_quality
    if quality:
        parts = ", ".join(f"{class_names[int(k)]} {v['nmi']:.2f}/{v['ari']:.2f}"
                          for k, v in quality["per_class"].items())
        lines.append(f"partition quality against the fine labels (NMI/ARI; 1 = the subclasses are the fine classes): "
                     f"{parts}; mean {quality['nmi']:.2f}/{quality['ari']:.2f}")
    if results.split_indicators:
        lines.append(_indicators_line(results.split_indicators, class_names))
    if results.auto:
        lines += _auto_lines(results.auto)
    if results.hierarchy:
        lines.append(_hierarchy_line(results.hierarchy))
    if results.positive_weight:
        lines.append("reweight: positive term of the selected classes weighted by "
                     f"{max(results.positive_weight):g} (eq. 3, no split)")
    if results.neglect_vs_error is not None:
        rho = results.neglect_vs_error.get("spearman")
        lines.append("Spearman rank correlation of θ after phase 1 with the phase-1 network's per-class test error: "
                     + ("n/a (undefined: the classes' errors or θ cannot be ranked, e.g. every error is 0)"
                        if rho is None else signed(rho)))
    if results.figures:
        lines.append("figures: " + ", ".join(results.figures.values()))
    return "\n".join(lines)


def _indicators_line(indicators: dict[str, Any], class_names: list[str]) -> str:
    """The split's label-free indicators (sdnn.assess): per class the gap and stability, the probe's Δ."""
    parts = ", ".join(f"{class_names[int(k)]} {v['gap']:.2f}/{v['stability']:.2f}"
                      for k, v in indicators["per_class"].items())
    line = f"split indicators (gap vs one mode / stability; about 0 = no modes): {parts}"
    probe = indicators.get("probe")
    if probe:
        line += (f"; probe on the phase-1 features: subclass heads {signed(probe['delta'])} ± {probe['delta_se']:.2f} "
                 "points over class heads")
    return line


def _auto_lines(auto: dict[str, Any]) -> list[str]:
    """method=auto: each candidate's validation accuracy and gain over the baseline, the smallest gain the comparison
    detects; the choice and why."""
    folds = auto.get("folds") or {"count": 1}
    where = ("the validation split" if folds["count"] == 1 else
             f"{folds['count']} validation folds, {folds['held_out']} held-out observations")
    lines = [f"method=auto, candidates on {where} (test: the chosen one only; gains in points; detects: the gain it "
             "finds 4 times in 5):",
             f"  {'candidate':>10}  {'val acc':>8}  {'val gain':>13}  {'expected':>8}  {'combined':>13}  "
             f"{'lower':>6}  {'detects':>7}"]
    for name, r in auto["candidates"].items():
        if "skipped" in r:
            lines.append(f"  {name:>10}  skipped: {r['skipped']}")
            continue
        mark = "  <- chosen" if name == auto["chosen"] else ""
        if "val_gain" not in r:
            lines.append(f"  {name:>10}  {100 * r['val_acc']:7.2f}%{mark}")
            continue
        expected = "" if r.get("expected") is None else signed(r["expected"][1])
        detects = "" if r.get("detectable") is None else f"{100 * r['detectable']:.2f}"
        lines.append(f"  {name:>10}  {100 * r['val_acc']:7.2f}%  {signed(100 * r['val_gain']):>6} ± "
                     f"{100 * r['val_gain_se']:4.2f}  {expected:>8}  {signed(100 * r['gain']):>6} ± "
                     f"{100 * r['gain_sd']:4.2f}  {signed(100 * r['lower']):>6}  {detects:>7}{mark}")
    lines.append(f"chosen: {auto['why']}")
    return lines


def _hierarchy_line(hierarchy: dict[str, Any]) -> str:
    """Class2Str: whether the codes are one-to-one, and the classifier's size beside the FC head's."""
    counts = hierarchy.get("classifier_parameters") or {}
    groups = hierarchy.get("collisions") or []
    distinct = ("all codes distinct" if hierarchy.get("distinct") else
                "CODES COLLIDE (these classes share a string and cannot be told apart): "
                + "; ".join(", ".join(group) for group in groups))
    return (f"latent hierarchy: {hierarchy.get('code_length')}-bit codes, {distinct}; classifier parameters "
            f"{counts.get('inference')} at inference ({counts.get('with_mappings')} with the mappings) vs "
            f"{hierarchy.get('fc_head_parameters')} for the FC head")


def _multilabel_summary(results: Results, theta, class_names: list[str], sizes) -> list[str]:
    """YouTube-8M: the four metrics and the most neglected classes (a table of 3,862 classes would
    bury them)."""
    test, final = results.test, FINAL_PHASE.get(results.method, results.method)
    lines = [f"validate ({final}): Hit@1 {100 * test['hit_at_1']:.2f}%   PERR {100 * test['perr']:.2f}%   "
             f"mAP {100 * test['map']:.2f}%   GAP@20 {100 * test['gap']:.2f}%",
             f"output units S={len(results.subclass_to_class)}   train time ({final}) {results.train_seconds:.1f} s"]
    ranked = sorted(((t, i) for i, t in enumerate(theta) if t is not None), reverse=True)
    if ranked and results.phase1 is not None:
        lines.append(f"selected {len(results.selected_classes)} classes; "
                     "the most neglected (highest θ after phase 1):")
        for t, i in ranked[:5]:
            size = "/".join(str(s) for s in sizes.get(str(i), [])) or "-"
            lines.append(f"  {class_names[i][:24]:>24}  θ {t:.3f}  subclass sizes {size}")
    return lines
