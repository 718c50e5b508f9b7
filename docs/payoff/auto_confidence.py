"""What method=auto would have chosen at other ``auto.confidence`` levels, on finished study folders
(docs/reproduction.md, "The guard's confidence"): each auto run's choice is replayed from its recorded candidates
(``sdnn.auto.rechoose``: the bounds computed again from the recorded gains, nothing retrained; at the run's own
level the replay must give the recorded choice), the chosen candidate's Δ test is the study's run of that
candidate on the same seed (main, k=1, k=3, reweight; checked: at the run's own level it is auto's own Δ test),
and issue 26's targets are computed as ``python -m sdnn.study payoff`` computes them
(``sdnn.payoff.auto_criteria``). A choice whose candidate the study did not run is reported as unknown, not
guessed. study.json and results.json are read as data only.

    python docs/payoff/auto_confidence.py studies/digits_lr ... --levels 0.5 0.8 0.9 0.95 0.99 --seeds 0-4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sdnn.auto import rechoose
from sdnn.payoff import AUTO_RUNS, auto_criteria, candidate_variants, seed_deltas, seed_group
from sdnn.stats import mean_std, signed


def replay(folder: Path, levels: list[float], seeds: list[int]) -> dict[str, Any]:
    """Per level: auto's Δ test per seed (None: the study did not run the chosen candidate), its choices, and the
    targets; ``best``: the best candidate by the study's runs (mean, std)."""
    report = json.loads((folder / "study.json").read_text())
    missing = [s for s in seeds if not (folder / AUTO_RUNS / f"seed{s}" / "results.json").is_file()]
    if missing:
        raise SystemExit(f"error: {folder} has no auto run for seed(s) {missing}; run its study with those seeds")
    variants = candidate_variants(report)
    delta = {name: {s: 0.0 for s in seeds} if name == "baseline" else seed_deltas(report["variants"][variant])
             for name, variant in variants.items()}
    measured = {name: mean_std([delta[name][s] for s in seeds]) for name in delta}
    auto_delta = seed_deltas(report["variants"]["auto"])
    records: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        results = json.loads((folder / AUTO_RUNS / f"seed{seed}" / "results.json").read_text())
        recorded, ran_at = results["auto"], results["config"]["auto"]["confidence"]
        if rechoose(recorded["candidates"], ran_at)[0] != recorded["chosen"]:
            raise SystemExit(f"error: {folder} seed {seed}: the replay at the run's own confidence {ran_at} does "
                             f"not give its recorded choice {recorded['chosen']}; is it a run of this version?")
        own = delta.get(recorded["chosen"], {}).get(seed)
        if own is not None and abs(own - auto_delta[seed]) > 1e-6:
            raise SystemExit(f"error: {folder} seed {seed}: auto's Δ test {signed(auto_delta[seed])} is not the "
                             f"study's run of its choice {recorded['chosen']} ({signed(own)}); the replay would "
                             "not measure auto")
        records[seed] = recorded["candidates"]
    out: dict[str, Any] = {"study": report["study"], "levels": {}}
    for level in levels:
        chosen = {seed: rechoose(candidates, level)[0] for seed, candidates in records.items()}
        gains = [delta[c][s] if c in delta else None for s, c in chosen.items()]
        known = None not in gains
        auto = mean_std(gains) if known else None
        out["levels"][level] = {"chosen": chosen, "delta": gains, "measured": auto,
                                **(auto_criteria(measured, auto) if known else {})}
    best = max(measured, key=lambda n: measured[n][0])
    out["best"] = (best, *measured[best])
    return out


def row(replayed: dict[str, Any], group: str) -> str:
    """A markdown row: the best candidate, then per level auto's Δ test and its share of the best (or ``worse``)."""
    best, mean, std = replayed["best"]
    cells = [f"{replayed['study']} | {group} | {best}: {signed(mean)} ± {std:.2f}"]
    for outcome in replayed["levels"].values():
        if outcome["measured"] is None:
            cells.append("unknown (" + ", ".join(sorted({c for c in outcome["chosen"].values()})) + " not run)")
            continue
        auto_mean, auto_std = outcome["measured"]
        text = f"{signed(auto_mean)} ± {auto_std:.2f}"
        if not outcome["never_worse"]:
            text += " **worse**"
        elif outcome["pays"]:
            text += f" ({100 * outcome['share_of_best']:.0f}%)"
        cells.append(text)
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="finished study folders with the regime variants")
    parser.add_argument("--levels", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95, 0.99])
    parser.add_argument("--seeds", nargs="+", default=["0-4"], help="seed groups, e.g. 0-4 0-9")
    args = parser.parse_args()
    bad = [level for level in args.levels if not 0.5 <= level < 1]
    if bad:
        raise SystemExit(f"error: --levels {bad}: a one-sided confidence is at least 0.5 and below 1")
    rows, tally = [], {level: [0, 0, 0, 0] for level in args.levels}   # never worse, of; >= 80%, of
    for folder in args.folders:
        for group in args.seeds:
            try:
                replayed = replay(folder, args.levels, seed_group(group))
            except (OSError, KeyError, ValueError) as err:   # ValueError: a file that is not JSON
                raise SystemExit(f"error: {folder}: not a finished study with the variants main, reweight and auto "
                                 f"for seeds {group} ({type(err).__name__}: {err}); run python -m sdnn.study with "
                                 "them") from None
            rows.append(row(replayed, group))
            for level, outcome in replayed["levels"].items():
                if outcome["measured"] is not None:
                    tally[level][0] += outcome["never_worse"]
                    tally[level][1] += 1
                    if outcome["pays"]:
                        tally[level][2] += outcome["share_of_best"] >= 0.8
                        tally[level][3] += 1
    levels = " | ".join(f"auto.confidence={level:g}" for level in args.levels)
    print(f"| study | seeds | best candidate, Δ test | {levels} |")
    print("|---|---|---|" + "---|" * len(args.levels))
    print("\n".join(rows))
    print("| never worse | | | " + " | ".join(f"{n} of {of}" for n, of, _, _ in tally.values()) + " |")
    print("| ≥ 80% of the best | | | " + " | ".join(f"{n} of {of}" for _, _, n, of in tally.values()) + " |")


if __name__ == "__main__":
    main()
