"""``SDNNData``: the one data interface of the recipe (a LightningDataModule), with an in-memory
implementation (``InMemoryData``, tensors sliced into whole batches) and a streaming one
(``StreamedData``, YouTube-8M's shards). Both split the selected classes into a ``Partition``
and give phase 2's data from it (SPEC §3, §4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from sdnn.augment import Augmenter
from sdnn.data.batch_augment import BatchAugment, InputPipeline
from sdnn.data.preprocess import Preprocessing
from sdnn.data.sources import InMemoryDataset
from sdnn.data.tensors import TensorSplits, batch_loader, fold_count_limit, fold_splits
from sdnn.data.yt8m import YT8MData, YT8MStream
from sdnn.errors import ConfigError, listed
from sdnn.lit.progress import Console
from sdnn.lit.streams import StreamEpochs
from sdnn.partition import Partitioner, partition_quality
from sdnn.repartition import Partition, Repartition, VideoSubclasses, repartition, stream_repartition
from sdnn.results import Selection
from sdnn.subclass import build_subclass_to_class, subclass_targets

Embed = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class IndicatorSample:
    """Training observations for the label-free indicators (``sdnn.indicators``): raw inputs as the loaders
    give them, their classes ((n,) indices or an (n, c) multi-hot) and their phase-2 output units ((n,) unit
    indices or an (n, S) multi-hot), before any augmented copy."""

    x: torch.Tensor
    labels: torch.Tensor
    units: torch.Tensor


class SDNNData(pl.LightningDataModule):
    """What a phase trains and is tested on, and how the selected classes are split.

    ``num_classes``, ``input_shape``, ``multilabel``, ``names()``, ``skipped`` (damaged files left
    out); the train / validation / test loaders; ``callbacks()`` the loaders need in the Trainer;
    ``input_pipeline()`` the device-side normalisation and augmentation; ``preprocessing()`` how raw
    inputs become the network's (for ``model/``); ``partition(selection,
    per_class, partitioner, augmenter, embed)`` → ``Partition``; ``for_phase2(partition)`` → the
    SDNNData of phase 2 (same validation and test data, subclass targets, augmented copies).
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    multilabel: bool = False
    unit: str = "samples"
    seed: int = 0
    batch_size: int = 128
    progress: bool = True  # spinners and bars for work outside Lightning's loops (partitioning)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def names(self) -> list[str]:
        raise NotImplementedError

    @property
    def skipped(self) -> list[str]:
        return []

    @property
    def has_validation(self) -> bool:
        return self.validation_size > 0

    def callbacks(self) -> list[pl.Callback]:
        return []

    def test_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The test split as tensors, for the per-class accuracy after each epoch (None: not held)."""
        return None

    def input_pipeline(self) -> InputPipeline:
        return InputPipeline()

    def preprocessing(self) -> Preprocessing:
        raise NotImplementedError

    def training_size(self) -> int:
        raise NotImplementedError

    def check_split(self, classes: list[int], per_class: int) -> None:
        """A ``ConfigError`` now if a class is known to be too small for ``per_class`` subclasses."""

    def partition_settings(self, selection: Selection) -> dict[str, Any]:
        """What the partition depends on beyond the subclass settings (part of its cache key)."""
        return {"n_train": self.training_size()}

    def partition(self, selection: Selection, per_class: int, partitioner: Partitioner, augmenter: Augmenter,
                  embed: Embed) -> Partition:
        raise NotImplementedError

    def partition_from_arrays(self, arrays: dict[str, np.ndarray]) -> Partition:
        raise NotImplementedError

    def for_phase2(self, partition: Partition) -> SDNNData:
        raise NotImplementedError

    def describe_training(self) -> str:
        """Phase 2's training data in a few words, for the progress line."""
        return ""

    def subclass_to_class(self, partition: Partition) -> torch.Tensor:
        return build_subclass_to_class(self.num_classes, partition.subclasses_per_class())

    def partition_quality(self, partition: Partition) -> dict[str, Any] | None:
        """NMI / ARI of the subclasses against the fine labels (merged or coarse classes); None without them."""
        return None

    def indicator_sample(self, partition: Partition, max_rows: int) -> IndicatorSample:
        """At most ``max_rows`` training observations (a seeded subset) with their classes and units."""
        raise NotImplementedError

    @property
    def validation_size(self) -> int:
        """Observations in the validation split (0: none)."""
        return 0

    def max_folds(self) -> int:
        """How many validation folds ``fold`` can make: 1 (the validation split only) unless held in memory."""
        return 1

    def fold(self, fold: int, seed: int) -> SDNNData:
        """Fold ``fold`` (>= 2) of ``method=auto``'s cross-validation (``sdnn.data.tensors.fold_splits``)."""
        raise NotImplementedError


