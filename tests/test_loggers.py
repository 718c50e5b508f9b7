"""The real loggers: W&B in offline mode (no account, no network), TensorBoard, CSV."""

from __future__ import annotations

import csv

import pytest


def test_wandb_offline_writes_one_run_per_phase(run_pipeline, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_pipeline(["logger=wandb", "model=mlp"], run_dir=tmp_path / "w")
    runs = sorted((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(list(r.glob("run-*.wandb")) for r in runs)


def test_csv_logger_records_theta_per_window(run_pipeline, tmp_path):
    run_pipeline(["logger=csv", "model=mlp", "phase1.epochs=2"], run_dir=tmp_path / "c")
    rows = list(csv.DictReader(open(tmp_path / "c" / "phase1" / "version_0" / "metrics.csv")))
    windows = [r for r in rows if r.get("theta/0")]
    assert len(windows) == 2 and all(float(r["theta/0"]) >= 1 for r in windows)


def test_tensorboard_logger(run_pipeline, tmp_path):
    run_pipeline(["logger=tensorboard", "model=mlp", "method=baseline"], run_dir=tmp_path / "t")
    assert list((tmp_path / "t" / "baseline").rglob("events.out.tfevents.*"))
