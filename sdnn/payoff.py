"""Predicting the payoff (issues 25 and 26; docs/reproduction.md, "Predicting the payoff"): each regime-map cell's
``sdnn.advise`` verdict, from lines fitted on the *other* cells only (leave one study out: a cell's own runs never
inform its prediction), against the Δ its runs measured; ``method=auto`` against the baseline and the best
candidate on the same cells; and the calibration ``sdnn.advise`` ships, the lines fitted on every cell.

A cell is a finished study folder (``python -m sdnn.study <name> --variants main partitioner=random reweight auto``)
with its advice (``python -m sdnn.study <name> --advise``). The prediction is the verdict a user gets from one
``python -m sdnn.advise`` call with the seed of the study's first run; the lines are fitted on each cell's mean over
its seeds. Nothing here trains.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdnn.errors import ConfigError
from sdnn.stats import mean_std, signed, signed_interval
from sdnn.verdict import Calibration, Line, judge, leave_one_out

METHODS = ("sdnn", "reweight")
VARIANT = {"sdnn": "main", "reweight": "reweight"}   # the study variant that measured each method
AUTO_RUNS = Path("runs") / "auto-auto"   # a study's auto variant's runs (sdnn.catalogue.Variant.folder)
SPLIT_K = "subclass.num_classes_to_repartition="


@dataclass
class Cell:
    """One finished study and its advice: per seed, the probe and the measured Δ test (points) of each method."""

    name: str
    regime: str
    probes: dict[int, dict[str, Any]]               # seed → advice.json's probe
    per_class: dict[int, dict[str, Any]]            # seed → advice.json's per_class (gap, stability)
    measured: dict[str, dict[int, float]]           # method (sdnn, reweight, auto, ...) → seed → Δ test, points
    auto: dict[int, dict[str, Any]] = field(default_factory=dict)   # seed → {"chosen", "seconds"}
    candidates: dict[str, str] = field(default_factory=dict)   # auto's candidate → its key in ``measured``
    baseline_seconds: dict[int, float] = field(default_factory=dict)
    sdnn_seconds: dict[int, float] = field(default_factory=dict)     # phase 2's training time
    advice_seconds: dict[int, tuple[float, float]] = field(default_factory=dict)  # (after phase 1, phase 1)

    def probe_mean(self, method: str) -> float:
        key = "delta" if method == "sdnn" else "reweight"
        return float(np.mean([p[key] or 0.0 for p in self.probes.values()]))

    def class_mean(self, key: str) -> float:
        """A per-class indicator (``gap``, ``stability``) averaged over the split classes and the seeds."""
        return float(np.mean([v[key] for seed in self.per_class.values() for v in seed.values()]))

    def delta(self, method: str) -> tuple[float, float]:
        """Mean and sample std over seeds of a method's measured Δ (points); (0, 0) for the baseline itself."""
        if method == "baseline":
            return 0.0, 0.0
        return mean_std(list(self.measured[method].values()))


def seed_deltas(variant: dict[str, Any]) -> dict[int, float]:
    """A study.json variant's Δ test per seed (points)."""
    return {s: 100 * d for s, d in zip(variant["seeds"], variant["test"]["diff_per_seed"])}


def seed_group(group: str) -> list[int]:
    """``"5-9"`` → [5, 6, 7, 8, 9]; ``"3"`` → [3]."""
    first, _, last = group.partition("-")
    return list(range(int(first), int(last or first) + 1))


def candidate_variants(report: dict[str, Any]) -> dict[str, str]:
    """method=auto's candidate → the study.json variant that ran the same configuration: ``reweight``, ``main``
    (SDNN splitting the study's k) and each variant that only sets k (``k=1`` → ``sdnn-k1``)."""
    found = {"baseline": "baseline"}
    for name, variant in report["variants"].items():
        overrides = variant.get("overrides", [])
        if name == "reweight" and variant["method"] == "reweight" and not overrides:
            found["reweight"] = name
        elif variant["method"] == "sdnn" and (name == "main" and not overrides or
                                              len(overrides) == 1 and overrides[0].startswith(SPLIT_K)):
            k = (int(overrides[0].removeprefix(SPLIT_K)) if overrides
                 else report["settings"]["num_classes_to_repartition"])
            found[f"sdnn-k{k}"] = name
    return found