def data_module(source: InMemoryDataset | YT8MData, loaded: TensorSplits | YT8MData, progress: bool = True) -> SDNNData:
    """The SDNNData of a loaded dataset: tensors in memory, or YouTube-8M's streams."""
    if isinstance(loaded, YT8MData):
        return StreamedData(loaded, progress=progress)
    return InMemoryData(loaded, source.name, source.batch_size, source.augment, source.seed, progress=progress)


class InMemoryData(SDNNData):
    """Tensors in memory (``TensorSplits``); batches are index slices (``batch_loader``)."""

    def __init__(self, splits: TensorSplits, name: str, batch_size: int, augment: dict | None = None, seed: int = 0,
                 train: tuple[torch.Tensor, torch.Tensor] | None = None, description: str = "", progress: bool = True):
        super().__init__()
        self.splits, self.name, self.batch_size, self.augment, self.seed = splits, name, batch_size, augment, seed
        self.progress = progress
        self.train = train if train is not None else (splits.x_train, splits.y_train)
        self.num_classes, self.input_shape = splits.num_classes, splits.input_shape
        self._description = description

    def names(self) -> list[str]:
        return self.splits.names()

    @property
    def skipped(self) -> list[str]:
        return list(self.splits.skipped)

    def train_dataloader(self):
        return batch_loader(*self.train, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self):
        if not self.has_validation:
            return []
        return batch_loader(self.splits.x_val, self.splits.y_val, 4 * self.batch_size, shuffle=False)

    def test_dataloader(self):
        return batch_loader(self.splits.x_test, self.splits.y_test, 4 * self.batch_size, shuffle=False)

    def test_tensors(self):
        return self.splits.x_test, self.splits.y_test

    def input_pipeline(self) -> InputPipeline:
        augment = BatchAugment(**self.augment) if self.is_image and self.augment else None
        return InputPipeline(augment, self.splits.norm_mean, self.splits.norm_std)

    def preprocessing(self) -> Preprocessing:
        return self.splits.preprocessing

    def training_size(self) -> int:
        return len(self.splits.x_train)

    def check_split(self, classes, per_class):
        counts = torch.bincount(self.splits.y_train, minlength=self.num_classes)
        too_small = [cls for cls in classes if int(counts[cls]) < per_class]
        if too_small:
            raise ConfigError(f"subclass.per_class={per_class}: class(es) {listed(too_small)} have fewer training "
                              "samples")

    def partition(self, selection, per_class, partitioner, augmenter, embed):
        with Console(bars=self.progress).status(f"partitioning: {partitioner.name} on classes {selection.classes}"):
            return repartition(self.splits.x_train, self.splits.y_train, selection.classes, per_class, partitioner,
                               augmenter, embed, seed=self.seed)

    def partition_from_arrays(self, arrays):
        return Repartition.from_arrays(arrays)

    def partition_quality(self, partition: Repartition):
        splits = self.splits
        if splits.fine_train is None:
            return None
        return partition_quality(splits.y_train, partition.subclass_of_train, splits.fine_train, partition.classes,
                                 splits.fine_names)

    def indicator_sample(self, partition: Repartition, max_rows: int) -> IndicatorSample:
        x, y = self.splits.x_train, self.splits.y_train
        units = subclass_targets(y, torch.as_tensor(partition.subclass_of_train), self.subclass_to_class(partition))
        if len(y) > max_rows:
            keep = torch.as_tensor(np.sort(np.random.default_rng(self.seed).choice(len(y), max_rows, replace=False)))
            x, y, units = x[keep], y[keep], units[keep]
        return IndicatorSample(x, y, units)

    def for_phase2(self, partition: Repartition) -> InMemoryData:
        x, y, numbers = partition.apply(self.splits.x_train, self.splits.y_train)
        targets = subclass_targets(y, numbers, self.subclass_to_class(partition))
        return InMemoryData(self.splits, self.name, self.batch_size, self.augment, self.seed, train=(x, targets),
                            description=f"{len(x)} training samples", progress=self.progress)

    def describe_training(self) -> str:
        return self._description

    @property
    def validation_size(self) -> int:
        return 0 if self.splits.y_val is None else len(self.splits.y_val)

    def max_folds(self) -> int:
        return fold_count_limit(self.splits)

    def fold(self, fold: int, seed: int) -> InMemoryData:
        return InMemoryData(fold_splits(self.splits, fold, seed), self.name, self.batch_size, self.augment, self.seed,
                            progress=self.progress)


