"""Datasets (``conf/dataset/*.yaml`` ↔ this package). ``load_splits`` reads one by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sdnn.data.cifar import load_cifar
from sdnn.data.digits import load_digits_splits
from sdnn.data.image_folder import load_image_folder
from sdnn.data.npz import load_npz_splits
from sdnn.data.svhn import load_svhn
from sdnn.data.tensors import TensorSplits, split_off_validation, standardize, subsample_per_class
from sdnn.data.yt8m import YT8MData
from sdnn.errors import ConfigError, DataError

DATASETS = ("digits", "npz", "image_folder", "cifar10", "cifar100", "svhn", "yt8m")
STREAMED = ("yt8m",)  # read as streams (sdnn.data.yt8m), never loaded whole


def load_dataset(cfg: Mapping[str, Any], seed: int = 0, run_dir: str | Path | None = None) -> TensorSplits | YT8MData:
    """The dataset named by ``cfg['name']``: tensors in memory, or, for YouTube-8M, its shard streams
    (damaged records skipped by any process are journalled in ``run_dir/data_skipped.jsonl``)."""
    if cfg["name"] == "yt8m":
        journal = Path(run_dir) / "data_skipped.jsonl" if run_dir is not None else None
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
        return YT8MData(cfg, seed=seed, journal=journal)
    return load_splits(cfg)


def load_splits(cfg: Mapping[str, Any]) -> TensorSplits:
    """Load, hold out validation (``val_fraction``, if no val split is given) and normalise."""
    name = cfg["name"]
    if name == "digits":
        splits = load_digits_splits(cfg.get("test_fraction", 0.3), cfg.get("split_seed", 0))
    elif name == "npz":
        splits = load_npz_splits(cfg.get("path"), cfg.get("layout", "auto"))
    elif name in ("cifar10", "cifar100", "svhn"):
        root = cfg.get("root")
        if not root:
            raise DataError(f"dataset={name} needs its location: add dataset.root=/path/to/data")
        if name == "svhn":
            arrays = load_svhn(root, use_extra=bool(cfg.get("use_extra", True)), download=bool(cfg.get("download")))
        else:
            arrays = load_cifar(root, name, download=bool(cfg.get("download")),
                                on_corrupt=cfg.get("on_corrupt", "error"))
        splits = TensorSplits(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"]),
                              torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]),
                              num_classes=len(arrays["class_names"]), class_names=list(arrays["class_names"]),
                              skipped=list(arrays.get("skipped", [])))
    elif name in STREAMED:
        raise ConfigError(f"dataset={name} is streamed from its shards; use sdnn.data.load_dataset")
    elif name == "image_folder":
        splits = load_image_folder(cfg.get("root"), cfg.get("image_size"), cfg.get("cache_file"),
                                   cfg.get("on_corrupt", "error"))
    else:
        raise ConfigError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if splits.skipped:
        print(f"warning: skipped {len(splits.skipped)} damaged file(s) (dataset.on_corrupt=skip), "
              f"e.g. {splits.skipped[0]}", flush=True)
    fraction = float(cfg.get("val_fraction", 0.0) or 0.0)
    if splits.x_val is None and fraction > 0:
        splits.x_train, splits.y_train, splits.x_val, splits.y_val = split_off_validation(
            splits.x_train, splits.y_train, fraction, cfg.get("split_seed", 0))
    if cfg.get("train_per_class"):  # after the validation split, which keeps its full size
        splits.x_train, splits.y_train = subsample_per_class(splits.x_train, splits.y_train,
                                                             int(cfg["train_per_class"]), cfg.get("split_seed", 0))
    if cfg.get("normalize", True):
        splits = standardize(splits)
    return splits