def read_cell(folder: Path) -> Cell:
    """A study folder's ``study.json`` and ``advice/seed*/advice.json``."""
    folder = Path(folder)
    path = folder / "study.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; run the study first (python -m sdnn.study <name> --out {folder})")
    report = json.loads(path.read_text())
    probes, per_class, advice_seconds = {}, {}, {}
    for advice in sorted(folder.glob("advice/seed*/advice.json")):
        seed, payload = int(advice.parent.name.removeprefix("seed")), json.loads(advice.read_text())
        probes[seed], per_class[seed] = payload["probe"], payload.get("per_class") or {}
        advice_seconds[seed] = (payload["seconds_after_phase1"], payload["phase1"]["seconds"])
    if not probes:
        raise ConfigError(f"{folder}: no advice/seed*/advice.json; run python -m sdnn.study {report['study']} --advise "
                          f"--out {folder}")
    measured: dict[str, dict[int, float]] = {}
    auto: dict[int, dict[str, Any]] = {}
    baseline_seconds: dict[int, float] = {}
    main_seconds = ((report["variants"].get("main") or {}).get("seconds") or {}).get("variant") or []
    sdnn_seconds = {s: t for s, t in zip((report["variants"].get("main") or {}).get("seeds", []), main_seconds)}
    for name, variant in report["variants"].items():
        test = variant.get("test") or {}
        if not test:
            continue
        method = {"main": "sdnn"}.get(name, name)
        measured[method] = seed_deltas(variant)
        seconds = (variant.get("seconds") or {}).get("baseline") or []
        baseline_seconds.update({s: t for s, t in zip(variant["seeds"], seconds) if t is not None})
        if variant.get("auto"):
            auto = {int(s): v for s, v in variant["auto"].items()}
    candidates = {name: {"main": "sdnn"}.get(variant, variant)
                  for name, variant in (candidate_variants(report) if auto else {}).items()}
    missing = [m for m in METHODS if m not in measured]
    if missing:
        raise ConfigError(f"{folder}: the study has no {', '.join(VARIANT[m] for m in missing)} variant; run it with "
                          f"--variants main reweight")
    return Cell(report["study"], report.get("regime", report["study"]), probes, per_class, measured, auto,
                candidates, baseline_seconds, sdnn_seconds, advice_seconds)


def calibrate(cells: Sequence[Cell], source: str = "") -> Calibration:
    """The lines on every cell (what ``sdnn.advise`` ships)."""
    lines = {m: Line.fit([c.probe_mean(m) for c in cells], [c.delta(m)[0] for c in cells]) for m in METHODS}
    return Calibration(lines, source, tuple(c.name for c in cells))


