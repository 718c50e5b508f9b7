"""SDNN entry point: ``python run.py [group=option ...] [key=value ...]`` (Hydra).

Compose (types checked by the schema, sdnn/config/) → validate (ranges, no torch) → ``sdnn.build.build_job``
(every group built, the data loaded and checked) → ``sdnn.app.run``: the recipe, results.json and model/. Every error a
user can fix is one line on stderr and exit status 2 (Hydra's own composition errors too: ``cli``); Ctrl-C says what
was saved and the command that resumes, with exit status 130.

The value ``main`` returns (what a Hydra sweeper such as Optuna reads) is the validation accuracy,
``results.json`` ``val.acc``, never a test metric; without a validation split it is None, and a sweeper
that optimises it stops before any training with a one-line error.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sdnn.cli import hydra_cli, save_hydra_files, stop
from sdnn.config import register
from sdnn.errors import ConfigError, Interrupted, user_message
from sdnn.runlog import quiet

register()


def optimising_sweeper() -> str | None:
    """The sweeper of this multirun when it optimises the return value (any but Hydra's basic one)."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    choice = hydra_cfg.runtime.choices.get("hydra/sweeper")
    return choice if hydra_cfg.mode == RunMode.MULTIRUN and choice not in (None, "basic") else None


def check_sweep() -> None:
    """sweep=<name> (conf/sweep/) sets hydra.sweeper.params, which only -m reads, and one sweep per command."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.runtime.choices.get("sweep")
    if sweep is None:
        return
    if hydra_cfg.mode != RunMode.MULTIRUN:
        raise ConfigError(f"sweep={sweep} sets the values of a sweep (several runs): add -m, as in "
                          f"python run.py -m sweep={sweep}")
    given = {override.split("=", 1)[0].lstrip("+~") for override in hydra_cfg.overrides.task}
    if not set(hydra_cfg.sweeper.get("params") or {}) <= given:  # sweep=a,b: every job one plain run, nothing swept
        raise ConfigError(f"sweep takes one option per command: python run.py -m sweep={sweep}, then the next")


def check_objective(job) -> None:
    """A sweeper that optimises the run's value needs a validation split: tuning on test is not allowed."""
    sweeper = optimising_sweeper()
    if sweeper and not job.data.has_validation:
        raise ConfigError(f"hydra/sweeper={sweeper} optimises the validation accuracy (results.json val.acc), but "
                          f"dataset '{job.data.name}' has no validation split; add dataset.val_fraction=0.2 "
                          "(the test split is never an objective)")


def objective(results) -> float | None:
    """The validation accuracy after the last epoch; None without a validation split."""
    return None if results.val is None else float(results.val["acc"])


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    quiet()
    from sdnn.config import validate_config

    try:
        check_sweep()
        settings = validate_config(cfg)  # bad values fail here, before torch is imported
        from sdnn.build import build_job, config_snapshot
        from sdnn.runfolder import claimed

        run_dir = HydraConfig.get().runtime.output_dir
        with claimed(run_dir, config_snapshot(cfg), settings.checkpoint.resume, settings.overwrite):  # one run
            save_hydra_files(cfg)
            job = build_job(cfg, run_dir, settings)  # bad data fails here, before the Trainer is built
            check_objective(job)
            from sdnn.app import run

            results = run(cfg, run_dir, job)
    except KeyboardInterrupt as exc:  # Ctrl-C
        saved = exc.saved if isinstance(exc, Interrupted) else "Nothing was saved yet (no training had started)."
        folder, command = _resume_command()
        again = (f"To resume, run the same command with the same {folder}:" if saved.startswith("Saved")
                 else "The same command starts it again:")
        stop(f"interrupted (Ctrl-C). {saved}\n{again}\n  {command}", 130, every_rank=False)
    except Exception as exc:  # noqa: BLE001 — ours, a file that cannot be written, ours from a DataLoader worker
        message = user_message(exc)
        if message is None:
            raise
        stop(f"error: {message}", 2)
    return objective(results)  # validation accuracy: what a sweeper optimises (never test)


def _resume_command() -> tuple[str, str]:
    """The command line of this job, with its run folder (a sweep: the sweep folder) added where Hydra chose
    it, so that the same command continues from what was saved; and which folder that is."""
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    what, key, folder = "run folder", "hydra.run.dir", hydra.runtime.output_dir
    if hydra.mode == RunMode.MULTIRUN:  # the job's folder is <sweep dir>/<subdir>; the sweep resumes every job
        what, key = "sweep folder", "hydra.sweep.dir"
        folder = str(Path(folder).parents[len(Path(hydra.sweep.subdir).parts) - 1])
    command = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    if not any(arg.lstrip("+").startswith(f"{key}=") for arg in command):
        command.append(f"{key}={folder}")
    return what, shlex.join(command)


def cli() -> None:
    """``main`` with Hydra's own errors as one line and exit status 2 (``sdnn.cli.hydra_cli``)."""
    hydra_cli(main)


if __name__ == "__main__":
    cli()
