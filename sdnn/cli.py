"""What every Hydra command of the project (``run.py``, ``python -m sdnn.advise``) does around its task: Hydra's
own errors (an override it cannot parse, an unknown option or key, a value of the wrong type, a run folder it
cannot create) as one line and exit status 2, Ctrl-C before the task as one line and 130, a closed pipe quietly;
``stop`` says a message on stderr and in run.log and exits; ``save_hydra_files`` writes ``.hydra/`` once the run
folder is the run's."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from sdnn.errors import disk_error
from sdnn.runlog import quiet, record


def stop(message: str, status: int, every_rank: bool = True) -> None:
    """``message`` on stderr and in run.log, then exit with ``status``; ``every_rank=False``: one process
    says it under DDP (Ctrl-C reaches them all)."""
    if every_rank or os.environ.get("LOCAL_RANK", "0") == os.environ.get("NODE_RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)
        record(message)
    sys.exit(status)


def save_hydra_files(cfg) -> None:
    """Hydra's ``.hydra/`` (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``), as Hydra writes them, once the run
    folder is this run's (``sdnn.runfolder.claimed``): Hydra itself would write them before the folder is checked,
    over the files of a run the command is then refused for (``hydra.output_subdir: null`` in conf/config.yaml)."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from sdnn.runfolder import first_process

    if not first_process():  # DDP: the other ranks run the same command in the same folder
        return
    hydra = HydraConfig.get()
    folder = Path(hydra.runtime.output_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", cfg), ("hydra.yaml", OmegaConf.create({"hydra": hydra})),
                       ("overrides.yaml", hydra.overrides.task)):
        (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")


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


def hydra_cli(main: Callable[[], object]) -> None:
    """Call a ``@hydra.main`` function with Hydra's own errors as one line and exit status 2."""
    from sdnn.config import composition_error

    empty = _empty_folder(sys.argv[1:])
    if empty:  # before Hydra writes .hydra/ into the current folder
        print(f"error: {empty} is empty; give the run a folder of its own, e.g. {empty}=outputs/run1",
              file=sys.stderr, flush=True)
        sys.exit(2)
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; composition_error words it
    quiet()  # before Hydra imports a sweeper (Optuna's imports log their set-up)
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
