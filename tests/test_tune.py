"""Hyperparameter search (conf/sweep/tune.yaml, Hydra's Optuna sweeper): the objective a sweeper
reads from run.py is the validation accuracy (results.json val.acc), never a test metric; an optimising
sweeper without a validation split stops before training; a few real Optuna trials on digits (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from sdnn.results import Results
from tests.conftest import FOREIGN_LINE, QUICK_GUARD, ROOT, RUN_GUARD
from tests.test_sweeps import compose_sweep

needs_optuna = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                                  reason="hydra-optuna-sweeper (the tune extra) is not installed")
TUNED = {"subclass.num_classes_to_repartition", "subclass.per_class", "subclass.sibling_weight", "phase1.epochs",
         "optim.lr"}
FAST_SWEEP = ["trainer.max_epochs=2", "logger=none", "trainer.enable_progress_bar=false", "checkpoint.every_n_epochs=0",
              "observe.figures=false", "observe.norms_every=0"]


def _run_entry():
    spec = importlib.util.spec_from_file_location("run_entry", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_objective_is_validation_accuracy_never_test():
    objective = _run_entry().objective
    results = Results.from_json({"method": "sdnn", "dataset": "digits", "model": "cnn", "seed": 0,
                                 "test": {"acc": 0.9}, "val": {"acc": 0.75}})
    assert objective(results) == 0.75
    results.val = None
    assert objective(results) is None  # not the test accuracy


@needs_optuna
def test_tune_config_composes_the_optuna_sweeper_on_a_validation_split():
    cfg = compose_sweep("tune")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_.endswith("TPESampler") and sweeper.sampler.seed == 0
    assert set(OmegaConf.to_container(sweeper.params)) == TUNED
    assert cfg.dataset.val_fraction == 0.2 and cfg.method == "sdnn"


@needs_optuna
def test_the_sweep_comes_after_the_experiment_and_the_command_line_after_both(tmp_path):
    conf = tmp_path / "conf"  # a copy of conf/ with an experiment that holds out 30%
    shutil.copytree(ROOT / "conf", conf)
    (conf / "experiment" / "held_out.yaml").write_text("# @package _global_\ndataset:\n  val_fraction: 0.3\n")
    assert compose_sweep("tune", ["experiment=held_out"], conf=conf).dataset.val_fraction == 0.2
    given = compose_sweep("tune", ["experiment=held_out", "dataset.val_fraction=0.1", "hydra.sweeper.n_trials=5"],
                          conf=conf)
    assert given.dataset.val_fraction == 0.1 and given.hydra.sweeper.n_trials == 5


def _sweep(tmp_path, extra, timeout=RUN_GUARD):
    args = ["-m", "sweep=tune", *FAST_SWEEP, *extra,
            f"phase1.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
            "+hydra.callbacks.record._target_=tests.sweep_probe.RecordReturn"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@needs_optuna
def test_an_optimising_sweeper_without_a_validation_split_stops_before_training(tmp_path):
    proc = _sweep(tmp_path, ["dataset.val_fraction=0", "hydra.sweeper.n_trials=2"], timeout=QUICK_GUARD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hydra/sweeper=optuna" in errors[0] and "no validation split" in errors[0]
    assert "dataset.val_fraction" in errors[0]
    assert not FOREIGN_LINE.search(proc.stdout + proc.stderr)  # the sweep's opening: no alembic or optuna lines
    assert not list(tmp_path.glob("multirun/*/results.json"))


@needs_optuna
@pytest.mark.slow
def test_optuna_trials_on_digits_maximise_validation_accuracy(tmp_path):
    proc = _sweep(tmp_path, ["hydra.sweeper.n_trials=3", "phase1.epochs=1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not FOREIGN_LINE.search(proc.stdout + proc.stderr), FOREIGN_LINE.search(proc.stdout + proc.stderr)
    sweep = tmp_path / "multirun"
    trials = []
    for i in range(3):
        results = json.loads((sweep / str(i) / "results.json").read_text())
        returned = json.loads((sweep / str(i) / "returned.json").read_text())
        overrides = yaml.safe_load((sweep / str(i) / ".hydra" / "overrides.yaml").read_text())
        assert returned["status"] == "COMPLETED"
        assert returned["value"] == results["val"]["acc"]  # what Optuna was told: the validation accuracy
        assert results["config"]["dataset"]["val_fraction"] == 0.2
        assert (sweep / str(i) / "model" / "model.json").is_file()
        trials.append((results, dict(o.split("=", 1) for o in overrides)))
    tuned = [set(params) for _, params in trials]
    assert all(t >= TUNED for t in tuned) and all(p["phase1.epochs"] == "1" for _, p in trials)  # fixed on the CLI
    assert len({p["optim.lr"] for _, p in trials}) == 3  # sampled, not fixed
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [r["val"]["acc"] for r, _ in trials]
    assert best["best_value"] == max(values)
    winner = trials[values.index(max(values))][1]
    assert {k: str(v) for k, v in best["best_params"].items()} == {k: winner[k] for k in best["best_params"]}
    assert "phase1.epochs" not in best["best_params"]
