"""The in-memory datasets of the ``dataset`` config group: each class is a ``_target_`` whose
``load()`` reads the files (torch, no Lightning) and returns ``TensorSplits``, after the steps
every in-memory dataset shares (conf/base/in_memory.yaml): a validation split, a seeded subset per
class, normalisation. ``sdnn.data.module.InMemoryData`` serves them to Lightning.
"""

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
from sdnn.errors import DataError

__all__ = ["InMemoryDataset", "Digits", "Npz", "ImageFolder", "Cifar", "SVHN"]


class InMemoryDataset:
    """The shared keys: ``name`` (the label in results), ``batch_size`` and ``augment`` (the
    loaders' and the device-side augmentation's), ``val_fraction`` (held out of train when the data
    has no validation split), ``train_per_class`` (a seeded subset), ``normalize``, ``split_seed``
    (the seed of both), ``wrn`` (the WRN size ``model=wrn`` picks for this dataset), ``seed`` (the run's)."""

    def __init__(self, *, name: str, batch_size: int = 128, split_seed: int = 0, val_fraction: float = 0.0,
                 train_per_class: int | None = None, normalize: bool = True,
                 augment: Mapping[str, Any] | None = None, wrn: Mapping[str, Any] | None = None, seed: int = 0):
        self.name, self.batch_size, self.split_seed, self.seed = name, int(batch_size), int(split_seed), int(seed)
        self.val_fraction, self.train_per_class = float(val_fraction or 0.0), train_per_class
        self.normalize = bool(normalize)
        self.augment = dict(augment or {})

    def read(self) -> TensorSplits:
        """The files as tensors (train, test and, if the data has one, val)."""
        raise NotImplementedError

    def load(self, run_dir: str | Path | None = None) -> TensorSplits:
        """Read, hold out validation, subsample per class, normalise."""
        splits = self.read()
        if splits.skipped:
            print(f"warning: skipped {len(splits.skipped)} damaged file(s) (dataset.on_corrupt=skip), "
                  f"e.g. {splits.skipped[0]}", flush=True)
        if splits.x_val is None and self.val_fraction > 0:
            splits.x_train, splits.y_train, splits.x_val, splits.y_val = split_off_validation(
                splits.x_train, splits.y_train, self.val_fraction, self.split_seed)
        if self.train_per_class:  # after the validation split, which keeps its full size
            splits.x_train, splits.y_train = subsample_per_class(splits.x_train, splits.y_train,
                                                                 int(self.train_per_class), self.split_seed)
        return standardize(splits) if self.normalize else splits


class Digits(InMemoryDataset):
    """scikit-learn's bundled 8×8 digits (offline): a seeded stratified train/test split."""

    def __init__(self, test_fraction: float = 0.3, **shared):
        super().__init__(**shared)
        self.test_fraction = float(test_fraction)

    def read(self) -> TensorSplits:
        return load_digits_splits(self.test_fraction, self.split_seed)


class Npz(InMemoryDataset):
    """Your arrays in one ``.npz`` (sdnn/data/npz.py)."""

    def __init__(self, path: str | None = None, layout: str = "auto", **shared):
        super().__init__(**shared)
        self.path, self.layout = path, layout

    def read(self) -> TensorSplits:
        return load_npz_splits(self.path, self.layout)


class ImageFolder(InMemoryDataset):
    """Class-per-folder image trees or their archives (sdnn/data/image_folder.py)."""

    def __init__(self, root: str | None = None, image_size: int | None = None, cache_file: str | None = None,
                 on_corrupt: str = "error", max_image_mb: float = 64.0, **shared):
        super().__init__(**shared)
        self.root, self.image_size, self.cache_file, self.on_corrupt = root, image_size, cache_file, on_corrupt
        self.max_image_mb = float(max_image_mb)

    def read(self) -> TensorSplits:
        return load_image_folder(self.root, self.image_size, self.cache_file, self.on_corrupt, self.max_image_mb)


def _official(arrays: dict[str, Any]) -> TensorSplits:
    return TensorSplits(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"]),
                        torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]),
                        num_classes=len(arrays["class_names"]), class_names=list(arrays["class_names"]),
                        skipped=list(arrays.get("skipped", [])))


def _root(name: str, root: str | None) -> str:
    if not root:
        raise DataError(f"dataset={name} needs its location: add dataset.root=/path/to/data")
    return root


class Cifar(InMemoryDataset):
    """CIFAR-10 or CIFAR-100 (by ``name``), the official python-version batches (sdnn/data/cifar.py)."""

    def __init__(self, root: str | None = None, download: bool = False, on_corrupt: str = "error", **shared):
        super().__init__(**shared)
        self.root, self.download, self.on_corrupt = root, bool(download), on_corrupt

    def read(self) -> TensorSplits:
        return _official(load_cifar(_root(self.name, self.root), self.name, download=self.download,
                                    on_corrupt=self.on_corrupt))


class SVHN(InMemoryDataset):
    """SVHN cropped digits, the official ``.mat`` files (sdnn/data/svhn.py)."""

    def __init__(self, root: str | None = None, download: bool = False, use_extra: bool = True, **shared):
        super().__init__(**shared)
        self.root, self.download, self.use_extra = root, bool(download), bool(use_extra)

    def read(self) -> TensorSplits:
        return _official(load_svhn(_root(self.name, self.root), use_extra=self.use_extra, download=self.download))