class StreamedData(SDNNData):
    """YouTube-8M's shards, streamed (``YT8MData``); multilabel; no validation split (Table 2 is
    reported on ``validate``, the test loader here)."""

    multilabel = True
    unit = "videos"

    def __init__(self, shards: YT8MData, recipe: VideoSubclasses | None = None, progress: bool = True):
        super().__init__()
        self.shards, self.recipe, self.progress = shards, recipe, progress
        self.name, self.seed, self.batch_size = shards.name, shards.seed, shards.batch_size
        self.num_classes, self.input_shape = shards.num_classes, tuple(shards.input_shape)
        self._train: YT8MStream | None = None
        self._test: YT8MStream | None = None

    def names(self) -> list[str]:
        return self.shards.names()

    @property
    def skipped(self) -> list[str]:
        return self.shards.skipped

    @property
    def train_stream(self) -> YT8MStream:
        if self._train is None:
            self._train = self.shards.stream("train", train=True, recipe=self.recipe)
        return self._train

    @property
    def test_stream(self) -> YT8MStream:
        if self._test is None:
            self._test = self.shards.stream("validate", train=False, batch_size=4 * self.batch_size)
        return self._test

    def preprocessing(self) -> Preprocessing:
        return self.shards.preprocessing

    def callbacks(self):
        return [StreamEpochs([self.train_stream], [self.test_stream])]

    def train_dataloader(self):
        return self.shards.loader(self.train_stream)

    def val_dataloader(self):
        return []

    def test_dataloader(self):
        return self.shards.loader(self.test_stream)

    def training_size(self) -> int:
        return self.shards.stream("train", train=False).total

    def partition_settings(self, selection):
        # a copy of a video takes the anchor of its most neglected selected class
        return {**super().partition_settings(selection), "priority": list(selection.priority)}

    def partition(self, selection, per_class, partitioner, augmenter, embed):
        try:
            return stream_repartition(self._training_videos, selection.classes, per_class, partitioner, augmenter,
                                      embed, seed=self.seed, num_classes=self.num_classes,
                                      priority=selection.priority)
        except ValueError as exc:  # a selected class without training videos
            raise ConfigError(f"subclass selection: {exc}; choose other classes (subclass.classes)") from exc

    def partition_from_arrays(self, arrays):
        return VideoSubclasses.from_arrays(arrays)

    def indicator_sample(self, partition: VideoSubclasses, max_rows: int) -> IndicatorSample:
        """The first ``max_rows`` training videos in the partition's fixed order, with their subclass targets."""
        xs, ys, units, count = [], [], [], 0
        for x, y, ids in self._training_videos("split indicators", max_rows):
            x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
            rows, cols = np.nonzero(y > 0)
            inputs, targets = partition.batch(x, rows, cols, list(ids))
            take = min(len(x), max_rows - count)
            xs.append(inputs[:take]), ys.append(torch.as_tensor(y[:take]).float()), units.append(targets[:take])
            count += take
            if count >= max_rows:
                break
        return IndicatorSample(torch.cat(xs), torch.cat(ys), torch.cat(units))

    def for_phase2(self, partition: VideoSubclasses) -> StreamedData:
        return StreamedData(self.shards, recipe=partition.prepare(), progress=self.progress)

    def describe_training(self) -> str:
        return f"{self.recipe.augmenter}: one added copy per training video of a selected class" if self.recipe else ""

    def _training_videos(self, what: str = "partition", total: int | None = None) -> Iterator[tuple]:
        """Every training video once, in a fixed order, as ``(x, multi-hot y, ids)`` batches (the two
        passes of Algorithm 1 read this; run by one process, with the DataLoader's workers); ``what`` reads them
        (the progress line), ``total`` of them at most."""
        stream = self.shards.stream("train", train=False, batch_size=4 * self.batch_size, with_ids=True)
        stream.place(0, 1)
        yield from Console(bars=self.progress).progress(self.shards.loader(stream), min(stream.total, total or
                                                                                      stream.total),
                                                        f"{what}: reading training videos", unit="videos")
