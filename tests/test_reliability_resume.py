"""Interruption and resume (real signals to real processes), and NaN losses (issue 6, items 2 and 4)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, QUICK_GUARD, ROOT, RUN_GUARD, compose_config, read_results, run_cli

# digits with the small CNN: 19 steps per epoch in each phase; the learning
# rate steps down after epoch 1, so a resumed run must also restore the schedule
ARGS = ["phase1.epochs=2", "trainer.max_epochs=2", "observe.figures=false", "trainer.log_every_n_steps=5",
        "scheduler.milestones=[1]"]
TIMINGS = ("seconds", "train_seconds", "partition_seconds")


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _signal_at(args: list[str], marker: Path, sig: int) -> tuple[str, int]:
    """Start the run, wait until it reaches the marker, send ``sig``; returns its output and exit status."""
    proc = _start(args)
    deadline = time.monotonic() + RUN_GUARD  # a hang guard
    while not marker.exists():
        assert proc.poll() is None, f"the run ended before reaching {marker.name}:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "the run never reached the marker"
        time.sleep(0.05)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=QUICK_GUARD)
    assert proc.returncode != 0, output[-2000:]
    return output, proc.returncode


def _comparable(results: dict) -> dict:
    """results.json without wall-clock times and paths."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMINGS and k not in ("cache_dir", "origin")}
        return value
    out = strip(results)
    out.pop("config")
    out["phase1"].pop("cached")  # the resumed run's last start takes phase 1 from the cache it wrote
    return out


