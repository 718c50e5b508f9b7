"""A study's comparison and what it writes: ``compare`` (pure statistics over the runs' results.json), ``study.md``,
``study.json`` and ``study.png`` (``write_report``), and the regime map over several finished studies
(``write_map``). ``sdnn.study`` runs the studies."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from sdnn.stats import mean_std, signed, spearman

# ----------------------------------------------------------------------------- the comparison (pure)

def _nanmean(values: np.ndarray) -> float:
    """The mean of the values that are not NaN (NaN if none is)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


MULTILABEL_METRIC = "hit_at_1"  # a multilabel study's accuracy (what the indicators' probe scores): Hit@1


def compare(baselines: dict[int, dict], sdnn: dict[int, dict]) -> dict[str, Any]:
    """Baseline vs a variant (SDNN, a control, another method) over the seeds both have: accuracies,
    paired differences, per-class changes of the selected classes against the others, θ against the
    baseline's error, and the subclasses' NMI against the fine labels where they are known."""
    seeds = sorted(set(baselines) & set(sdnn))
    multilabel = any("per_class_acc" not in (baselines[s].get("test") or {}) for s in seeds)
    metric = MULTILABEL_METRIC if multilabel else "acc"
    out: dict[str, Any] = {"seeds": seeds, "metric": metric}
    for split in ("test", "val"):
        base = [(baselines[s].get(split) or {}).get(metric) for s in seeds]
        ours = [(sdnn[s].get(split) or {}).get(metric) for s in seeds]
        if any(v is None for v in base + ours):
            continue
        diffs = [o - b for o, b in zip(ours, base)]
        out[split] = {"baseline": mean_std(base), "variant": mean_std(ours), "diff": mean_std(diffs),
                      "diff_per_seed": diffs, "wins": sum(d > 0 for d in diffs)}
    if multilabel:  # YouTube-8M: the GAP beside hit@1; per-class accuracies are a multiclass notion
        gaps = [sdnn[s]["test"]["gap"] - baselines[s]["test"]["gap"] for s in seeds]
        out["gap"] = {"diff": mean_std(gaps), "diff_per_seed": gaps}
    selected_change, other_change, rhos, per_class = [], [], [], []
    for s in seeds if not multilabel else []:
        base_acc = np.asarray(baselines[s]["test"]["per_class_acc"], dtype=float)
        ours_acc = np.asarray(sdnn[s]["test"]["per_class_acc"], dtype=float)
        change = ours_acc - base_acc
        chosen = np.zeros(len(change), dtype=bool)
        chosen[list(sdnn[s].get("selected_classes") or [])] = True
        # a class without test samples has accuracy None (NaN here) and is left out of the means
        selected_change.append(_nanmean(change[chosen]))
        other_change.append(_nanmean(change[~chosen]))
        per_class.append(change)
        theta = [math.nan if t is None else t for t in (sdnn[s].get("theta") or [])]
        if theta:
            rhos.append(spearman(theta, 1.0 - base_acc))
    if seeds and not multilabel:
        out["per_class_change"] = [_nanmean(column) for column in np.asarray(per_class).T]
        out["selected_change"] = mean_std(selected_change)
        out["other_change"] = mean_std(other_change)
        out["spearman_theta_vs_baseline_error"] = {"per_seed": rhos, "mean": mean_std(rhos)}
    if seeds:
        out["selected"] = {str(s): sdnn[s].get("selected_classes") for s in seeds}
        nmi = [(sdnn[s].get("partition_quality") or {}).get("nmi") for s in seeds]
        if all(v is not None for v in nmi):
            out["nmi"] = {"per_seed": nmi, "mean": mean_std(nmi)}
        if all(sdnn[s].get("hierarchy") for s in seeds):  # method=class2str: one-to-one codes in how many seeds
            out["codes_distinct"] = sum(bool(sdnn[s]["hierarchy"]["distinct"]) for s in seeds)
        if all(sdnn[s].get("auto") for s in seeds):  # method=auto: what it chose, and what it cost
            out["auto"] = {str(s): {"chosen": sdnn[s]["auto"]["chosen"], "seconds": sdnn[s]["auto"]["seconds"]}
                           for s in seeds}
        out["seconds"] = {"baseline": [baselines[s].get("train_seconds") for s in seeds],
                          "variant": [sdnn[s].get("train_seconds") for s in seeds]}
    return out


# ----------------------------------------------------------------------------- the report

