"""SDNN entry point: ``python run.py [group=option ...] [key=value ...]`` (Hydra).

Compose (types checked by the schema, sdnn/config/) → validate (ranges, no torch) → ``sdnn.build.build_job``
(every group built, the data loaded and checked) → ``sdnn.app.run``: the recipe, results.json and model/. Every error a
user can fix is one line on stderr and exit status 2 (Hydra's own errors before it: status 1 where they are not
reworded); Ctrl-C says what was saved and the command that resumes, with exit status 130.

The value ``main`` returns (what a Hydra sweeper such as Optuna reads) is the validation accuracy,
``results.json`` ``val.acc``, never a test metric; without a validation split it is None, and a sweeper
that optimises it stops before any training with a one-line error.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sdnn.config import register
from sdnn.errors import ConfigError, Interrupted, disk_error, user_message
from sdnn.runlog import quiet, record

register()


def optimising_sweeper() -> str | None:
    """The sweeper of this multirun when it optimises the return value (any but Hydra's basic one)."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    choice = hydra_cfg.runtime.choices.get("hydra/sweeper")
    return choice if hydra_cfg.mode == RunMode.MULTIRUN and choice not in (None, "basic") else None


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
        settings = validate_config(cfg)  # bad values fail here, before torch is imported
        from sdnn.build import build_job, config_snapshot
        from sdnn.runfolder import claimed

        run_dir = HydraConfig.get().runtime.output_dir
        with claimed(run_dir, config_snapshot(cfg), settings.checkpoint.resume, settings.overwrite):  # one run
            job = build_job(cfg, run_dir, settings)  # bad data fails here, before the Trainer is built
            check_objective(job)
            from sdnn.app import run

            results = run(cfg, run_dir, job)
    except KeyboardInterrupt as exc:  # Ctrl-C
        saved = exc.saved if isinstance(exc, Interrupted) else "Nothing was saved yet (no training had started)."
        folder, command = _resume_command()
        again = (f"To resume, run the same command with the same {folder}:" if saved.startswith("Saved")
                 else "The same command starts it again:")
        _stop(f"interrupted (Ctrl-C). {saved}\n{again}\n  {command}", 130, every_rank=False)
    except Exception as exc:  # noqa: BLE001 — ours, a file that cannot be written, ours from a DataLoader worker
        message = user_message(exc)
        if message is None:
            raise
        _stop(f"error: {message}", 2)
    return objective(results)  # validation accuracy: what a sweeper optimises (never test)


def _stop(message: str, status: int, every_rank: bool = True) -> None:
    """``message`` on stderr and in run.log, then exit with ``status``; ``every_rank=False``: one process
    says it under DDP (Ctrl-C reaches them all)."""
    if every_rank or os.environ.get("LOCAL_RANK", "0") == os.environ.get("NODE_RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)
        record(message)
    sys.exit(status)


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


def _run_dir() -> str:
    """The run folder as given on the command line (``hydra.run.dir=...``), else its key."""
    given = [arg for arg in sys.argv[1:] if arg.lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    return given[-1].lstrip("+") if given else "hydra.run.dir"


def _empty_folder(argv: list[str]) -> str | None:
    """``hydra.run.dir`` or ``hydra.sweep.dir`` given as an empty value (which would be the current folder)."""
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value.strip() in ("", "''", '""', "null"):
            return key
    return None


def cli() -> None:
    """``main`` with Hydra's own errors (an unknown option, a value of the wrong type) as one line."""
    from sdnn.config import composition_error

    empty = _empty_folder(sys.argv[1:])
    if empty:  # before Hydra writes .hydra/ into the current folder
        print(f"error: {empty} is empty; give the run a folder of its own, e.g. {empty}=outputs/run1",
              file=sys.stderr, flush=True)
        sys.exit(2)
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; composition_error words it
    try:
        main()
    except BrokenPipeError:  # the reader of a pipe left early (python run.py --help | head): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:  # before the run started (imports, composing the configuration)
        print("interrupted (Ctrl-C) before the run started; nothing was saved", file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 — only Hydra's composition errors are reworded
        message = None if full else composition_error(exc)
        if message is None and not full and disk_error(exc) is not None:  # Hydra could not create the run folder
            what = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
            message = (f"{_run_dir()}: cannot create or write {exc.filename} ({what}); choose a writable folder, "
                       "e.g. hydra.run.dir=outputs/run1")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    cli()
