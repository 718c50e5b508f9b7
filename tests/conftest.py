"""Shared helpers: compose the real Hydra config, run the real CLI, write small npz files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from sdnn.checks import cpu_cores
from sdnn.config import register

register()  # the schema conf/config.yaml starts from (run.py registers it too)
ROOT = Path(__file__).resolve().parents[1]
# Small schedules for tests; phase 1 one epoch, phase 2 two.
# Hang guards, never speed checks (CI machines are shared and busy): at least 10× the time on a busy 2-core machine.
RUN_GUARD = 1800    # a training run (the default run: ~30 s idle, up to ~190 s seen under load)
QUICK_GUARD = 600   # a command that stops in seconds (bad input, a report, a config check)
# A line of another package's logger (Lightning's DDP set-up, alembic's and optuna's in the Optuna sweeper,
# hydra.utils' before our own error), or a warning with the file and line that raised it: sdnn.runlog.quiet().
FOREIGN_LINE = re.compile(r"\]\[(?:lightning_fabric|pytorch_lightning|lightning|hydra\.utils|alembic|optuna)[\w.]*\]|"
                          r"Initializing distributed|setup plugin|A new study created|\.py:\d+: ")
# Two DDP processes on the CPU need two cores (sdnn.checks refuses more processes than cores).
TWO_CORES = pytest.mark.skipif(cpu_cores() < 2, reason="two DDP processes on the CPU need 2 cores")
FAST = ["phase1.epochs=1", "trainer.max_epochs=2", "logger=none", "trainer.enable_progress_bar=false",
        "checkpoint.every_n_epochs=0"]  # checkpoints and resuming: tests/test_reliability_resume.py


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_cli(args: list[str], timeout: float = RUN_GUARD,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python run.py *args`` with warnings off (``env`` adds to or replaces this process's variables)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture
def run_pipeline(tmp_path):
    """Run the pipeline in-process with FAST settings and a fresh cache; returns results.json's content."""
    from sdnn.app import run

    def _run(overrides: list[str], run_dir: Path | None = None, cache: Path | None = None):
        cache = cache or tmp_path / "cache"
        run_dir = run_dir or tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        cfg = compose_config([*FAST, f"phase1.cache_dir={cache}", *overrides])
        return run(cfg, run_dir).to_json()

    return _run


def write_npz(path: Path, kind: str, n_train: int = 120, n_test: int = 60, classes: int = 3, seed: int = 0,
              with_val: bool = False) -> Path:
    """A learnable toy problem in the npz format: class-dependent means plus noise."""
    rng = np.random.default_rng(seed)
    shapes = {"nhwc": (8, 8, 3), "nchw": (3, 8, 8), "gray": (8, 8), "vectors": (24,)}
    shape = shapes[kind]
    centres = rng.normal(0, 1.0, size=(classes, *shape))

    def make(n):
        y = np.arange(n) % classes
        x = centres[y] + rng.normal(0, 0.7, size=(n, *shape))
        if kind in ("nhwc", "nchw", "gray"):
            x = np.clip(128 + 40 * x, 0, 255).astype(np.uint8)
        return x.astype(x.dtype if kind != "vectors" else np.float32), y.astype(np.int64)

    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)) + ((("val", 30),) if with_val else ()):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = make(n)
    np.savez(path, **arrays)
    return path


def loop_norms(x, logits, y, c: int) -> np.ndarray:
    """(‖δ_i‖, ‖δ̂_i‖, ‖δ̃_i‖) of one batch by SPEC §2, one class and one sample at a time (float64),
    independent of sdnn.neglect; ‖δ̂_i‖ is NaN for a class without a positive."""
    x = x.double().flatten(1).cpu().numpy()
    q = 1.0 / (1.0 + np.exp(-logits.double().cpu().numpy()))
    y = np.asarray(y.cpu())
    out = np.zeros((3, c))
    for i in range(c):
        pull, push = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        positives = 0
        for k in range(len(x)):
            zeta = q[k, i] - (1.0 if y[k] == i else 0.0)
            if y[k] == i:
                pull -= zeta * x[k]
                positives += 1
            else:
                push += zeta * x[k]
        out[:, i] = [np.linalg.norm(push - pull), np.linalg.norm(pull) if positives else np.nan, np.linalg.norm(push)]
    return out


def loop_ratios(x, logits, y, c: int) -> np.ndarray:
    """r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖ from ``loop_norms``; NaN for a class without a positive."""
    total, pull, push = loop_norms(x, logits, y, c)
    return (pull + push) / total