@dataclass(frozen=True)
class WhatRan:
    """study.md's header: the settings of one seed's baseline as composed and built (the data as loaded); a
    variant differs from it by its own overrides only."""

    seed: int
    dataset: str
    num_classes: int
    class_names: list[str]
    merged: bool
    train_samples: int
    train_per_class: int | None
    val_fraction: float
    batch_size: int
    model: str
    loss: str
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    scheduler: str | None
    milestones: list[int] | None
    gamma: float | None
    phase1_epochs: float
    epochs: int
    partitioner: str
    partition_space: str | None
    augmenter: str
    num_classes_to_repartition: int
    fixed_classes: list[int] | None
    per_class: int
    sibling_weight: float

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> WhatRan:
        """study.json's ``settings`` read back (keys of another version are left out or None)."""
        return cls(**{f.name: payload.get(f.name) for f in fields(cls)})

    def lines(self, seeds: Sequence[int]) -> list[str]:
        """The header's bullet points."""
        data = f"`{self.dataset}`, {self.num_classes} classes"
        if self.class_names and len(self.class_names) <= 20:
            data += f" ({', '.join(self.class_names)}{'; merged' if self.merged else ''})"
        data += f", {self.train_samples:,} training samples"
        if self.train_per_class:
            data += f" ({self.train_per_class:,} per original class)"
        if self.val_fraction:
            data += f", {100 * self.val_fraction:g}% of the training set held out for validation"
        terms = [f"{label} {value:g}" for label, value in (("momentum", self.momentum),
                                                             ("weight decay", self.weight_decay)) if value]
        optimizer = f"{self.optimizer} lr {self.lr:g}" + (f" ({', '.join(terms)})" if terms else "")
        if self.scheduler:
            steps = f" at epochs {self.milestones}" if self.milestones is not None else ""
            factor = f" ×{self.gamma:g}" if self.gamma is not None else ""
            optimizer += f", {self.scheduler}{steps}{factor}"
        selected = (f"the fixed classes {self.fixed_classes}" if self.fixed_classes is not None else
                    f"k = {self.num_classes_to_repartition} classes selected by θ")
        space = f" ({self.partition_space} space)" if self.partition_space else ""
        return [f"- data: {data}; batch {self.batch_size}",
                f"- model: `{self.model}`, loss `{self.loss}`",
                f"- training: phase 1 for {_epochs(self.phase1_epochs)}, the baseline and phase 2 for "
                f"{_epochs(self.epochs)}; {optimizer}",
                f"- SDNN: {selected}, H = {self.per_class} subclasses each, partitioner `{self.partitioner}`{space}, "
                f"augmenter `{self.augmenter}`, sibling weight {self.sibling_weight:g}",
                f"- seeds: {', '.join(str(s) for s in seeds)}"]


def _epochs(count: float) -> str:
    return f"{count:g} epoch" + ("" if count == 1 else "s")


def _pct(pair_or_value, with_sign: bool = False) -> str:
    if isinstance(pair_or_value, (tuple, list)):
        mean, std = pair_or_value
        if mean is None or not math.isfinite(mean):
            return "–"
        return f"{signed(100 * mean)} ± {100 * std:.2f}" if with_sign else f"{100 * mean:.2f} ± {100 * std:.2f}"
    return "–" if pair_or_value is None or not math.isfinite(pair_or_value) else (
        signed(100 * pair_or_value) if with_sign else f"{100 * pair_or_value:.2f}")


def _nmi(v: dict[str, Any]) -> str:
    mean = (v.get("nmi") or {}).get("mean")
    return "–" if not mean or mean[0] is None else f"{mean[0]:.2f} ± {mean[1]:.2f}"


