"""method=auto's targets on groups of seeds of finished study folders (docs/reproduction.md, "Ten seeds"): per
cell and seed group, auto's Δ test and its choices, the best candidate and the share of its gain auto took, as
``python -m sdnn.study payoff`` computes them (``sdnn.payoff.auto_criteria``), and what auto's comparison
detects for the best candidate (its ``detectable`` gain, computed from its record for runs made before it was
recorded).
A study's study.json and its auto runs' results.json are read as data only.

    python docs/payoff/auto_seeds.py studies/seeds10/digits_lr ... --groups 0-4 5-9 0-9
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from sdnn.auto import detectable_gain
from sdnn.payoff import auto_criteria, seed_deltas
from sdnn.stats import mean_std, signed

CANDIDATES = {"main": "sdnn-k2", "reweight": "reweight", "k=1": "sdnn-k1", "k=3": "sdnn-k3"}  # variant → auto's name
AUTO = Path("runs") / "auto-auto"   # the regime variant set's auto runs (conf/study/variants/regime.yaml)


def seeds_of(group: str) -> list[int]:
    """``"5-9"`` → [5, 6, 7, 8, 9]."""
    first, _, last = group.partition("-")
    return list(range(int(first), int(last or first) + 1))


def detectable(results: Path, candidate: str) -> float:
    """The candidate's ``detectable`` gain in an auto run's results.json (fractions), or, for a run made before it
    was recorded, ``sdnn.auto.detectable_gain`` of its record at the run's ``auto.confidence``."""
    payload = json.loads(results.read_text())
    record = payload["auto"]["candidates"][candidate]
    if "detectable" in record:
        return record["detectable"]
    expected = record.get("expected")
    return detectable_gain(record["val_gain_se"], record["gain_sd"], None if expected is None else expected[1] / 100,
                           payload["config"]["auto"]["confidence"])


def cell_rows(folder: Path, groups: list[str]) -> list[str]:
    """One table row per seed group of the study in ``folder``."""
    report = json.loads((folder / "study.json").read_text())
    variants = report["variants"]
    delta = {name: seed_deltas(variants[name]) for name in (*CANDIDATES, "auto")}
    chosen = {int(seed): record["chosen"] for seed, record in variants["auto"]["auto"].items()}
    rows = []
    for group in groups:
        seeds = seeds_of(group)
        missing = [s for s in seeds if s not in delta["auto"]]
        if missing:
            raise SystemExit(f"error: {folder} has no auto run for seed(s) {missing}; run its study with those seeds")
        measured = {name: mean_std([delta[name][s] for s in seeds]) for name in delta}
        candidates = {"baseline": (0.0, 0.0), **{name: measured[name] for name in CANDIDATES}}
        targets = auto_criteria(candidates, measured["auto"])
        best = targets["best_candidate"]
        shown = best if best != "baseline" else max(CANDIDATES, key=lambda n: candidates[n][0])
        detects = 100 * np.mean([detectable(folder / AUTO / f"seed{s}" / "results.json", CANDIDATES[shown])
                                  for s in seeds])
        picks = ", ".join(f"{name} ×{n}" for name, n in Counter(chosen[s] for s in seeds).most_common())
        share = "–" if targets["share_of_best"] is None else f"{100 * targets['share_of_best']:.0f}%"
        mean, std = candidates[shown]
        rows.append(f"| {report['study']} | {group} | {shown}: {signed(mean)} ± {std:.2f}"
                    f"{'' if targets['pays'] else ' (none pays)'} | {detects:.2f} | {signed(measured['auto'][0])} ± "
                    f"{measured['auto'][1]:.2f} ({picks}) | {'yes' if targets['never_worse'] else 'NO'} | {share} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="finished study folders with the regime variants")
    parser.add_argument("--groups", nargs="+", default=["0-4"], help="seed groups, e.g. 0-4 5-9 0-9")
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        try:
            rows += cell_rows(folder, args.groups)
        except (OSError, KeyError, ValueError) as err:   # ValueError: a study.json that is not JSON
            raise SystemExit(f"error: {folder}: not a finished study with the variants {', '.join(CANDIDATES)} "
                             f"and auto ({type(err).__name__}: {err}); run python -m sdnn.study with them") from None
    print("| study | seeds | best candidate, Δ test | auto detects (points) | method=auto Δ test (chosen) | "
          "never worse | share of the best |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
