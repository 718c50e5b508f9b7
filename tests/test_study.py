"""python -m sdnn.study: the paired comparison against loops written here, and a tiny study run
end to end (then continued without re-running what it has)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from sdnn.study import compare, main, run_study


def fake_results(rng, c=6, selected=None):
    per_class = rng.uniform(0.5, 1.0, size=c)
    out = {"test": {"acc": float(per_class.mean()), "per_class_acc": per_class.tolist()},
           "val": {"acc": float(rng.uniform(0.5, 1.0))}}
    if selected is not None:
        out["selected_classes"] = selected
        theta = rng.uniform(1, 5, size=c)
        theta[rng.integers(c)] = np.nan
        out["theta"] = [None if np.isnan(t) else float(t) for t in theta]
    return out


def test_compare_equals_a_loop_over_seeds_and_classes():
    rng = np.random.default_rng(0)
    base = {s: fake_results(rng) for s in (0, 1, 2)}
    ours = {s: fake_results(rng, selected=[1, 4] if s else [2]) for s in (0, 1, 2, 7)}  # seed 7 has no baseline
    got = compare(base, ours)
    assert got["seeds"] == [0, 1, 2]
    diffs = []
    for s in (0, 1, 2):
        diffs.append(ours[s]["test"]["acc"] - base[s]["test"]["acc"])
    assert got["test"]["diff_per_seed"] == pytest.approx(diffs)
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert got["test"]["diff"] == pytest.approx((mean, std))
    assert got["test"]["wins"] == sum(d > 0 for d in diffs)
    selected, others, rhos = [], [], []
    for s in (0, 1, 2):
        chosen = ours[s]["selected_classes"]
        change = [ours[s]["test"]["per_class_acc"][i] - base[s]["test"]["per_class_acc"][i] for i in range(6)]
        selected.append(sum(change[i] for i in chosen) / len(chosen))
        others.append(sum(change[i] for i in range(6) if i not in chosen) / (6 - len(chosen)))
        pairs = [(t, 1 - base[s]["test"]["per_class_acc"][i]) for i, t in enumerate(ours[s]["theta"]) if t is not None]
        rhos.append(spearmanr(*zip(*pairs)).statistic)
    assert got["selected_change"][0] == pytest.approx(sum(selected) / 3)
    assert got["other_change"][0] == pytest.approx(sum(others) / 3)
    assert got["spearman_theta_vs_baseline_error"]["per_seed"] == pytest.approx(rhos)
    assert got["val"]["diff_per_seed"] == pytest.approx([ours[s]["val"]["acc"] - base[s]["val"]["acc"]
                                                         for s in (0, 1, 2)])


def test_tiny_study_end_to_end_and_continued(tmp_path, capsys):
    out = tmp_path / "study"
    fast = ["trainer.max_epochs=1", "phase1.epochs=1"]
    report = run_study("digits", out, seeds=[0, 1], variants=["main"], extra=fast)
    runs = out / "runs"
    for seed in (0, 1):
        base = json.loads((runs / "baseline" / f"seed{seed}" / "results.json").read_text())
        ours = json.loads((runs / "sdnn-main" / f"seed{seed}" / "results.json").read_text())
        assert base["method"] == "baseline" and ours["method"] == "sdnn" and ours["seed"] == seed
        assert report["variants"]["main"]["test"]["diff_per_seed"][seed] == pytest.approx(
            ours["test"]["acc"] - base["test"]["acc"])
        assert base["val"]["acc"] is not None  # the study holds out a validation split
    assert (out / "study.md").is_file() and (out / "study.png").stat().st_size > 0
    assert "| main |" in (out / "study.md").read_text()
    stamp = (runs / "baseline" / "seed0" / "results.json").stat().st_mtime_ns
    code = main(["digits", "--seeds", "0", "--variants", "main", "k=1", "--out", str(out), "--", *fast])
    assert code == 0
    assert (runs / "baseline" / "seed0" / "results.json").stat().st_mtime_ns == stamp  # not run again
    saved = json.loads((out / "study.json").read_text())
    assert set(saved["variants"]) == {"main", "k=1"} and saved["variants"]["k=1"]["seeds"] == [0]
    assert len(saved["variants"]["k=1"]["selected"]["0"]) == 1  # subclass.num_classes_to_repartition=1
    assert "| k=1 |" in capsys.readouterr().out


def test_unknown_variant_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown variant.*available: main"):
        run_study("digits", tmp_path, seeds=[0], variants=["nope"])
