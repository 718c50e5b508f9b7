"""Sweeps and scale-out configs: conf/sweep/*.yaml, trainer=ddp|ddp_cpu, launchers, the report.

The multiruns here go through the real CLI (`python run.py -m sweep=num_classes ...`)
with a 2-value sweep over k on digits, one epoch per phase.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.conftest import QUICK_GUARD, ROOT, RUN_GUARD, compose_config, run_cli

SWEEPS = ROOT / "conf" / "sweep"
# The swept keys of each ready sweep, as the issue asks for them.
EXPECTED = {
    "num_classes": {"subclass.num_classes_to_repartition": "1,2,3,4"},
    "baseline_vs_sdnn": {"method": "baseline,sdnn", "seed": "0,1,2"},
    "partitioners": {"partitioner": "kmeans,median_split,random"},
}
FAST_SWEEP = ["phase1.epochs=1", "trainer.max_epochs=1", "logger=none", "trainer.enable_progress_bar=false"]


def compose_sweep(name: str, overrides: list[str] = (), conf: Path = ROOT / "conf"):
    """What `python run.py -m sweep=NAME` composes, the hydra node included."""
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="config", overrides=[f"sweep={name}", *overrides], return_hydra_config=True)


def jobs_of(params: dict[str, str], command_line: list[str] = ()) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches: the file's params, then the command line's (which replace them)."""
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + list(command_line))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep_config_composes_with_its_sweeper_params_and_lists_its_jobs(name):
    cfg = compose_sweep(name)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert params == EXPECTED[name]
    # The rest is the normal default config, unchanged.
    base = compose_config([])
    assert OmegaConf.to_container(cfg, resolve=False) | {"hydra": None} == \
        OmegaConf.to_container(base, resolve=False) | {"hydra": None}
    # The jobs are every combination of the swept values, and each composes (a typo in an option fails here).
    jobs = jobs_of(params)
    combinations = itertools.product(*([f"{key}={v}" for v in values.split(",")] for key, values in params.items()))
    assert sorted(map(sorted, jobs)) == sorted(map(sorted, combinations))
    for job in jobs:
        composed = compose_config([f"sweep={name}", *job])
        for key, value in (override.split("=", 1) for override in job):
            node = OmegaConf.select(composed, key)
            assert (node.name if OmegaConf.is_config(node) else str(node)) == value, (key, value)


def test_a_swept_key_on_the_command_line_replaces_the_files_values():
    params = OmegaConf.to_container(compose_sweep("baseline_vs_sdnn").hydra.sweeper.params)
    jobs = jobs_of(params, ["seed=3,4", "model=mlp"])
    assert sorted(map(sorted, jobs)) == sorted(sorted([f"method={m}", f"seed={s}", "model=mlp"])
                                               for m in ("baseline", "sdnn") for s in (3, 4))


def test_every_yaml_in_conf_sweep_is_tested():
    # tune.yaml (the Optuna sweep on validation accuracy): tests/test_tune.py
    assert {p.stem for p in SWEEPS.glob("*.yaml")} == set(EXPECTED) | {"tune"}


