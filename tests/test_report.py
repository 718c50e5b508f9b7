"""sdnn.report on a fake multirun folder: collection, mean ± std over seeds, paired Δ vs baseline, files, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdnn.report import collect_runs, format_markdown, main, summarize
from tests.conftest import QUICK_GUARD

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
BASELINE_ACC = {0: 0.801, 1: 0.815, 2: 0.797}
SDNN_ACC = {1: {0: 0.812, 1: 0.820, 2: 0.805}, 3: {0: 0.830, 1: 0.818, 2: 0.826}}  # k -> seed -> acc


def fake_results(method: str, seed: int, acc: float, k: int = 2, partitioner: str = "kmeans",
                 loss: str = "bce") -> dict:
    config = {"method": method, "seed": seed, "dataset": {"name": "digits"}, "model": {"name": "cnn"},
              "loss": {"name": loss}, "partitioner": {"name": partitioner, "space": "input"},
              "augmenter": {"name": "auto", "lam": 0.5}, "trainer": {"max_epochs": 30},
              "phase1": {"epochs": 5, "tau": None},
              "subclass": {"num_classes_to_repartition": k, "classes": None, "per_class": 2, "sibling_weight": 1.0}}
    results = {"method": method, "dataset": "digits", "model": "cnn", "seed": seed,
               "selected_classes": [] if method == "baseline" else list(range(k)),
               "theta": None, "subclass_to_class": list(range(10)),
               "test": {"acc": acc, "per_class_acc": [acc] * 10}, "train_seconds": 10.0 + seed, "config": config}
    if method == "sdnn":
        results["phase1"] = {"cached": seed > 0, "seconds": 1.0}
    return results


@pytest.fixture
def multirun(tmp_path) -> Path:
    """A Hydra multirun folder: baseline × 3 seeds, sdnn with k ∈ {1, 3} × 3 seeds; one job nested deeper."""
    root = tmp_path / "multirun" / "2026-11-25" / "10-00-00"
    runs = [("baseline", seed, BASELINE_ACC[seed], 2) for seed in SEEDS]
    runs += [("sdnn", seed, SDNN_ACC[k][seed], k) for k in SDNN_ACC for seed in SEEDS]
    for job, (method, seed, acc, k) in enumerate(runs):
        folder = root / (str(job) if job != 4 else f"nested/{job}")
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(fake_results(method, seed, acc, k)))
    return root


def by_method_and_k(summary: list[dict]) -> dict:
    return {(e["method"], e.get("num_classes_to_repartition")): e for e in summary}


def test_collect_runs(multirun):
    rows = collect_runs(multirun)
    assert len(rows) == 9
    assert [r["run_dir"] for r in rows][:4] == ["0", "1", "2", "3"] and "nested/4" in {r["run_dir"] for r in rows}
    baseline = [r for r in rows if r["method"] == "baseline"]
    assert all(r["num_classes_to_repartition"] is None and r["partitioner"] is None for r in baseline)
    sdnn = [r for r in rows if r["method"] == "sdnn"]
    assert {r["num_classes_to_repartition"] for r in sdnn} == {1, 3}
    assert all(r["partitioner"] == "kmeans" and r["augmenter"] == "auto" and r["phase1_epochs"] == 5
               and r["max_epochs"] == 30 and r["sibling_weight"] == 1.0 and r["per_class"] == 2 for r in sdnn)
    assert {r["phase1_cached"] for r in sdnn} == {True, False}
    assert {r["acc"] for r in baseline} == set(BASELINE_ACC.values())


def test_summary_means_stds_and_delta(multirun):
    summary = summarize(collect_runs(multirun))
    assert list(summary[0])[:2] == ["method", "num_classes_to_repartition"]  # the default grouping
    groups = by_method_and_k(summary)
    assert set(groups) == {("baseline", None), ("sdnn", 1), ("sdnn", 3)}
    base = np.array([BASELINE_ACC[s] for s in SEEDS])
    assert groups["baseline", None]["acc_mean"] == pytest.approx(base.mean())
    assert groups["baseline", None]["acc_std"] == pytest.approx(base.std(ddof=1))
    assert groups["baseline", None]["delta_vs_baseline"] is None
    for k in SDNN_ACC:
        acc = np.array([SDNN_ACC[k][s] for s in SEEDS])
        entry = groups["sdnn", k]
        assert entry["n"] == 3 and entry["seeds"] == list(SEEDS)
        assert entry["acc_mean"] == pytest.approx(acc.mean())
        assert entry["acc_std"] == pytest.approx(acc.std(ddof=1))
        assert entry["acc_min"] == pytest.approx(acc.min()) and entry["acc_max"] == pytest.approx(acc.max())
        assert entry["delta_vs_baseline"] == pytest.approx((acc - base).mean())
        assert entry["train_seconds_mean"] == pytest.approx(11.0)


def test_a_single_seed_has_no_std_and_an_unpaired_delta_is_none(multirun):
    rows = [r for r in collect_runs(multirun) if r["seed"] == 0 or r["method"] == "sdnn"]
    summary = summarize(rows, by=["method", "num_classes_to_repartition"])
    groups = by_method_and_k(summary)
    assert groups["baseline", None]["n"] == 1 and groups["baseline", None]["acc_std"] is None
    markdown = format_markdown(summary)
    baseline_row = next(line for line in markdown.splitlines() if line.startswith("| baseline"))
    assert f"{100 * BASELINE_ACC[0]:.2f} (n=1, no std)" in baseline_row and "±" not in baseline_row
    no_baseline = summarize([r for r in rows if r["method"] == "sdnn"], by=["method"])
    assert no_baseline[0]["delta_vs_baseline"] is None and no_baseline[0]["n"] == 3 and no_baseline[0]["runs"] == 6


def test_each_loss_is_a_row_and_a_baseline_of_another_loss_is_compared_with_the_plain_one(tmp_path):
    """``python run.py -m method=baseline loss=bce,focal,poly1 seed=0,1,2``; SDNN stays paired with its own loss."""
    acc = {"bce": BASELINE_ACC, "focal": {0: 0.811, 1: 0.809, 2: 0.803}, "poly1": {0: 0.790, 1: 0.821, 2: 0.800}}
    root = tmp_path / "multirun"
    runs = [("baseline", loss, seed, acc[loss][seed]) for loss in acc for seed in SEEDS]
    runs += [("sdnn", "bce", seed, SDNN_ACC[1][seed]) for seed in SEEDS]
    for job, (method, loss, seed, value) in enumerate(runs):
        (root / str(job)).mkdir(parents=True)
        (root / str(job) / "results.json").write_text(json.dumps(fake_results(method, seed, value, 1, loss=loss)))
    summary = summarize(collect_runs(root))
    groups = {(e["method"], e["loss"]): e for e in summary}
    assert list(summary[0])[:2] == ["method", "loss"] and len(summary) == 4
    assert groups["baseline", "bce"]["delta_vs_baseline"] is None
    base = np.array([BASELINE_ACC[s] for s in SEEDS])
    for loss in ("focal", "poly1"):
        values = np.array([acc[loss][s] for s in SEEDS])
        assert groups["baseline", loss]["acc_mean"] == pytest.approx(values.mean())
        assert groups["baseline", loss]["delta_vs_baseline"] == pytest.approx((values - base).mean())
    sdnn = np.array([SDNN_ACC[1][s] for s in SEEDS])
    assert groups["sdnn", "bce"]["delta_vs_baseline"] == pytest.approx((sdnn - base).mean())
    markdown = format_markdown(summary)
    focal = np.array([acc["focal"][s] for s in SEEDS])
    assert f"| baseline | focal | 3 | 0 1 2 | {100 * focal.mean():.2f}" in markdown
    assert f"{100 * (focal - base).mean():+.2f}" in markdown


def test_unknown_by_key(multirun):
    with pytest.raises(ValueError, match="available"):
        summarize(collect_runs(multirun), by=["method", "no_such_key"])


def test_files_written(multirun, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(multirun), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    markdown = (out / "report.md").read_text()
    assert markdown in printed
    lines = [line for line in markdown.splitlines() if line.startswith("| sdnn")]
    assert len(lines) == 2 and "| sdnn | 1 |" in markdown and "| sdnn | 3 |" in markdown
    k3 = np.array([SDNN_ACC[3][s] for s in SEEDS])
    assert f"{100 * k3.mean():.2f} ± {100 * k3.std(ddof=1):.2f}" in markdown
    with (out / "report.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3
    assert float(table[-1]["acc_mean"]) == pytest.approx(k3.mean())
    png = out / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_partial_json_is_skipped_with_a_warning(multirun, capsys):
    broken = multirun / "9" / "results.json"
    broken.parent.mkdir()
    broken.write_text('{"method": "sdnn", "dataset": "dig')
    rows = collect_runs(multirun)
    assert len(rows) == 9
    err = capsys.readouterr().err
    assert "warning" in err and str(broken) in err


def test_empty_folder_exits_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="no results.json under .*multirun folder"):
        collect_runs(tmp_path)


def test_no_numeric_sweep_means_no_plot(multirun, tmp_path):
    out = tmp_path / "report"
    main([str(multirun), "--by", "method", "--out", str(out)])
    assert (out / "report.md").exists() and (out / "report.csv").exists() and not (out / "report.png").exists()
    summary = summarize(collect_runs(multirun), by=["method"])
    assert "| sdnn | 3 | 0 1 2 |" in format_markdown(summary)


def test_cli_end_to_end(multirun):
    done = subprocess.run([sys.executable, "-m", "sdnn.report", str(multirun)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=QUICK_GUARD)
    assert done.returncode == 0, done.stderr
    assert "| method | num_classes_to_repartition |" in done.stdout and "wrote" in done.stdout
    for name in ("report.md", "report.csv", "report.png"):
        assert (multirun / name).stat().st_size > 0
    missing = subprocess.run([sys.executable, "-m", "sdnn.report", str(multirun / "0" / "nothing")], check=False,
                             cwd=ROOT, capture_output=True, text=True, timeout=QUICK_GUARD)
    assert missing.returncode != 0 and "not a folder" in missing.stderr
    empty_dir = multirun / "empty"
    empty_dir.mkdir()
    empty = subprocess.run([sys.executable, "-m", "sdnn.report", str(empty_dir)], check=False, cwd=ROOT,
                           capture_output=True, text=True, timeout=QUICK_GUARD)
    assert empty.returncode != 0 and f"no results.json under {empty_dir}" in empty.stderr
