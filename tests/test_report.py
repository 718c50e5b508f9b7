"""sdnn.report on a fake multirun folder: collection, mean ± std over seeds, paired Δ vs baseline, files, CLI."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matplotlib.collections import PathCollection
from matplotlib.image import imread

from sdnn.report import bar_values, collect_runs, format_markdown, main, summarize
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


def test_a_categorical_grouping_still_draws_report_png(multirun, tmp_path):
    out = tmp_path / "report"
    main([str(multirun), "--by", "method", "--out", str(out)])
    assert (out / "report.md").exists() and (out / "report.csv").exists()
    assert_png(out / "report.png")
    summary = summarize(collect_runs(multirun), by=["method"])
    assert "| sdnn | 3 | 0 1 2 |" in format_markdown(summary)


# ----------------------------------------------------------------- report.png for categorical sweeps (Newcomer 3)

def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def write_sweep(root: Path, runs: list[dict], val: dict | None = None) -> Path:
    """One results.json per run (``fake_results`` keywords); ``val``: job number -> validation accuracy."""
    for job, run in enumerate(runs):
        payload = fake_results(**run)
        if val and job in val:
            payload["val"] = {"acc": val[job]}
        (root / str(job)).mkdir(parents=True)
        (root / str(job) / "results.json").write_text(json.dumps(payload))
    return root


RNG = np.random.default_rng(7)
SWEEPS = {
    "method": [{"method": m, "seed": s, "acc": float(RNG.uniform(0.7, 0.9))} for m in ("baseline", "sdnn")
               for s in SEEDS],
    "loss": [{"method": "baseline", "seed": s, "acc": float(RNG.uniform(0.7, 0.9)), "loss": loss}
             for loss in ("bce", "focal", "poly1") for s in SEEDS],
    "seed_only": [{"method": "sdnn", "seed": s, "acc": float(RNG.uniform(0.7, 0.9))} for s in range(5)],
    "one_run": [{"method": "sdnn", "seed": 0, "acc": 0.8}],
}


@pytest.fixture
def drawn(monkeypatch) -> list[dict]:
    """What each figure sdnn.plots saves holds, read from its artists before it is saved and cleared."""
    import sdnn.plots as plots

    figures = []
    save = plots._save

    def keep(fig, path):
        panels = [{"ylabel": ax.get_ylabel(), "heights": [patch.get_height() for patch in ax.patches],
                   "dots": sorted(float(y) for col in ax.collections if isinstance(col, PathCollection)
                                  for _, y in col.get_offsets())}
                  for ax in fig.axes]
        figures.append({"panels": panels, "title": fig._suptitle.get_text() if fig._suptitle else "",
                        "legend": [t.get_text() for legend in fig.legends for t in legend.get_texts()]})
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def independent_bars(root: Path, keys: tuple[str, ...]) -> dict[tuple, dict[int, float]]:
    """From the results.json files alone: (method, *keys' config values) -> seed -> mean test accuracy."""
    runs: dict[tuple, dict[int, list[float]]] = {}
    for path in root.rglob("results.json"):
        payload = json.loads(path.read_text())
        group = (payload["method"], *(payload["config"][key]["name"] for key in keys))
        runs.setdefault(group, {}).setdefault(payload["seed"], []).append(payload["test"]["acc"])
    return {group: {seed: statistics.fmean(v) for seed, v in by_seed.items()} for group, by_seed in runs.items()}


@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_every_sweep_writes_report_png_and_the_bars_are_the_results(sweep, tmp_path, drawn):
    root = write_sweep(tmp_path / sweep, SWEEPS[sweep])
    keys = ("loss",) if sweep == "loss" else ()
    expected = independent_bars(root, keys)
    assert main([str(root)]) == 0
    assert_png(root / "report.png")

    rows = collect_runs(root)
    bars = bar_values(rows, summarize(rows))
    assert [tuple(b["settings"].get(k) for k in ("method", *keys)) for b in bars] == sorted(expected)
    for bar in bars:
        per_seed = expected[tuple(bar["settings"].get(k) for k in ("method", *keys))]
        acc = bar["values"]["acc"]
        assert acc["per_seed"] == pytest.approx(per_seed) and list(acc["per_seed"]) == sorted(per_seed)
        assert acc["mean"] == pytest.approx(statistics.fmean(per_seed.values()))
        assert acc["std"] == (pytest.approx(statistics.stdev(per_seed.values())) if len(per_seed) > 1 else None)
        assert "val_acc" not in bar["values"]  # no validation split in these runs
    # What the figure draws: one bar per group at the mean, one dot per seed at its value (percent).
    panel = drawn[0]["panels"][0]
    assert panel["heights"] == pytest.approx([100 * b["values"]["acc"]["mean"] for b in bars])
    assert panel["dots"] == pytest.approx(sorted(100 * v for g in expected.values() for v in g.values()))
    assert panel["ylabel"] == "test accuracy (%)" and len(drawn[0]["panels"]) == 1
    assert len(bars) == {"method": 2, "loss": 3, "seed_only": 1, "one_run": 1}[sweep]


def test_bars_with_validation_average_repeated_seeds_and_draw_a_validation_panel(tmp_path, drawn):
    runs = [{"method": m, "seed": s, "acc": float(RNG.uniform(0.7, 0.9))} for m in ("baseline", "sdnn") for s in SEEDS]
    runs.append({"method": "sdnn", "seed": 0, "acc": 0.5})  # a repeated seed: averaged with the first run
    val = {job: float(RNG.uniform(0.6, 0.8)) for job in range(len(runs)) if job != 1}  # one run without val
    root = write_sweep(tmp_path / "val", runs, val)
    main([str(root)])
    rows = collect_runs(root)
    bars = {b["method"]: b for b in bar_values(rows, summarize(rows))}
    sdnn_seed0 = statistics.fmean([runs[3]["acc"], 0.5])
    assert bars["sdnn"]["values"]["acc"]["per_seed"][0] == pytest.approx(sdnn_seed0)
    val_seeds = {"baseline": {0: val[0], 2: val[2]}, "sdnn": {0: statistics.fmean([val[3], val[6]]), 1: val[4],
                                                               2: val[5]}}
    for method, expected in val_seeds.items():
        got = bars[method]["values"]["val_acc"]
        assert got["per_seed"] == pytest.approx(expected) and got["n"] == len(expected)
        assert got["std"] == pytest.approx(statistics.stdev(expected.values()))
    test_panel, val_panel = drawn[0]["panels"]
    assert (test_panel["ylabel"], val_panel["ylabel"]) == ("test accuracy (%)", "validation accuracy (%)")
    assert val_panel["heights"] == pytest.approx([100 * statistics.fmean(val_seeds[m].values())
                                                  for m in ("baseline", "sdnn")])
    assert val_panel["dots"] == pytest.approx(sorted(100 * v for g in val_seeds.values() for v in g.values()))
    assert drawn[0]["legend"] == [f"seed {s}" for s in SEEDS]
    assert "mean ± std over seeds" in drawn[0]["title"]


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
