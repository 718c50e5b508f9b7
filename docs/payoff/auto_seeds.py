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

from sdnn.auto import bounded
from sdnn.payoff import AUTO_RUNS, auto_criteria, candidate_variants, seed_deltas, seed_group
from sdnn.stats import mean_std, signed


def detectable(results: Path, candidate: str) -> float:
    """The candidate's ``detectable`` gain in an auto run's results.json (fractions), or, for a run made before it
    was recorded, the one ``sdnn.auto.bounded`` gives its record at the run's ``auto.confidence``."""
    payload = json.loads(results.read_text())
    record = payload["auto"]["candidates"][candidate]
    if "detectable" in record:
        return record["detectable"]
    return bounded(record, payload["config"]["auto"]["confidence"])["detectable"]


def cell_rows(folder: Path, groups: list[str]) -> list[str]:
    """One table row per seed group of the study in ``folder``."""
    report = json.loads((folder / "study.json").read_text())
    variants = report["variants"]
    candidate = {variant: name for name, variant in candidate_variants(report).items() if name != "baseline"}
    delta = {name: seed_deltas(variants[name]) for name in (*candidate, "auto")}
    chosen = {int(seed): record["chosen"] for seed, record in variants["auto"]["auto"].items()}
    rows = []
    for group in groups:
        seeds = seed_group(group)
        missing = [s for s in seeds if s not in delta["auto"]]
        if missing:
            raise SystemExit(f"error: {folder} has no auto run for seed(s) {missing}; run its study with those seeds")
        measured = {name: mean_std([delta[name][s] for s in seeds]) for name in delta}
        candidates = {"baseline": (0.0, 0.0), **{name: measured[name] for name in candidate}}
        targets = auto_criteria(candidates, measured["auto"])
        best = targets["best_candidate"]
        shown = best if best != "baseline" else max(candidate, key=lambda n: candidates[n][0])
        detects = 100 * np.mean([detectable(folder / AUTO_RUNS / f"seed{s}" / "results.json", candidate[shown])
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
            raise SystemExit(f"error: {folder}: not a finished study with auto and its candidates' variants (main, "
                             f"reweight, k=1, k=3; {type(err).__name__}: {err}); run python -m sdnn.study with "
                             "them") from None
    print("| study | seeds | best candidate, Δ test | auto detects (points) | method=auto Δ test (chosen) | "
          "never worse | share of the best |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