def format_report(report: dict[str, Any]) -> str:
    lines = [f"# Study `{report['study']}`", ""]
    if report.get("about"):
        lines += [report["about"], ""]
    if report.get("command"):
        lines += [f"`{report['command']}`", ""]
    if report.get("settings"):
        lines += [f"What ran: the baseline of seed {report['settings']['seed']} as composed and built (each variant "
                  "adds only the overrides in its row):", "",
                  *WhatRan.from_json(report["settings"]).lines(report.get("seeds") or []), ""]
    multilabel = any(v.get("metric") == MULTILABEL_METRIC for v in report["variants"].values())
    lines += ["Overrides of every run: `" + " ".join(report["overrides"]) + "`", "",
             *(["Multilabel data: the accuracy columns are Hit@1 (the share of videos whose top class is one of "
                "their labels); study.json has the Δ GAP@20 of each variant beside it.", ""] if multilabel else []),
             "Accuracies in %, mean ± sample std over seeds; Δ = variant − baseline of the same seed "
             "(paired); wins = seeds where Δ > 0. Validation = the held-out part of the training set. NMI: the "
             "subclasses against the fine labels (merged classes; 1 = the subclasses are the original classes).", "",
             "| variant | method | extra overrides | seeds | baseline test | variant test | Δ test | Δ per seed | "
             "wins | "
             "Δ val | NMI | selected classes Δ | other classes Δ | Spearman ρ(θ, baseline error) |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in report["variants"].items():
        test, val = v.get("test") or {}, v.get("val") or {}
        per_seed = ", ".join(_pct(d, with_sign=True) for d in test.get("diff_per_seed", []))
        rho = (v.get("spearman_theta_vs_baseline_error") or {}).get("mean", (math.nan, math.nan))
        rho_text = "–" if rho[0] is None or not math.isfinite(rho[0]) else f"{signed(rho[0])} ± {rho[1]:.2f}"
        lines.append(f"| {name} | {v.get('method', 'sdnn')} | `{' '.join(v['overrides']) or '–'}` | "
                     f"{len(v['seeds'])} | "
                     f"{_pct(test.get('baseline'))} | {_pct(test.get('variant'))} | {_pct(test.get('diff'), True)} | "
                     f"{per_seed} | {test.get('wins', '–')}/{len(v['seeds'])} | {_pct(val.get('diff'), True)} | "
                     f"{_nmi(v)} | {_pct(v.get('selected_change'), True)} | {_pct(v.get('other_change'), True)} | "
                     f"{rho_text} |")
    main = report["variants"].get("main")
    if main and main.get("per_class_change"):
        names = report.get("class_names") or [str(i) for i in range(len(main["per_class_change"]))]
        counts = {}
        for chosen in main["selected"].values():
            for c in chosen or []:
                counts[c] = counts.get(c, 0) + 1
        lines += ["", "Main variant, per class (test accuracy change, mean over seeds; selected = in how many seeds "
                  "θ selected the class):", "", "| class | Δ test | selected |", "|---|---:|---:|"]
        for i, change in enumerate(main["per_class_change"]):
            lines.append(f"| {names[i] if i < len(names) else i} | {_pct(change, True)} | {counts.get(i, 0)} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    from sdnn.cache import atomic_write_json
    from sdnn.plots import plot_paired_differences

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "study.json", report)
    (out / "study.md").write_text(format_report(report))
    plot_paired_differences({name: (v.get("test") or {}).get("diff_per_seed", [])
                             for name, v in report["variants"].items()},
                            out / "study.png", title=f"study {report['study']}: variant − baseline, test accuracy")
    print(format_report(report))
    print(f"study written to {out}/study.md, study.json, study.png")


# ----------------------------------------------------------------------------- several studies: the regime map

MAP_VARIANTS = ("main", "partitioner=median_split", "partitioner=random", "reweight", "augmenter=sample_pairing")
# How the regime studies' variants read in the map's figure.
MAP_LABELS = {"main": "SDNN, k-means", "partitioner=median_split": "SDNN, Algorithm 1",
              "partitioner=random": "random split (control)", "reweight": "reweight (control)",
              "augmenter=sample_pairing": "k-means + SamplePairing"}


def _cell(v: dict[str, Any] | None) -> str:
    test = (v or {}).get("test") or {}
    if not test:
        return "–"
    return f"{_pct(test['diff'], True)} ({test['wins']}/{len(v['seeds'])})"


def format_map(reports: list[dict[str, Any]], variants: Sequence[str]) -> str:
    """One row per study (a regime): the baseline, each variant's paired Δ with its wins, the main
    variant's Δ on validation and the NMI of the main and random splits."""
    head = ["study", "regime", "baseline test", *(f"Δ {v}" for v in variants), "Δ val (main)", "NMI main",
            "NMI random"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for report in reports:
        found = report["variants"]
        main = found.get("main") or {}
        baseline = ((main.get("test") or {}).get("baseline"))
        lines.append(f"| `{report['study']}` | {report.get('regime', '')} | {_pct(baseline) if baseline else '–'} | "
                     + " | ".join(_cell(found.get(v)) for v in variants)
                     + f" | {_pct((main.get('val') or {}).get('diff'), True)} | {_nmi(main)} | "
                       f"{_nmi(found.get('partitioner=random') or {})} |")
    return "\n".join(lines) + "\n"


def write_map(folders: Sequence[Path], out: Path, variants: Sequence[str] = MAP_VARIANTS) -> str:
    """The regime map of finished studies (their ``study.json``): ``map.md``, ``map.json``, ``map.png``."""
    from sdnn.cache import atomic_write_json
    from sdnn.plots import plot_regime_map

    reports = []
    for folder in folders:
        path = Path(folder) / "study.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no such file; run the study first (python -m sdnn.study <name> --out {folder})")
        reports.append(json.loads(path.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    text = format_map(reports, variants)
    (out / "map.md").write_text(text)
    atomic_write_json(out / "map.json", {"variants": list(variants), "studies": reports})
    diffs = {r.get("regime") or r["study"]: {MAP_LABELS.get(v, v): ((r["variants"].get(v) or {}).get("test") or {})
                                             .get("diff_per_seed", []) for v in variants} for r in reports}
    plot_regime_map(diffs, out / "map.png")
    print(text)
    print(f"map written to {out}/map.md, map.json, map.png")
    return text


