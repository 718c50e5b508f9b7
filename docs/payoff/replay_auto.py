"""Replay method=auto's choices on finished study folders with other calibration lines (docs/reproduction.md,
"What method=auto did"): each auto run's configuration is rebuilt from its results.json, phase 1 comes from the
study's cache, each candidate's expectation is computed anew (the current indicators, the given lines), and the
guard is applied to the recorded validation results, which do not depend on the lines (auto.skip_hopeless=false).

    python docs/payoff/replay_auto.py --studies studies --loo studies/loo merged_digits_lr digits_lr ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from statistics import NormalDist

from omegaconf import OmegaConf

from sdnn.auto import candidates_of, combined_gain, decide, expectations
from sdnn.build import build_job
from sdnn.pipeline import run_phase1
from sdnn.runlog import quiet
from sdnn.verdict import load_calibration


def replay(results: dict, calibration: Path) -> tuple[str, dict[str, dict]]:
    """The guard's choice (``sdnn.auto.decide``) from ``results``' recorded validation gains and expectations
    computed anew, and each candidate's record (``gain``, ``gain_sd``, ``lower``: fractions)."""
    auto = results["auto"]
    job = build_job(OmegaConf.create(results["config"]), Path(tempfile.mkdtemp()))
    expected, _ = expectations(job, run_phase1(job), candidates_of(job), load_calibration(calibration))
    z = NormalDist().inv_cdf(job.settings.auto.confidence)
    records = {"baseline": {}}
    for name, recorded in auto["candidates"].items():
        if "val_gain" in recorded:
            gain, sd = combined_gain(recorded["val_gain"], recorded["val_gain_se"], expected[name])
            records[name] = {**recorded, "expected": list(expected[name]), "gain": gain, "gain_sd": sd,
                             "lower": gain - z * sd}
    return decide(records, job.settings.auto.confidence)[0], records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", nargs="+")
    parser.add_argument("--studies", type=Path, default=Path("studies"))
    parser.add_argument("--loo", type=Path, required=True, help="one calibration per cell: <loo>/<cell>.yaml")
    args = parser.parse_args()
    quiet()
    changed, total = [], 0
    for cell in args.cells:
        for path in sorted((args.studies / cell / "runs" / "auto-auto").glob("seed*/results.json")):
            results = json.loads(path.read_text())
            choice, total = replay(results, args.loo / f"{cell}.yaml")[0], total + 1
            print(f"{cell} {path.parent.name}: recorded {results['auto']['chosen']}, replayed {choice}", flush=True)
            if choice != results["auto"]["chosen"]:
                changed.append(f"{cell} {path.parent.name}")
    print(f"{len(changed)} of {total} choices change: {', '.join(changed) or 'none'}")


if __name__ == "__main__":
    main()