def validate(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Per cell: the verdict from the lines fitted without it (its first seed's probe, as one advise call), the
    measured Δ, and whether the sign and the recommendation were right; method=auto beside it."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ConfigError(f"cells named twice: {sorted({n for n in names if names.count(n) > 1})}")
    held_out = {m: leave_one_out({c.name: c.probe_mean(m) for c in cells}, {c.name: c.delta(m)[0] for c in cells})
                for m in METHODS}
    rows = []
    for cell in cells:
        seed = min(cell.probes)
        probe = cell.probes[seed]
        calibration = Calibration({m: held_out[m][cell.name] for m in METHODS})
        verdict = judge(calibration, probe["delta"], probe["delta_se"], probe["reweight"], probe["reweight_se"])
        per_seed = [judge(calibration, p["delta"], p["delta_se"], p["reweight"], p["reweight_se"]).recommendation
                    for p in cell.probes.values()]
        row: dict[str, Any] = {"cell": cell.name, "regime": cell.regime, "seed": seed, "probe": probe,
                               "recommendation": verdict.recommendation, "agreeing_seeds": per_seed.count(
                                   verdict.recommendation), "seeds": len(per_seed)}
        for method in METHODS:
            mean, std = cell.delta(method)
            low, mid, high = verdict.expected[method]
            row[method] = {"predicted": [low, mid, high], "measured": [mean, std],
                           "clear": abs(mean) > std, "sign_right": (mid > 0) == (mean > 0),
                           "inside": low <= mean <= high}
        deltas = {m: cell.delta(m) for m in ("baseline", *METHODS)}
        best = max(deltas, key=lambda m: deltas[m][0])
        chosen = deltas[verdict.recommendation]
        row["best"] = best
        row["recommendation_ok"] = chosen[0] >= deltas[best][0] - max(chosen[1], deltas[best][1])
        if "auto" in cell.measured:
            mean, std = cell.delta("auto")
            # auto's candidates as the study measured them (the variants that ran their configurations)
            candidates = {name: cell.delta(key) for name, key in cell.candidates.items()
                          if key == "baseline" or key in cell.measured}
            row["auto"] = {"measured": [mean, std], "chosen": [v["chosen"] for _, v in sorted(cell.auto.items())],
                           **auto_criteria(candidates, (mean, std)),
                           "cost": (float(np.mean([v["seconds"] for v in cell.auto.values()]))
                                    / float(np.mean(list(cell.baseline_seconds.values()))))
                           if cell.auto and cell.baseline_seconds else None}
        rows.append(row)
    return rows


def auto_criteria(candidates: dict[str, tuple[float, float]], auto: tuple[float, float]) -> dict[str, Any]:
    """Issue 26's targets for method=auto, from the mean and seed std of each candidate's Δ test (points; the
    baseline's (0, 0) among them) and of auto's: the best candidate, whether it pays (its mean above its std),
    whether auto is no worse than the baseline by more than its std, and the share of the best gain it took."""
    best = max(candidates, key=lambda m: candidates[m][0])
    pays = candidates[best][0] > candidates[best][1] and best != "baseline"
    return {"never_worse": auto[0] >= -auto[1], "pays": pays, "best_candidate": best,
            "share_of_best": auto[0] / candidates[best][0] if pays else None}


def evidence(cells: Sequence[Cell]) -> dict[str, dict[str, float]]:
    """How well each label-free indicator, averaged over a cell's seeds, tracks the cell's measured Δ sdnn across
    the cells (Pearson's r, Spearman's ρ): why the verdict rests on the probe."""
    from sdnn.stats import spearman

    measured = [c.delta("sdnn")[0] for c in cells]
    out = {}
    for name, values in (("probe", [c.probe_mean("sdnn") for c in cells]),
                         ("gap", [c.class_mean("gap") for c in cells]),
                         ("stability", [c.class_mean("stability") for c in cells])):
        pearson = float(np.corrcoef(values, measured)[0, 1]) if np.std(values) > 0 else float("nan")
        out[name] = {"pearson": pearson, "spearman": spearman(values, measured)}
    return out


def costs(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """What ``sdnn.advise`` cost in each cell against the runs it predicts, as the study's runs measured them:
    the baseline's and phase 2's training times and phase 1's (seconds, means over the seeds)."""
    out = []
    for cell in cells:
        seeds = [s for s in cell.advice_seconds if s in cell.baseline_seconds and s in cell.sdnn_seconds]
        if not seeds:
            continue
        after = float(np.mean([cell.advice_seconds[s][0] for s in seeds]))
        phase1 = float(np.mean([cell.advice_seconds[s][1] for s in seeds]))
        runs = float(np.mean([cell.baseline_seconds[s] + cell.sdnn_seconds[s] for s in seeds])) + phase1
        out.append({"cell": cell.name, "advise_seconds": after, "phase1_seconds": phase1, "runs_seconds": runs,
                    "share_cached": after / runs, "share_with_phase1": (after + phase1) / runs})
    return out


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The targets of issues 25 and 26, counted over the cells."""
    clear = [r for r in rows if r["sdnn"]["clear"]]
    out = {"cells": len(rows), "sdnn_clear_cells": len(clear),
           "sdnn_sign_right": sum(r["sdnn"]["sign_right"] for r in clear),
           "recommendation_ok": sum(r["recommendation_ok"] for r in rows),
           "sdnn_inside_interval": sum(r["sdnn"]["inside"] for r in rows),
           "reweight_clear_cells": sum(r["reweight"]["clear"] for r in rows),
           "reweight_sign_right": sum(r["reweight"]["sign_right"] for r in rows if r["reweight"]["clear"])}
    autos = [r for r in rows if "auto" in r]
    if autos:
        paying = [r for r in autos if r["auto"]["pays"]]
        out.update(auto_cells=len(autos), auto_never_worse=sum(r["auto"]["never_worse"] for r in autos),
                   auto_paying_cells=len(paying),
                   auto_80_percent=sum(r["auto"]["share_of_best"] >= 0.8 for r in paying))
    return out


def format_payoff(rows: Sequence[dict[str, Any]], indicators: dict[str, dict[str, float]] | None = None,
                  spent: Sequence[dict[str, Any]] = ()) -> str:
    """The table of docs/reproduction.md, "Predicting the payoff", and the counts against the targets."""
    head = ("| cell | regime | probe Δ (seed 0) | predicted Δ sdnn [80%] | measured Δ sdnn | sign | predicted Δ "
            "reweight | measured Δ reweight | recommended (seeds agreeing) | best | ok | method=auto Δ (chosen) | "
            "auto cost × baseline |")
    lines = [head, "|---|---|---:|---:|---:|:-:|---:|---:|---|---|:-:|---|---:|"]
    for r in rows:
        s, w = r["sdnn"], r["reweight"]
        sign = ("✓" if s["sign_right"] else "✗") if s["clear"] else "(–)"
        auto = r.get("auto")
        auto_text = "–" if not auto else (f"{signed(auto['measured'][0])} ± {auto['measured'][1]:.2f} "
                                          f"({', '.join(auto['chosen'])})")
        cost = "–" if not auto or auto["cost"] is None else f"{auto['cost']:.1f}"
        lines.append(f"| `{r['cell']}` | {r['regime']} | {signed(r['probe']['delta'])} ± "
                     f"{r['probe']['delta_se']:.2f} | "
                     f"{signed_interval(s['predicted'])} | {signed(s['measured'][0])} ± {s['measured'][1]:.2f} | {sign} | "
                     f"{signed_interval(w['predicted'])} | {signed(w['measured'][0])} ± {w['measured'][1]:.2f} | "
                     f"{r['recommendation']} ({r['agreeing_seeds']}/{r['seeds']}) | {r['best']} | "
                     f"{'✓' if r['recommendation_ok'] else '✗'} | {auto_text} | {cost} |")
    total = summary(rows)
    lines += ["", f"- sign of Δ sdnn right in {total['sdnn_sign_right']} of the {total['sdnn_clear_cells']} cells "
                  f"where |mean Δ| > its seed std (target: 80%)",
              f"- recommended method within one seed std of the best in {total['recommendation_ok']} of "
              f"{total['cells']} cells (target: 80%)",
              f"- measured Δ sdnn inside the 80% interval in {total['sdnn_inside_interval']} of {total['cells']} cells"]
    if indicators:
        lines += ["", "Each indicator (mean over a cell's seeds and split classes) against the cell's measured Δ sdnn, "
                      "across the cells:", "", "| indicator | Pearson r | Spearman ρ |", "|---|---:|---:|"]
        lines += [f"| {name} | {signed(v['pearson'])} | {signed(v['spearman'])} |" for name, v in indicators.items()]
    if spent:
        lines += ["", "What advise cost against the baseline + SDNN runs it predicts (seconds, means over the seeds; the "
                      "runs' training times as the study measured them, phase 1 counted once):", "",
                  "| cell | advise after phase 1 | phase 1 | baseline + SDNN runs | share, phase 1 cached | share, "
                  "phase 1 included |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| `{c['cell']}` | {c['advise_seconds']:.1f} | {c['phase1_seconds']:.1f} | {c['runs_seconds']:.1f} | "
                  f"{100 * c['share_cached']:.1f}% | {100 * c['share_with_phase1']:.1f}% |" for c in spent]
    if "auto_cells" in total:
        lines += [f"- method=auto no worse than the baseline by more than one seed std in {total['auto_never_worse']} "
                  f"of {total['auto_cells']} cells; at least 80% of the best candidate's gain in "
                  f"{total['auto_80_percent']} of the {total['auto_paying_cells']} cells where one pays"]
    return "\n".join(lines) + "\n"


def write_loo(cells: Sequence[Cell], folder: Path, source: str) -> list[Path]:
    """One calibration per cell, fitted on the other cells (``<folder>/<cell>.yaml``): what that cell's
    ``method=auto`` runs use (``python -m sdnn.study <cell> --variants auto --calibration <file>``), so that its
    own measurements never inform its choice."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for cell in cells:
        others = [c for c in cells if c.name != cell.name]
        calibration = calibrate(others, source=f"{source} (leaving out {cell.name})")
        path = folder / f"{cell.name}.yaml"
        path.write_text(yaml.safe_dump(calibration.to_json(), sort_keys=False, width=120))
        written.append(path)
    return written


def write_payoff(folders: Sequence[Path], out: Path, calibration_out: Path | None = None,
                 loo: Path | None = None) -> str:
    """``payoff.md``, ``payoff.json`` and ``payoff.png`` (predicted against measured) in ``out``; with
    ``calibration_out``, the lines fitted on every cell written there (``conf/advise/calibration.yaml``)."""
    import yaml

    from sdnn.cache import atomic_write_json
    from sdnn.plots import plot_payoff

    cells = [read_cell(Path(f)) for f in folders]
    if len(cells) < 4:
        raise ConfigError(f"leave-one-out needs at least 4 cells (3 to fit a line on), got {len(cells)}")
    rows = validate(cells)
    indicators, spent = evidence(cells), costs(cells)
    out.mkdir(parents=True, exist_ok=True)
    text = format_payoff(rows, indicators, spent)
    (out / "payoff.md").write_text(text)
    atomic_write_json(out / "payoff.json", {"rows": rows, "summary": summary(rows), "indicators": indicators,
                                            "costs": spent})
    plot_payoff([(r["cell"], r["sdnn"]["predicted"], r["sdnn"]["measured"]) for r in rows],
                [(r["cell"], r["reweight"]["predicted"], r["reweight"]["measured"]) for r in rows], out / "payoff.png")
    if calibration_out is not None:
        calibration = calibrate(cells, source="python -m sdnn.study payoff " + " ".join(str(f) for f in folders))
        header = ("# sdnn.advise's calibration: Δ test (points) ≈ intercept + slope × probe Δ, fitted on the regime\n"
                  "# map's cells (docs/reproduction.md, \"Predicting the payoff\"); written by the command in source.\n")
        Path(calibration_out).write_text(header + yaml.safe_dump(calibration.to_json(), sort_keys=False, width=120))
    if loo is not None:
        write_loo(cells, loo, "python -m sdnn.study payoff " + " ".join(str(f) for f in folders))
    print(text)
    print(f"written to {out}/payoff.md, payoff.json, payoff.png" + (f"; calibration {calibration_out}"
                                                                     if calibration_out else "")
          + (f"; one calibration per study without it in {loo}/" if loo else ""))
    return text
