"""The real loggers: W&B in offline mode (no account, no network), TensorBoard, CSV."""

from __future__ import annotations

import csv
import json

import pytest


def test_wandb_offline_has_theta_per_class_accuracy_figures_table_and_artifacts(run_pipeline, tmp_path, monkeypatch):
    """One W&B run per phase plus a summary run, all in one group (offline files, no account)."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    results = run_pipeline(["logger=wandb", "model=mlp", "phase1.epochs=2"], run_dir=tmp_path / "w")
    import wandb

    wandb.teardown()  # W&B's service writes the run files after finish() returns; teardown waits for it
    found = {folder: next(folder.glob("run-*.wandb")).read_bytes()
             for folder in (tmp_path / "w" / "wandb").glob("offline-run-*")}
    names = {folder: [n for n in ("phase1", "phase2", "summary") if f"w/{n}".encode() in record]
             for folder, record in found.items()}
    assert sorted(map(tuple, names.values())) == [("phase1",), ("phase2",), ("summary",)]  # each run named once
    runs = sorted(found, key=lambda folder: names[folder][0])  # phase1, phase2, summary
    records = [found[folder] for folder in runs]
    phase1, phase2, summary = records
    for i in range(10):
        assert f"theta/{i}".encode() in phase1 and f"epoch_test/acc_class_{i}".encode() in phase1
    assert b"epoch_test/acc_class_0" in phase2 and b"theta/0" not in phase2
    group = str(tmp_path / "w").encode()  # not a sweep: the run folder is the group
    assert [group in r for r in records] == [True] * 3, [len(r) for r in records]
    media = {p.name.rsplit("_", 2)[0] for p in (runs[2] / "files" / "media" / "images" / "figures").glob("*.png")}
    assert media == {"fig1_neglect_and_accuracy", "fig2_gradient_norms", "neglect_vs_error", "test_accuracy_per_class"}
    table = json.loads(next((runs[2] / "files" / "media" / "table").glob("subclasses_*.table.json")).read_text())
    assert [row[0] for row in table["data"]] == results["selected_classes"]
    assert table["columns"][:2] == ["class", "name"]
    assert b"subclass-map" in summary and b"phase1-" in summary  # the two artifacts


def test_csv_logger_records_theta_per_window(run_pipeline, tmp_path):
    run_pipeline(["logger=csv", "model=mlp", "phase1.epochs=2"], run_dir=tmp_path / "c")
    rows = list(csv.DictReader(open(tmp_path / "c" / "phase1" / "version_0" / "metrics.csv")))
    windows = [r for r in rows if r.get("theta/0")]
    assert len(windows) == 2 and all(float(r["theta/0"]) >= 1 for r in windows)


def test_tensorboard_logger(run_pipeline, tmp_path):
    run_pipeline(["logger=tensorboard", "model=mlp", "method=baseline"], run_dir=tmp_path / "t")
    assert list((tmp_path / "t" / "baseline").rglob("events.out.tfevents.*"))


def test_wandb_is_not_given_the_anonymous_setting_it_warns_about(tmp_path):
    """Lightning's WandbLogger passes anonymous=None, which W&B answers with "The anonymous setting has no effect"."""
    pytest.importorskip("wandb")
    from sdnn.build import instantiate_group
    from sdnn.lit.loggers import LoggerFactory

    make = instantiate_group("logger", {"_target_": "pytorch_lightning.loggers.WandbLogger", "project": "sdnn"},
                             keep_name=True, _partial_=True)
    logger = LoggerFactory(make, tmp_path, {}).make("phase1")  # no W&B run starts before the first log
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["job_type"] == "phase1"


def test_auto_candidates_and_folds_log_in_the_auto_runs_group_named_by_their_path(tmp_path):
    """An auto run's candidates (``<run>/auto/<name>``) and its folds' (``<run>/auto/fold-<j>/<name>``) are W&B runs of
    the auto run's group, each named by its path from the run, so that fold 2's sdnn-k3 is not fold 1's."""
    pytest.importorskip("wandb")
    from sdnn.build import instantiate_group
    from sdnn.lit.loggers import LoggerFactory

    make = instantiate_group("logger", {"_target_": "pytorch_lightning.loggers.WandbLogger", "project": "sdnn"},
                             keep_name=True, _partial_=True)
    run = tmp_path / "12-00-00"
    top = LoggerFactory(make, run, {})
    fold = top.child(run / "auto" / "fold-2")
    inits = {name: factory.make("phase2")._wandb_init for name, factory in
             (("run", top), ("candidate", top.child(run / "auto" / "sdnn-k3")),
              ("fold candidate", fold.child(run / "auto" / "fold-2" / "sdnn-k3")))}
    assert inits["run"]["name"] == "12-00-00/phase2" and inits["run"]["group"] == str(run)
    assert inits["candidate"]["name"] == "12-00-00/auto/sdnn-k3/phase2"
    assert inits["fold candidate"]["name"] == "12-00-00/auto/fold-2/sdnn-k3/phase2"
    assert {init["group"] for init in inits.values()} == {str(run)}
    assert fold.child(run / "auto" / "fold-2" / "sdnn-k3").run_dir == run / "auto" / "fold-2" / "sdnn-k3"
