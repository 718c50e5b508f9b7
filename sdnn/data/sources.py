"""The in-memory datasets of the ``dataset`` config group: each class is a ``_target_`` whose
``load()`` reads the files (torch, no Lightning) and returns ``TensorSplits``, after the steps
every in-memory dataset shares (conf/base/in_memory.yaml): a validation split, a seeded subset per
class, normalisation. ``sdnn.data.module.InMemoryData`` serves them to Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sdnn.data.cifar import load_cifar
from sdnn.data.digits import load_digits_splits
from sdnn.data.image_folder import load_image_folder
from sdnn.data.npz import load_npz_splits
from sdnn.data.svhn import load_svhn
from sdnn.data.tensors import TensorSplits, merge_classes, split_off_validation, standardize, subsample_per_class
from sdnn.errors import ConfigError, DataError
from sdnn.runlog import say

__all__ = ["InMemoryDataset", "Digits", "Npz", "ImageFolder", "Cifar", "SVHN"]


class InMemoryDataset:
    """The shared keys: ``name`` (the label in results), ``batch_size`` and ``augment`` (the
    loaders' and the device-side augmentation's), ``val_fraction`` (held out of train when the data
    has no validation split), ``train_per_class`` (a seeded subset), ``normalize``, ``split_seed``
    (the seed of both), ``merge`` (original class j is trained as class ``merge[j]``; the originals are kept
    as fine labels), ``wrn`` (the WRN size ``model=wrn`` picks for this dataset), ``seed`` (the run's)."""

    def __init__(self, *, name: str, batch_size: int = 128, split_seed: int = 0, val_fraction: float = 0.0,
                 train_per_class: int | None = None, normalize: bool = True, merge: Sequence[int] | None = None,
                 augment: Mapping[str, Any] | None = None, wrn: Mapping[str, Any] | None = None, seed: int = 0):
        self.name, self.batch_size, self.split_seed, self.seed = name, int(batch_size), int(split_seed), int(seed)
        self.val_fraction, self.train_per_class = float(val_fraction or 0.0), train_per_class
        self.normalize = bool(normalize)
        self.merge = None if merge is None else [int(v) for v in merge]
        self.augment = dict(augment or {})

    def read(self) -> TensorSplits:
        """The files as tensors (train, test and, if the data has one, val)."""
        raise NotImplementedError

    def label_map(self, splits: TensorSplits) -> tuple[list[int], list[str] | None] | None:
        """Original class → trained class, and the trained classes' names (None: from their parts);
        None when the classes are trained as they are."""
        if self.merge is None:
            return None
        if len(self.merge) != splits.num_classes:
            raise ConfigError(f"dataset.merge has {len(self.merge)} entries but dataset '{self.name}' has "
                              f"{splits.num_classes} classes: give the new class of each original class, e.g. "
                              f"[{','.join(str(j // 2) for j in range(splits.num_classes))}]")
        return self.merge, None

    def load(self, run_dir: str | Path | None = None) -> TensorSplits:
        """Read, hold out validation, subsample per class (original classes), merge classes, normalise."""
        splits = self.read()
        if splits.skipped:
            say(f"warning: skipped {len(splits.skipped)} damaged file(s) (dataset.on_corrupt=skip), "
                f"e.g. {splits.skipped[0]}")
        if splits.x_val is None and self.val_fraction > 0:
            splits.x_train, splits.y_train, splits.x_val, splits.y_val = split_off_validation(
                splits.x_train, splits.y_train, self.val_fraction, self.split_seed)
        if self.train_per_class:  # after the validation split, which keeps its full size
            splits.x_train, splits.y_train = subsample_per_class(splits.x_train, splits.y_train,
                                                                 int(self.train_per_class), self.split_seed)
        relabel = self.label_map(splits)  # last: the same images as the unmerged dataset, whatever the merge
        if relabel is not None:
            splits = merge_classes(splits, torch.as_tensor(relabel[0]), relabel[1])
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
    """CIFAR-10 or CIFAR-100 (by ``name``), the official python-version batches (sdnn/data/cifar.py).
    ``coarse_labels`` (CIFAR-100): train on the 20 superclasses of the files' ``coarse_labels``; the 100
    classes are kept as fine labels."""

    def __init__(self, root: str | None = None, download: bool = False, on_corrupt: str = "error",
                 coarse_labels: bool = False, **shared):
        super().__init__(**shared)
        self.root, self.download, self.on_corrupt = root, bool(download), on_corrupt
        self.coarse_labels = bool(coarse_labels)
        if self.coarse_labels and self.merge is not None:
            raise ConfigError("dataset.coarse_labels=true and dataset.merge both relabel the classes: choose one")
        self._coarse: tuple[list[int], list[str]] | None = None

    def read(self) -> TensorSplits:
        arrays = load_cifar(_root(self.name, self.root), self.name, download=self.download,
                            on_corrupt=self.on_corrupt, coarse=self.coarse_labels)
        if self.coarse_labels:
            self._coarse = (list(arrays["fine_to_coarse"]), list(arrays["coarse_names"]))
        return _official(arrays)

    def label_map(self, splits):
        return self._coarse if self.coarse_labels else super().label_map(splits)


class SVHN(InMemoryDataset):
    """SVHN cropped digits, the official ``.mat`` files (sdnn/data/svhn.py)."""

    def __init__(self, root: str | None = None, download: bool = False, use_extra: bool = True, **shared):
        super().__init__(**shared)
        self.root, self.download, self.use_extra = root, bool(download), bool(use_extra)

    def read(self) -> TensorSplits:
        return _official(load_svhn(_root(self.name, self.root), use_extra=self.use_extra, download=self.download))
