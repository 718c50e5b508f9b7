"""python -m sdnn.advise (sdnn/advise.py), the verdict (sdnn/verdict.py) and the payoff validation (sdnn/payoff.py):
the lines and the rules against references written here, the CLI end to end on hand-made data whose answer is
known, phase 1 taken from the cache, determinism, and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sdnn.errors import ConfigError
from sdnn.verdict import Calibration, Line, judge, leave_one_out, load_calibration
from tests.conftest import QUICK_GUARD, ROOT, RUN_GUARD
from tests.test_auto import write_blobs

SHORT = ["phase1.epochs=3", "trainer.max_epochs=8", "optim.lr=0.1", "scheduler.milestones=[6]",
         "dataset.batch_size=64", "model=lr", "logger=none", "trainer.enable_progress_bar=false"]


def advise_cli(args: list[str], timeout: float = RUN_GUARD) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "sdnn.advise", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


# ----------------------------------------------------------------------------------------------- the verdict

def test_a_line_is_least_squares_with_its_residual_spread():
    x, y = [0.0, 1.0, 2.0, 3.0, 5.0], [0.1, 1.9, 4.2, 5.8, 10.1]
    line = Line.fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    residual = np.asarray(y) - (intercept + slope * np.asarray(x))
    assert (line.slope, line.intercept) == pytest.approx((slope, intercept))
    assert line.residual_sd == pytest.approx(np.sqrt((residual ** 2).sum() / 3)) and line.cells == 5
    low, mid, high = line.interval(2.0, 0.5)
    spread = 1.2816 * np.sqrt(line.residual_sd ** 2 + (slope * 0.5) ** 2)
    assert (low, mid, high) == pytest.approx((intercept + 2 * slope - spread, intercept + 2 * slope,
                                             intercept + 2 * slope + spread))
    with pytest.raises(ValueError):
        Line.fit([1.0, 2.0], [1.0, 2.0])
    level = Line.fit([0.0, 0.0, 0.0], [1.0, 2.0, 4.0])  # probes that do not vary: the mean, with its spread
    assert (level.slope, level.intercept) == (0.0, pytest.approx(7 / 3))


def test_leave_one_out_never_uses_the_cell_it_predicts():
    probes = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0, "e": 4.0}
    deltas = {"a": 0.2, "b": 1.1, "c": 2.3, "d": 2.8, "e": 4.4}
    lines = leave_one_out(probes, deltas)
    moved = leave_one_out(probes, {**deltas, "c": 100.0})
    assert moved["c"] == lines["c"]  # c's own measurement never informs c's line
    assert moved["a"] != lines["a"]
    others = [n for n in probes if n != "c"]
    assert lines["c"] == Line.fit([probes[n] for n in others], [deltas[n] for n in others])


def test_the_recommendation_needs_an_interval_above_zero():
    calibration = Calibration({"sdnn": Line(0.0, 1.0, 0.5, 8), "reweight": Line(0.0, 1.0, 0.5, 8)})
    assert judge(calibration, 3.0, 0.2, 0.0, 0.2).recommendation == "sdnn"
    assert judge(calibration, 0.3, 0.2, 0.1, 0.2).recommendation == "baseline"   # 0 inside both intervals
    assert judge(calibration, 1.0, 0.2, 3.0, 0.2).recommendation == "reweight"
    assert judge(calibration, 2.0, 0.2, 3.0, 0.2).recommendation == "reweight"  # both pay: the larger mid
    none = judge(calibration, 3.0, 0.2, None, None)
    assert none.recommendation == "sdnn" and none.notes and none.expected["reweight"][1] == 0.0


def test_the_shipped_calibration_loads_and_a_broken_one_is_one_line(tmp_path):
    shipped = load_calibration()
    assert set(shipped.lines) == {"sdnn", "reweight"} and all(v.cells >= 3 for v in shipped.lines.values())
    for text in ("lines: {sdnn: {intercept: 0}}\n", "- a list\n", "lines:\n  sdnn: {intercept: .nan, slope: 1, "
                 "residual_sd: 1, cells: 3}\n  reweight: {intercept: 0, slope: 1, residual_sd: 1, cells: 3}\n",
                 "source: !!python/object/apply:os.system ['touch x']\n"):
        path = tmp_path / "calibration.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_calibration(path)
        assert "\n" not in str(err.value) and "calibration" in str(err.value)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------- the payoff

def _write_cell(folder, name, probes, sdnn, reweight, auto=None):
    """A finished study folder as sdnn.study writes it: study.json and advice per seed (points → fractions)."""
    seeds = list(range(len(sdnn)))
    variants = {"main": {"method": "sdnn", "overrides": [], "seeds": seeds,
                         "test": {"diff_per_seed": [d / 100 for d in sdnn]},
                         "seconds": {"baseline": [10.0] * len(seeds), "variant": [8.0] * len(seeds)}},
                "reweight": {"method": "reweight", "overrides": [], "seeds": seeds,
                             "test": {"diff_per_seed": [d / 100 for d in reweight]}}}
    if auto is not None:
        variants["auto"] = {"method": "auto", "overrides": [], "seeds": seeds,
                            "test": {"diff_per_seed": [d / 100 for d in auto]},
                            "auto": {str(s): {"chosen": "sdnn-k2", "seconds": 50.0} for s in seeds}}
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({"study": name, "regime": name, "variants": variants,
                                                   "settings": {"num_classes_to_repartition": 2}}))
    for seed, probe in zip(seeds, probes):
        advice = folder / "advice" / f"seed{seed}"
        advice.mkdir(parents=True)
        (advice / "advice.json").write_text(json.dumps({"probe": {"delta": probe, "delta_se": 0.3,
                                                                  "reweight": 0.0, "reweight_se": 0.3},
                                                        "per_class": {"0": {"gap": 0.01 * probe, "stability": 0.9}},
                                                        "seconds_after_phase1": 1.0, "phase1": {"seconds": 2.0}}))
    return folder


def test_the_payoff_table_from_study_folders_and_the_calibration_it_writes(tmp_path):
    """Cells on a known line (Δ = 1.5 × probe − 0.2, plus scatter): each held-out prediction lands near it."""
    rng = np.random.default_rng(0)
    folders = []
    for i, probe in enumerate([0.0, 0.5, 1.0, 2.0, 3.0, -1.0]):
        truth = 1.5 * probe - 0.2
        sdnn = list(truth + 0.1 * rng.standard_normal(3))
        folders.append(_write_cell(tmp_path / f"cell{i}", f"cell{i}", [probe] * 3, sdnn, [0.1, -0.1, 0.0],
                                   auto=[max(truth, 0.0)] * 3))
    calibration = tmp_path / "calibration.yaml"
    proc = subprocess.run([sys.executable, "-m", "sdnn.study", "payoff", *map(str, folders), "--out",
                           str(tmp_path / "out"), "--calibration", str(calibration), "--loo", str(tmp_path / "loo")],
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=QUICK_GUARD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payoff = json.loads((tmp_path / "out" / "payoff.json").read_text())
    rows = {r["cell"]: r for r in payoff["rows"]}
    for i, probe in enumerate([0.0, 0.5, 1.0, 2.0, 3.0, -1.0]):
        assert rows[f"cell{i}"]["sdnn"]["predicted"][1] == pytest.approx(1.5 * probe - 0.2, abs=0.4)
    assert rows["cell4"]["recommendation"] == "sdnn" and rows["cell5"]["recommendation"] == "baseline"
    assert payoff["summary"]["sdnn_sign_right"] == payoff["summary"]["sdnn_clear_cells"]
    assert payoff["summary"]["auto_never_worse"] == 6 and rows["cell4"]["auto"]["cost"] == pytest.approx(5.0)
    # the best of auto's candidates as the study ran them, in auto's names: main is SDNN at the study's k = 2
    assert rows["cell4"]["auto"]["best_candidate"] == "sdnn-k2" and rows["cell4"]["auto"]["pays"]
    assert rows["cell5"]["auto"]["best_candidate"] == "baseline" and rows["cell5"]["auto"]["share_of_best"] is None
    assert (tmp_path / "out" / "payoff.png").stat().st_size > 10_000
    assert "| `cell3` |" in (tmp_path / "out" / "payoff.md").read_text()
    assert payoff["indicators"]["probe"]["spearman"] > 0.9 and payoff["indicators"]["gap"]["spearman"] > 0.9
    assert payoff["costs"][0]["share_cached"] == pytest.approx(1 / 20)  # 1 s against 10 + 8 + 2 (phase 1)
    assert payoff["costs"][0]["share_with_phase1"] == pytest.approx(3 / 20)
    written = load_calibration(calibration)
    assert written.lines["sdnn"].slope == pytest.approx(1.5, abs=0.1) and written.cells == tuple(
        f"cell{i}" for i in range(6))
    assert yaml.safe_load(calibration.read_text())["source"].startswith("python -m sdnn.study payoff")
    held = load_calibration(tmp_path / "loo" / "cell2.yaml")  # what cell2's method=auto runs use: fitted without it
    assert held.cells == tuple(f"cell{i}" for i in range(6) if i != 2)
    others = [0, 1, 3, 4, 5]
    refit = Line.fit([[0.0, 0.5, 1.0, 2.0, 3.0, -1.0][i] for i in others],
                     [rows[f"cell{i}"]["sdnn"]["measured"][0] for i in others])
    assert held.lines["sdnn"].slope == pytest.approx(refit.slope, abs=1e-5)
    assert held.lines["sdnn"].intercept == pytest.approx(refit.intercept, abs=1e-5)


def test_the_payoff_needs_advice_and_enough_cells(tmp_path):
    folder = _write_cell(tmp_path / "a", "a", [1.0], [1.0], [0.0])
    (folder / "advice" / "seed0" / "advice.json").unlink()
    from sdnn.payoff import read_cell, write_payoff

    with pytest.raises(ConfigError, match="--advise"):
        read_cell(folder)
    with pytest.raises(ConfigError, match="at least 4 cells"):
        write_payoff([_write_cell(tmp_path / f"b{i}", f"b{i}", [1.0], [1.0], [0.0]) for i in range(3)],
                     tmp_path / "out")


# ----------------------------------------------------------------------------------------------- the command

def test_advise_recommends_sdnn_where_a_class_is_two_modes_and_reuses_phase_1(tmp_path):
    data = write_blobs(tmp_path / "modes.npz", multimodal=True)
    common = ["dataset=npz", f"dataset.path={data}", *SHORT, f"phase1.cache_dir={tmp_path / 'cache'}"]
    first = advise_cli([*common, f"hydra.run.dir={tmp_path / 'a'}"])
    assert first.returncode == 0, first.stderr[-2000:]
    advice = json.loads((tmp_path / "a" / "advice.json").read_text())
    assert advice["recommendation"] == "sdnn" and advice["expected_delta"]["sdnn"][0] > 0
    assert {"recommendation", "expected_delta", "per_class", "seconds"} <= set(advice)
    assert all(len(advice["expected_delta"][m]) == 3 for m in ("sdnn", "reweight"))
    assert advice["per_class"]["0"]["gap"] > 0.2 and advice["probe"]["delta"] > 10
    assert "advice: sdnn" in first.stdout and "cost:" in first.stdout and "phase 1 included" in first.stdout
    second = advise_cli([*common, f"hydra.run.dir={tmp_path / 'b'}"])
    assert second.returncode == 0 and "reusing cached θ and weights" in second.stdout
    assert "neglect scores, 3 epoch" not in second.stdout  # no second phase 1
    again = json.loads((tmp_path / "b" / "advice.json").read_text())
    drop = ("seconds", "seconds_after_phase1", "phase1", "cost_share", "runs_estimate_seconds")
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in advice.items() if k not in drop}
    assert again["phase1"]["cached"] and not advice["phase1"]["cached"]


def test_advise_counts_phase_1_in_its_cost_only_when_it_trained_it():
    """``seconds`` (advice.json) is advise's own work, plus phase 1's training when this call trained it."""
    from types import SimpleNamespace

    from sdnn.advise import Advice

    def cost(cached: bool) -> float:
        return Advice.total_seconds.fget(SimpleNamespace(seconds=0.5, phase1=SimpleNamespace(cached=cached,
                                                                                              seconds=7.0)))

    assert (cost(cached=True), cost(cached=False)) == (0.5, 7.5)


def test_advise_recommends_the_baseline_for_one_mode_a_class(tmp_path):
    data = write_blobs(tmp_path / "blobs.npz", multimodal=False)
    proc = advise_cli(["dataset=npz", f"dataset.path={data}", *SHORT, f"phase1.cache_dir={tmp_path / 'cache'}",
                       f"hydra.run.dir={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    advice = json.loads((tmp_path / "a" / "advice.json").read_text())
    assert advice["recommendation"] == "baseline" and abs(advice["probe"]["delta"]) < 2


def test_advise_on_wide_inputs_sketches_the_probe_and_still_sees_the_modes(tmp_path):
    """600 features: the probe's heads on a 512-column sketch (said in the output and advice.json), the split
    classes judged in their top principal coordinates; the two modes of class 0 are still seen."""
    data = write_blobs(tmp_path / "wide.npz", multimodal=True, width=600)
    proc = advise_cli(["dataset=npz", f"dataset.path={data}", *SHORT, f"phase1.cache_dir={tmp_path / 'cache'}",
                       f"hydra.run.dir={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    advice = json.loads((tmp_path / "a" / "advice.json").read_text())
    assert (advice["probe"]["width"], advice["probe"]["features"]) == (512, 600)
    assert "ridge heads on a 512-column Gaussian sketch of the 600 phase-1 features" in proc.stdout
    assert advice["recommendation"] == "sdnn" and advice["probe"]["delta"] > 10
    assert advice["per_class"]["0"]["gap"] > 0.1


@pytest.mark.parametrize("extra, message", [(["method=baseline"], "sdnn.advise judges SDNN's split"),
                                            (["method=class2str"], "sdnn.advise judges SDNN's split"),
                                            (["modle=lr"], "modle"),
                                            (["subclass.per_class=1"], "subclass.per_class")])
def test_advise_errors_are_one_line(tmp_path, extra, message):
    data = write_blobs(tmp_path / "blobs.npz", multimodal=False, per_class=30)
    proc = advise_cli(["dataset=npz", f"dataset.path={data}", *SHORT, f"phase1.cache_dir={tmp_path / 'cache'}",
                       f"hydra.run.dir={tmp_path / 'a'}", *extra], timeout=QUICK_GUARD)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "cache").exists()


def test_advise_on_multilabel_shards_probes_hit_at_one(tmp_path):
    """YouTube-8M's streams: phase 1 over half an epoch, Algorithm 1 on-line, the probe on the first videos."""
    from sdnn.data.yt8m_synth import write_synthetic_shards

    write_synthetic_shards(tmp_path / "yt", classes=12, train_shards=2, validate_shards=1, videos_per_shard=100, seed=1)
    proc = advise_cli(["dataset=yt8m", f"dataset.train={tmp_path}/yt/train*.tfrecord",
                       f"dataset.validate={tmp_path}/yt/validate*.tfrecord", "dataset.num_classes=12",
                       "dataset.batch_size=32", "dataset.num_workers=0", "model=lr", "optim=adam", "optim.lr=0.01",
                       "scheduler=exponential", "phase1.epochs=0.5", "subclass.num_classes_to_repartition=3",
                       "logger=none", "trainer.enable_progress_bar=false", f"phase1.cache_dir={tmp_path / 'cache'}",
                       f"hydra.run.dir={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    advice = json.loads((tmp_path / "a" / "advice.json").read_text())
    assert len(advice["selected_classes"]) == 3 and set(advice["per_class"]) == {str(c) for c in
                                                                                 advice["selected_classes"]}
    assert advice["probe"]["n"] == 200 and advice["recommendation"] in ("sdnn", "reweight", "baseline")
    assert all(-1.0 <= v["stability"] <= 1.0 for v in advice["per_class"].values())


def test_advise_refuses_the_folder_of_another_run(tmp_path):
    """advise holds its run folder as run.py does: a trained run's folder is not written over."""
    data = write_blobs(tmp_path / "blobs.npz", multimodal=False, per_class=30)
    from tests.conftest import run_cli

    common = ["dataset=npz", f"dataset.path={data}", *SHORT, f"phase1.cache_dir={tmp_path / 'cache'}",
              f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_cli([*common, "method=baseline", "checkpoint.every_n_epochs=0"]).returncode == 0
    before = (tmp_path / "run" / "results.json").read_bytes()
    proc = advise_cli(common, timeout=QUICK_GUARD)
    assert proc.returncode == 2 and "error:" in proc.stderr and "overwrite=true" in proc.stderr, proc.stderr[-2000:]
    assert (tmp_path / "run" / "results.json").read_bytes() == before and not (tmp_path / "run" / "advice.json").exists()
