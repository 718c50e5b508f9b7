"""Send a run's figures, tables and artifacts to its logger, once, at the end of the run.

W&B: a ``summary`` run in the sweep's group with the figures as images, the selected classes
and subclass sizes as a table, and the phase-1 files and subclass map as artifacts.
TensorBoard: the figures as images. CSV: nothing to send (the PNGs are in the run folder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


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
