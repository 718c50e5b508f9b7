"""Replay method=auto's choices on finished study folders with other calibration lines (docs/reproduction.md,
"What method=auto did"): each auto run's configuration is composed from the study's catalogue entry, as
`python -m sdnn.study` composes it (and checked against the finished run), phase 1 comes from the study's cache,
each candidate's expectation is computed anew (the current indicators, the given lines), and the guard is
applied to the recorded validation results, which do not depend on the lines (auto.skip_hopeless=false).
A run's results.json is read as data only.

    python docs/payoff/replay_auto.py --studies studies --loo studies/loo merged_digits_lr digits_lr ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from sdnn.auto import bounded, candidates_of, combined_gain, decide, expectations
from sdnn.build import build_job
from sdnn.catalogue import Study, load_study
from sdnn.errors import ConfigError
from sdnn.pipeline import run_phase1
from sdnn.runlog import quiet
from sdnn.study import Plan, compose_runs, plan_study
from sdnn.verdict import load_calibration

FOLDER = Path("runs") / "auto-auto"   # the regime variant set's auto runs (conf/study/variants/regime.yaml)


def replay(study: Study, folder: Path, seed: int, calibration: Path) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """The recorded choice of the study's auto run of ``seed``, the guard's choice (``sdnn.auto.decide``) with
    expectations from ``calibration``, and each candidate's new record (``gain``, ``gain_sd``, ``lower``, ...)."""
    results = json.loads((folder / FOLDER / f"seed{seed}" / "results.json").read_text())
    ran_with = results["config"]["auto"]["calibration"]  # its --calibration, so that the settings compare equal
    study.check_files()
    plan = plan_study(study, ["auto"], folder, calibration=Path(ran_with) if ran_with else None)
    cfg = compose_runs(Plan(plan.common, plan.arms[1:], {}), [seed], folder)[plan.arms[1].folder, seed]
    job = build_job(cfg, Path(tempfile.mkdtemp()))
    expected, _ = expectations(job, run_phase1(job), candidates_of(job), load_calibration(calibration))
    confidence = job.settings.auto.confidence
    records: dict[str, dict[str, Any]] = {"baseline": {}}
    for name, recorded in results["auto"]["candidates"].items():
        if "val_gain" in recorded:
            gain, sd = combined_gain(recorded["val_gain"], recorded["val_gain_se"], expected[name])
            records[name] = bounded({**recorded, "expected": list(expected[name]), "gain": gain, "gain_sd": sd},
                                    confidence)
    return results["auto"]["chosen"], decide(records, confidence)[0], records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", nargs="+", help="studies of the catalogue, each finished in <studies>/<cell>")
    parser.add_argument("--studies", type=Path, default=Path("studies"))
    parser.add_argument("--loo", type=Path, required=True, help="one calibration per cell: <loo>/<cell>.yaml")
    args = parser.parse_args()
    missing = [str(args.loo / f"{cell}.yaml") for cell in args.cells if not (args.loo / f"{cell}.yaml").is_file()]
    if missing:  # before any work
        raise ConfigError(f"no calibration {', '.join(missing)}: python -m sdnn.study payoff ... --loo {args.loo} "
                          "writes one per study")
    quiet()
    changed, total = [], 0
    for cell in args.cells:
        folder = args.studies / cell
        for path in sorted((folder / FOLDER).glob("seed*/results.json")):
            seed = int(path.parent.name.removeprefix("seed"))
            recorded, choice, _ = replay(load_study(cell), folder, seed, args.loo / f"{cell}.yaml")
            total += 1
            print(f"{cell} seed {seed}: recorded {recorded}, replayed {choice}", flush=True)
            if choice != recorded:
                changed.append(f"{cell} seed {seed}")
    print(f"{len(changed)} of {total} choices change: {', '.join(changed) or 'none'}")


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, OSError, KeyError, ValueError) as exc:  # a study not finished, a missing calibration
        raise SystemExit(f"error: {exc}") from None