@pytest.mark.parametrize("args, fragment", [
    (["sweep=num_classes"], "sweep=num_classes sets the values of a sweep (several runs): add -m"),
    (["-m", "sweep=num_classes,partitioners"], "sweep takes one option per command"),
    (["-m", "--config-dir", "multirun_sweeps", "--config-name", "num_classes"],  # the earlier spelling
     "python run.py -m sweep=<baseline_vs_sdnn|num_classes|partitioners|tune>"),
])
def test_a_sweep_without_multirun_a_list_of_sweeps_or_the_old_spelling_stops_before_training(tmp_path, args, fragment):
    proc = run_cli([*args, *FAST_SWEEP, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
                    f"phase1.cache_dir={tmp_path / 'cache'}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("results.json")) and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("option, accelerator, devices", [("ddp", "gpu", -1), ("ddp_cpu", "cpu", 2)])
def test_ddp_trainer_configs_extend_default(option, accelerator, devices):
    default = OmegaConf.to_container(compose_config([]).trainer)
    trainer = OmegaConf.to_container(compose_config([f"trainer={option}"]).trainer)
    assert (trainer["accelerator"], trainer["devices"], trainer["strategy"], trainer["num_nodes"]) == \
        (accelerator, devices, "ddp", 1)
    assert "defaults" not in trainer
    for key, value in default.items():  # every key of default.yaml, same value unless changed here
        assert key in trainer
        if key not in ("accelerator", "devices"):
            assert trainer[key] == value, key
    # Overrides and experiments still apply on top.
    cfg = compose_config([f"trainer={option}", "trainer.devices=4", "experiment=paper/cifar10_wrn"])
    assert cfg.trainer.devices == 4 and cfg.trainer.max_epochs == 200 and cfg.trainer.strategy == "ddp"


def _run_sweep(base: Path, extra: list[str] = (), timeout: float = RUN_GUARD) -> subprocess.CompletedProcess:
    """The documented command with the file's k = 1,2,3,4 replaced on the command line: 2 runs."""
    args = ["-m", "sweep=num_classes", "subclass.num_classes_to_repartition=1,2", *FAST_SWEEP, *extra,
            f"phase1.cache_dir={base / 'cache'}", f"hydra.sweep.dir={base / 'multirun'}"]
    # One torch thread per process: on a busy 2-core machine (or 2 joblib workers) two spinning
    # OpenMP threads per process make these tiny runs 10-20x slower.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _check_two_runs_one_phase1(sweep_dir: Path) -> list[dict]:
    runs = [json.loads((sweep_dir / str(i) / "results.json").read_text()) for i in (0, 1)]
    for k, results in zip((1, 2), runs):
        assert results["config"]["subclass"]["num_classes_to_repartition"] == k
        assert len(results["selected_classes"]) == k and len(results["subclass_to_class"]) == 10 + k
    # Phase 1 ran once: the other run reused it from the cache (same key: k is not part of it).
    assert sorted(r["phase1"]["cached"] for r in runs) == [False, True]
    assert runs[0]["phase1"]["cache_dir"] == runs[1]["phase1"]["cache_dir"]
    assert runs[0]["theta"] == runs[1]["theta"]
    return runs


def test_multirun_over_k_shares_phase1_and_reports(tmp_path):
    proc = _run_sweep(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = tmp_path / "multirun"
    runs = _check_two_runs_one_phase1(sweep_dir)
    assert not (sweep_dir / "2").exists()  # the command line's k = 1,2, not the file's four
    assert runs[0]["phase1"]["cached"] is False and runs[1]["phase1"]["cached"] is True  # in order
    assert proc.stdout.count("skipping phase-1 training") == 1

    report = subprocess.run([sys.executable, "-m", "sdnn.report", str(sweep_dir)], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=QUICK_GUARD)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "2 run(s)" in report.stdout
    markdown = (sweep_dir / "report.md").read_text().splitlines()
    assert "num_classes_to_repartition" in markdown[0]
    rows = [line for line in markdown[2:] if line.startswith("| sdnn |")]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "2"]
    with (sweep_dir / "report.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["method"], r["num_classes_to_repartition"], r["n"]) for r in table] == [("sdnn", "1", "1"),
                                                                                         ("sdnn", "2", "1")]
    for r, results in zip(table, runs):
        assert float(r["acc_mean"]) == pytest.approx(results["test"]["acc"])


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher not installed")
def test_joblib_launcher_runs_in_parallel_and_computes_phase1_once(tmp_path):
    proc = _run_sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    # Both started at once; the phase-1 cache lock made one wait and reuse what the other trained.
    _check_two_runs_one_phase1(tmp_path / "multirun")


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="hydra-submitit-launcher not installed")
def test_slurm_example_for_conf_local_composes(tmp_path):
    """conf/local/slurm.yaml.example, copied to conf/local/default.yaml as it says (in a copy of conf/)."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    shutil.copy(conf / "local" / "slurm.yaml.example", conf / "local" / "default.yaml")
    cfg = compose_sweep("num_classes", ["trainer=ddp", "trainer.devices=4", "hydra.launcher.gpus_per_node=4",
                                        "hydra.launcher.tasks_per_node=4"], conf=conf)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and cfg.hydra.runtime.choices["hydra/launcher"] == \
        "submitit_slurm"
    assert launcher.partition == "gpu" and launcher.timeout_min == 1440
    assert launcher.gpus_per_node == launcher.tasks_per_node == cfg.trainer.devices == 4
    assert str(cfg.hydra.sweeper.params["subclass.num_classes_to_repartition"]) == "1,2,3,4"
    assert OmegaConf.to_container(launcher, resolve=True)["setup"][0].startswith("source /")
    shared = OmegaConf.to_container(cfg, resolve=False)  # ${oc.env:USER} unresolved: the variable may be unset here
    assert shared["phase1"]["cache_dir"].startswith("/scratch/") and shared["dataset"]["root"].startswith("/scratch/")
