"""SDNN entry point: ``python run.py [group=option ...] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import logging
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sdnn.errors import SDNNError


def _quiet() -> None:
    """Lightning's start-up chatter (accelerator lines, tips) and two warnings that do not apply;
    called in every job, since launchers such as joblib run jobs in fresh worker processes."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    # YT8MStream divides its shards among DataLoader workers itself, so its length is exact
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    _quiet()
    from sdnn.validate import validate_against_data, validate_config

    try:
        # Bad values fail here before torch is imported, bad data before Lightning is.
        validate_config(cfg)
        from sdnn.data import load_dataset

        run_dir = HydraConfig.get().runtime.output_dir
        data = load_dataset(cfg.dataset, cfg.seed, run_dir)
        validate_against_data(cfg, data)
        from sdnn.pipeline import run

        results = run(cfg, run_dir, splits=data)
    except SDNNError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    test = results["test"]
    return test["acc"] if "acc" in test else test["gap"]  # multiclass accuracy, or YouTube-8M's GAP@20


if __name__ == "__main__":
    main()
