"""The ``logger`` config group's loggers, one per phase, and what a run sends them at its end.

W&B: one run per phase plus a ``summary`` run in the sweep's group, with the figures as images,
the selected classes and subclass sizes as a table, and the phase-1 files and subclass map as
artifacts. TensorBoard: the figures as images. CSV: nothing more (the PNGs are in the run folder).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sdnn.results import Results


def sweep_group(run_dir: Path) -> str:
    """The W&B group: the sweep folder for a Hydra multirun, else the run folder."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return HydraConfig.get().sweep.dir
    except ImportError:
        pass
    return str(run_dir)


class LoggerFactory:
    """``make(phase)``: the configured logger writing under ``run_dir``, or False (``logger=none``).
    ``make_logger``: the ``logger`` group's class with its arguments (``sdnn.build``), None for none;
    ``config``: the resolved configuration, W&B's run config."""

    def __init__(self, make_logger: Callable[..., Any] | None, run_dir: Path, config: dict[str, Any],
                 group: str | None = None, label: str | None = None):
        self.make_logger = make_logger
        self.run_dir, self.config = Path(run_dir), config
        self.group, self.label = group, label or self.run_dir.name  # W&B: None = the sweep's or the run's own group

    def child(self, folder: Path) -> LoggerFactory:
        """The loggers of a run inside this one (method=auto's candidates and folds): the same W&B group, each run
        named by its path from this one (``<run>/auto/fold-2/sdnn-k3/phase2``)."""
        folder = Path(folder)
        path = folder.relative_to(self.run_dir).as_posix() if folder.is_relative_to(self.run_dir) else folder.name
        return LoggerFactory(self.make_logger, folder, self.config, group=self.group or sweep_group(self.run_dir),
                             label=f"{self.label}/{path}")

    @property
    def target(self) -> str:
        func = getattr(self.make_logger, "func", self.make_logger)
        return f"{func.__module__}.{func.__qualname__}" if func is not None else ""

    def make(self, phase: str):
        if self.make_logger is None:
            return False
        if self.target.endswith("WandbLogger"):  # one W&B run per phase, grouped by sweep
            group = (getattr(self.make_logger, "keywords", {}).get("group") or self.group
                     or sweep_group(self.run_dir))
            logger = self.make_logger(save_dir=str(self.run_dir), name=f"{self.label}/{phase}", group=group,
                                      job_type=phase, config=self.config)
            init = getattr(logger, "_wandb_init", {})
            if "anonymous" in init and init["anonymous"] is None:  # Lightning's default; W&B warns it has no effect
                del init["anonymous"]
            return logger
        return self.make_logger(save_dir=str(self.run_dir), name=phase)

    @staticmethod
    def finish(logger) -> None:
        if logger and type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()

    def publish_results(self, results: Results) -> None:
        """The run's figures, subclass table and artifacts to W&B or TensorBoard (CSV: files only)."""
        if not (self.target.endswith("WandbLogger") or self.target.endswith("TensorBoardLogger")):
            return
        names = results.names()
        figures = {k: self.run_dir / v for k, v in (results.figures or {}).items()}
        sizes = results.subclass_sizes or {}
        theta = results.theta or [None] * len(names)
        per_class = results.test.get("per_class_acc")
        rows = [[i, names[i], theta[i], "/".join(map(str, sizes.get(str(i), [])))]
                + ([per_class[i]] if per_class else []) for i in results.selected_classes]
        header = ["class", "name", "theta", "subclass sizes"] + (["test acc"] if per_class else [])
        artifacts = {}
        if results.subclass_sizes is not None:
            artifacts["subclass-map"] = ("subclass_map", [self.run_dir / "subclasses.json",
                                                          self.run_dir / "partition.npz"])
        cache_dir = (results.phase1 or {}).get("cache_dir")
        if cache_dir:
            artifacts[f"phase1-{Path(cache_dir).name}"] = ("phase1", [Path(cache_dir) / f for f in
                                                                     ("theta.json", "meta.json", "norms.npz")])
        publish(self.make("summary"), figures, (header, rows) if rows else None, artifacts)


def publish(logger, figures: Mapping[str, Path], table: tuple[Sequence[str], list[list]] | None = None,
            artifacts: Mapping[str, tuple[str, Sequence[Path]]] | None = None) -> None:
    """``figures``: name → PNG; ``table``: (columns, rows); ``artifacts``: name → (type, files)."""
    if not logger:
        return
    kind = type(logger).__name__
    if kind == "WandbLogger":
        import wandb

        for name, path in figures.items():
            logger.log_image(key=f"figures/{name}", images=[str(path)])
        if table is not None:
            columns, rows = table
            logger.log_table(key="subclasses", columns=list(columns), data=rows)
        for name, (kind_of, files) in (artifacts or {}).items():
            artifact = wandb.Artifact(name, type=kind_of)
            for file in files:
                if Path(file).is_file():
                    artifact.add_file(str(file))
            logger.experiment.log_artifact(artifact)
        logger.experiment.finish()
    elif kind == "TensorBoardLogger":
        from matplotlib.image import imread

        for name, path in figures.items():
            logger.experiment.add_image(f"figures/{name}", imread(str(path))[..., :3], dataformats="HWC")
        logger.experiment.flush()