def test_killed_in_phase_1_and_interrupted_in_phase_2_resumes_to_the_same_results(tmp_path):
    reference = tmp_path / "reference"
    proc = run_cli([*ARGS, f"hydra.run.dir={reference}", f"phase1.cache_dir={tmp_path / 'cache_a'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    common = [*ARGS, f"hydra.run.dir={run_dir}", f"phase1.cache_dir={tmp_path / 'cache_b'}"]
    probe = "+trainer.callbacks=[{{_target_: tests.resume_probe.PauseAt, phase: {}, epoch: {}, marker: '{}'}}]"

    # SIGKILL in phase 1, after its first epoch's checkpoint: nothing is cached or written as a result
    marker = tmp_path / "phase1.marker"
    _, status = _signal_at([*common, probe.format("phase1", 1, marker)], marker, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert (run_dir / "phase1" / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "results.json").exists() and not list((tmp_path / "cache_b").rglob("model.pt"))
    assert not list(run_dir.rglob("*.partial"))

    # the same command again: resumes phase 1; Ctrl-C (SIGINT) in phase 2, after its first epoch
    marker = tmp_path / "phase2.marker"
    interrupted = [*common, probe.format("phase2", 1, marker)]
    output, status = _signal_at(interrupted, marker, signal.SIGINT)
    assert "phase1: resuming from" in output and str(run_dir / "phase1" / "checkpoints" / "last.ckpt") in output
    # what was saved, and the command that resumes: this one, with its run folder (exit status 130)
    assert status == 130 and "Traceback" not in output, output[-3000:]
    message = output[output.index("interrupted (Ctrl-C)"):].splitlines()
    cached = next((tmp_path / "cache_b").rglob("meta.json")).parent
    assert message[:4] == [
        "interrupted (Ctrl-C). Saved:",
        f"  phase 1: neglect scores — complete, in the phase-1 cache {cached}",
        f"  phase 2: subclass training — epoch 1 of 2, in {run_dir / 'phase2' / 'checkpoints' / 'last.ckpt'}",
        "To resume, run the same command with the same run folder:"]
    assert shlex.split(message[4]) == [sys.executable, str(ROOT / "run.py"), *interrupted]
    assert "interrupted (Ctrl-C)" in (run_dir / "run.log").read_text()
    assert not (run_dir / "results.json").exists()
    assert (run_dir / "phase2" / "checkpoints" / "last.ckpt").is_file()

    # and once more: phase 1 comes from the cache it wrote, phase 2 resumes from its checkpoint
    proc = run_cli(common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "phase2: resuming from" in proc.stdout + proc.stderr
    assert _comparable(read_results(run_dir)) == _comparable(read_results(reference))


def test_a_changed_configuration_stops_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    args = ["method=baseline", "model=mlp", "trainer.max_epochs=1", "observe.figures=false", f"hydra.run.dir={run_dir}"]
    assert run_cli(args).returncode == 0
    proc = run_cli([*args, "optim.lr=0.01"])
    assert proc.returncode == 2
    message = proc.stderr + proc.stdout
    assert "optim.lr: 0.05 → 0.01" in message and "checkpoint.resume=force" in message
    assert "hydra.run.dir" in message and "baseline:" not in message  # before training started
    assert "error: " + message.split("error: ")[1].strip() in (run_dir / "run.log").read_text()  # run.log has it too


def test_checkpoint_plan_resume_modes(tmp_path):
    from sdnn.errors import ConfigError
    from sdnn.lit.resume import CheckpointPlan

    config = {"optim": {"lr": 0.05}, "seed": 0, "trainer": {"max_epochs": 3, "enable_progress_bar": True},
              "logger": {"name": "csv"}}
    plan = CheckpointPlan(tmp_path, "phase2", config)
    assert plan.resume_path() is None  # nothing to resume
    plan.dir.mkdir(parents=True)
    torch.save({"epoch": 0}, plan.last)  # resume_path also checks that it loads with weights_only=True
    (plan.dir / "config.json").write_text(json.dumps(plan.fingerprint))
    cosmetic = {**config, "trainer": {"max_epochs": 3, "enable_progress_bar": False}, "logger": {"name": "wandb"}}
    assert CheckpointPlan(tmp_path, "phase2", cosmetic).resume_path() == plan.last
    changed = {**config, "optim": {"lr": 0.01}}
    with pytest.raises(ConfigError, match="optim.lr: 0.05 → 0.01"):
        CheckpointPlan(tmp_path, "phase2", changed).resume_path()
    assert CheckpointPlan(tmp_path, "phase2", changed, resume="force").resume_path() == plan.last
    assert CheckpointPlan(tmp_path, "phase2", changed, every_n_epochs=0).resume_path() is None
    assert CheckpointPlan(tmp_path, "phase2", changed, resume="false").resume_path() is None
    assert not plan.last.exists()  # starting over removes it, so that no later run resumes it


def test_a_nan_loss_stops_with_phase_step_and_lr_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    poison = "+trainer.callbacks=[{_target_: tests.resume_probe.PoisonWeights, phase: phase1, step: 25}]"
    proc = run_cli([*ARGS, f"hydra.run.dir={run_dir}", "phase1.use_cache=false", poison])
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr + proc.stdout
    assert "error: phase 1: neglect scores: the training loss became NaN at step 25 (epoch 1)" in message
    assert "learning rate 0.005" in message and "optim.lr=0.0005" in message  # after the step at epoch 1
    last = run_dir / "phase1" / "checkpoints" / "last.ckpt"
    assert str(last) in message and "Traceback" not in message
    assert not (run_dir / "results.json").exists()
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 0  # written after the first epoch, before the fault
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize("value, fragment", [("maybe", "checkpoint.resume='maybe'"),
                                             ("-1", "checkpoint.every_n_epochs=-1")])
def test_bad_checkpoint_options(tmp_path, value, fragment):
    key = "checkpoint.resume" if fragment.startswith("checkpoint.resume") else "checkpoint.every_n_epochs"
    proc = run_cli([f"{key}={value}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2 and fragment in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "results.json").exists()


def test_what_an_interrupted_run_says_was_saved(tmp_path):
    """The Ctrl-C message's first part (sdnn.app.saved), for the states a real SIGINT is not sent in above."""
    from types import SimpleNamespace

    from sdnn.app import saved
    from sdnn.config import Method
    from sdnn.lit.resume import CheckpointPlan

    def job(method, every=1, cached=False):
        training = SimpleNamespace(max_epochs=30, checkpoint=SimpleNamespace(every_n_epochs=every),
                                   checkpoints=lambda phase: CheckpointPlan(tmp_path, phase, {}, every))
        return SimpleNamespace(method=method, phase1=SimpleNamespace(use_cache=True, epochs=5.0), training=training,
                               cache=SimpleNamespace(has_phase1=lambda: cached, dir=tmp_path / "cache" / "key"))

    assert saved(job(Method.baseline)) == "Nothing was saved yet (no epoch had finished)."
    assert saved(job(Method.baseline, every=0)) == "Nothing was saved (checkpoint.every_n_epochs=0)."
    last = tmp_path / "phase1" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, last)
    assert saved(job(Method.reweight)) == f"Saved:\n  phase 1: neglect scores — epoch 3 of 5, in {last}"
    assert saved(job(Method.reweight, cached=True)) == (
        f"Saved:\n  phase 1: neglect scores — complete, in the phase-1 cache {tmp_path / 'cache' / 'key'}")
    last.write_bytes(b"not a checkpoint")
    assert saved(job(Method.sdnn)) == f"Saved:\n  phase 1: neglect scores — {last} (unreadable)"


def test_a_finished_run_run_again_says_it_is_complete_and_trains_nothing(tmp_path, capsys):
    """The same configuration into a finished run folder prints its summary; another one, or resume=false, trains."""
    from sdnn.app import run

    run_dir, base = tmp_path / "run", [*FAST, f"phase1.cache_dir={tmp_path / 'cache'}", "model=mlp"]
    first = run(compose_config([*base, "checkpoint.save_model=false"]), run_dir)
    assert not (run_dir / "model").exists() and (run_dir / "results.json").is_file()  # save_model=false: no model/
    stamp = (run_dir / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    again = run(compose_config(base), run_dir)  # save_model is not part of what was trained
    out = capsys.readouterr().out
    assert "this run is complete" in out and "phase 1" not in out.split("Its summary:")[0]
    assert json.dumps(again.to_json()) == json.dumps(first.to_json())
    assert (run_dir / "results.json").stat().st_mtime_ns == stamp and not (run_dir / "model").exists()
    run(compose_config([*base, "checkpoint.resume=false"]), run_dir)  # start over: trained again, model/ kept
    assert "this run is complete" not in capsys.readouterr().out and (run_dir / "model" / "model.json").is_file()
