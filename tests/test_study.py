"""python -m sdnn.study: the paired comparison against loops written here, and a tiny study run
end to end (then continued without re-running what it has)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from sdnn.errors import ConfigError
from sdnn.catalogue import load_study
from sdnn.study import QUIET, compare, main, run_study
from tests.conftest import QUICK_GUARD, ROOT, RUN_GUARD, compose_config, read_results, write_npz


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
    text = (out / "study.md").read_text()
    assert "| main |" in text
    # the header says what ran: the extra overrides, not the study's own schedule (5 + 30 epochs)
    assert report["settings"]["phase1_epochs"] == 1 and report["settings"]["epochs"] == 1
    assert "phase 1 for 1 epoch, the baseline and phase 2 for 1 epoch;" in text and "30 epochs" not in text
    assert "`digits`, 10 classes" in text and "augmenter `sample_pairing`" in text  # augmenter=auto, resolved
    assert report["command"].endswith("--variants main --out " + str(out) + " -- trainer.max_epochs=1 phase1.epochs=1")
    stamp = (runs / "baseline" / "seed0" / "results.json").stat().st_mtime_ns
    code = main(["digits", "--seeds", "0", "--variants", "main", "k=1", "--out", str(out), "--", *fast])
    assert code == 0
    assert (runs / "baseline" / "seed0" / "results.json").stat().st_mtime_ns == stamp  # not run again
    saved = json.loads((out / "study.json").read_text())
    assert set(saved["variants"]) == {"main", "k=1"} and saved["variants"]["k=1"]["seeds"] == [0]
    assert len(saved["variants"]["k=1"]["selected"]["0"]) == 1  # subclass.num_classes_to_repartition=1
    assert "| k=1 |" in capsys.readouterr().out


def test_unknown_variant_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown variant.*'nope'.* of study digits; available: main, k=1"):
        run_study("digits", tmp_path, seeds=[0], variants=["nope"])


# ----------------------------------------------------------------------------- --on: any data a run accepts

def _study_cli(args, cwd, timeout=QUICK_GUARD, env=None):
    return subprocess.run([sys.executable, "-m", "sdnn.study", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore",
                                                **(env or {})})


def test_on_npz_end_to_end_with_its_controls_and_what_ran(tmp_path):
    data = write_npz(tmp_path / "features.npz", "vectors", n_train=120, n_test=60, classes=3)
    on = ["dataset=npz", f"dataset.path={data}", "model=lr", "dataset.val_fraction=0.2", "phase1.epochs=1",
          "trainer.max_epochs=2", "subclass.num_classes_to_repartition=1"]
    out = tmp_path / "study"
    proc = _study_cli(["--on", *on, "--seeds", "0", "1", "--out", str(out)], cwd=tmp_path, timeout=RUN_GUARD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "study.json").read_text())
    # the default variants: SDNN and its two controls, each against the baseline of the same seed
    assert list(report["variants"]) == ["main", "partitioner=random", "reweight"]
    runs = out / "runs"
    for variant, folder, method in (("main", "sdnn-main", "sdnn"), ("partitioner=random", "sdnn-partitioner_random",
                                                                     "sdnn"), ("reweight", "reweight-reweight",
                                                                               "reweight")):
        base = [read_results(runs / "baseline" / f"seed{s}") for s in (0, 1)]
        ours = [read_results(runs / folder / f"seed{s}") for s in (0, 1)]
        assert [r["method"] for r in base] == ["baseline"] * 2 and [r["method"] for r in ours] == [method] * 2
        assert [r["seed"] for r in ours] == [0, 1] and ours[0]["dataset"] == "npz" and ours[0]["model"] == "lr"
        got = report["variants"][variant]
        diffs = [o["test"]["acc"] - b["test"]["acc"] for o, b in zip(ours, base)]
        assert got["test"]["diff_per_seed"] == pytest.approx(diffs)
        assert got["test"]["diff"][0] == pytest.approx(sum(diffs) / 2)
        assert got["test"]["baseline"][0] == pytest.approx((base[0]["test"]["acc"] + base[1]["test"]["acc"]) / 2)
        assert got["val"]["diff_per_seed"] == pytest.approx([o["val"]["acc"] - b["val"]["acc"]
                                                             for o, b in zip(ours, base)])
        assert got["test"]["wins"] == sum(d > 0 for d in diffs) and got["method"] == method
    # the header: the settings the baseline of seed 0 ran with, as composed (checked against Hydra here)
    cfg = compose_config(on)
    settings = report["settings"]
    assert settings["seed"] == 0 and settings["dataset"] == "npz" and settings["model"] == "lr"
    assert settings["train_samples"] == 120 - round(0.2 * 120) and settings["num_classes"] == 3
    assert settings["val_fraction"] == 0.2 and settings["batch_size"] == cfg.dataset.batch_size
    assert settings["phase1_epochs"] == 1 and settings["epochs"] == 2 and settings["lr"] == cfg.optim.lr
    assert settings["partitioner"] == "kmeans" and settings["augmenter"] == cfg.augmenter.name
    assert settings["num_classes_to_repartition"] == 1 and settings["optimizer"] == "SGD"
    assert report["seeds"] == [0, 1] and report["command"].startswith("python -m sdnn.study --on dataset=npz")
    text = (out / "study.md").read_text()
    assert "# Study `on-dataset_npz-dataset.path_" in text
    assert "- data: `npz`, 3 classes (0, 1, 2), 96 training samples, 20% of the training set held out" in text
    assert "- model: `lr`, loss `bce`" in text and "phase 1 for 1 epoch, the baseline and phase 2 for 2 epochs" in text
    assert "k = 1 classes selected by θ" in text and "- seeds: 0, 1" in text
    assert "30 epochs" not in text and "SamplePairing" not in text
    # the regime map reads this study and one written before study.json had its header
    old = tmp_path / "old_study"
    old.mkdir()
    earlier = {k: v for k, v in report.items() if k not in ("settings", "seeds", "command")}
    (old / "study.json").write_text(json.dumps({**earlier, "study": "older", "regime": "an older cell"}))
    assert main(["map", str(out), str(old), "--out", str(tmp_path / "map")]) == 0
    table = (tmp_path / "map" / "map.md").read_text()
    assert "| `older` | an older cell |" in table and f"| `{report['study']}` |" in table


@pytest.mark.parametrize("args, env, words", [
    (["nope"], {}, "unknown study 'nope'; available: cifar10, "),
    (["digits", "--variants", "main", "nope"], {}, "unknown variant(s) ['nope'] of study digits; available: main"),
    (["--on", "model=nope"], {}, "model=nope is not an option; choose one of: cnn"),
    (["--on", "dataset=npz"], {}, "dataset=npz needs a file"),
    (["digits", "--", "optim.lr=0"], {}, "optim.lr=0.0 must be a positive number"),
    (["digits", "--variants", "main", "k=1", "--", "subclass.per_class=1"], {}, "subclass.per_class=1"),
    (["cifar10_lr"], {"SDNN_CIFAR10_JPEG": "missing/cifar10-jpeg.tar.gz"},
     "SDNN_CIFAR10_JPEG=missing/cifar10-jpeg.tar.gz: no such file; set SDNN_CIFAR10_JPEG="),
    ([], {}, "give a study name (--list shows them) or --on <overrides>"),
])
def test_bad_input_is_one_line_before_any_run(tmp_path, args, env, words):
    out = tmp_path / "study"
    cut = args.index("--") if "--" in args else len(args)
    proc = _study_cli([*args[:cut], "--out", str(out), *args[cut:]], cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0 and words in proc.stderr
    assert not out.exists()  # nothing trained, nothing written


def test_a_finished_run_of_other_settings_is_not_reused(tmp_path):
    out = tmp_path / "study"
    run_dir = out / "runs" / "baseline" / "seed0"
    run_dir.mkdir(parents=True)
    cfg = compose_config([*load_study("digits_lr").base, *QUIET, f"phase1.cache_dir={out / 'cache'}",
                          "method=baseline", "seed=0", "trainer.max_epochs=7"])  # the study's run, but 7 epochs
    (run_dir / "results.json").write_text(json.dumps({"config": OmegaConf.to_container(cfg, resolve=True)}))
    with pytest.raises(ConfigError, match=r"runs/baseline/seed0 holds a finished run of other settings "
                                          r"\(trainer.max_epochs=7 there, 30 now\); give the study another"):
        run_study("digits_lr", out, seeds=[0], variants=["main"])
    assert not (out / "runs" / "sdnn-main").exists()


def test_a_finished_run_without_a_key_the_study_sets_is_not_reused(tmp_path):
    """A key the finished run's configuration lacked (an older release) is its default, unless the study sets it:
    then the run ran without that setting, and is not reused."""
    from sdnn.study import check_finished

    run_dir = tmp_path / "seed0"
    run_dir.mkdir()
    cfg = compose_config([*load_study("digits_lr").base, *QUIET, "method=auto", "seed=0", "dataset.val_fraction=0.15"])
    older = OmegaConf.to_container(cfg, resolve=True)
    del older["auto"]["calibration"], older["auto"]["prior"]          # a release before these keys
    (run_dir / "results.json").write_text(json.dumps({"config": older}))
    check_finished(cfg, run_dir, ["method=auto"])                       # the defaults: the same run
    cfg.auto.calibration = str(tmp_path / "loo.yaml")
    with pytest.raises(ConfigError, match=r"auto.calibration=\(unset\) there, .*loo.yaml now"):
        check_finished(cfg, run_dir, ["method=auto", f"auto.calibration={tmp_path / 'loo.yaml'}"])
