"""In-memory datasets as tensors: train / val / test splits, normalisation, batch sampling.

Batches are drawn by slicing whole tensors with an index batch (no per-sample Python or
collate on the training path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from sdnn.data.preprocess import Preprocessing


@dataclass
class TensorSplits:
    """A multiclass dataset held as tensors. Images are (N, C, H, W), vectors (N, F).

    Float data is normalised in place. uint8 images stay uint8 (a quarter of the memory);
    ``norm_mean``/``norm_std`` (C,) then hold the per-channel statistics that the device-side
    ``InputPipeline`` applies to each batch. ``preprocessing`` records how a user's raw inputs become
    what the network sees (the reader's layout and scaling, then the statistics; ``model/model.json``
    keeps it); by default the tensors themselves are the raw form.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    class_names: list[str] = field(default_factory=list)
    norm_mean: Tensor | None = None
    norm_std: Tensor | None = None
    skipped: list[str] = field(default_factory=list)  # damaged files left out (dataset.on_corrupt=skip)
    # The original labels of merged or coarse classes (``merge_classes``): for analysis only, never trained on.
    fine_train: Tensor | None = None
    fine_val: Tensor | None = None
    fine_test: Tensor | None = None
    fine_names: list[str] = field(default_factory=list)
    preprocessing: Preprocessing | None = None
    # A hash of the content, where no file names the data (a user's data module): part of the phase-1 cache key.
    fingerprint: str | None = None

    def __post_init__(self):
        if self.preprocessing is None:
            self.preprocessing = Preprocessing.of_tensor(self.x_train)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    def names(self) -> list[str]:
        return self.class_names or [str(i) for i in range(self.num_classes)]


def merge_classes(splits: TensorSplits, mapping: Tensor, names: list[str] | None = None) -> TensorSplits:
    """Train on merged classes: original class j becomes ``mapping[j]`` (``dataset.merge``, SPEC §7b).
    The original labels are kept as fine labels; a merged class is named by its parts (``0+1``)."""
    mapping = torch.as_tensor(mapping, dtype=torch.long)
    fine_names = splits.names()
    merged = int(mapping.max()) + 1
    if names is None:
        names = ["+".join(fine_names[j] for j in torch.nonzero(mapping == k).flatten().tolist()) for k in range(merged)]
    for split in ("train", "val", "test"):
        labels = getattr(splits, f"y_{split}")
        if labels is not None:
            setattr(splits, f"fine_{split}", labels)
            setattr(splits, f"y_{split}", mapping[labels])
    splits.num_classes, splits.class_names, splits.fine_names = merged, list(names), fine_names
    return splits


def split_off_validation(x: Tensor, y: Tensor, fraction: float, seed: int):
    """Hold out a seeded random ``fraction`` of (x, y) as a validation split."""
    if fraction <= 0:
        return x, y, None, None
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(fraction * len(x))))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def fold_count_limit(splits: TensorSplits) -> int:
    """The most folds ``fold_splits`` can make: the validation split and each whole part of the training split of
    its size (1 without a validation split)."""
    if splits.y_val is None or not len(splits.y_val):
        return 1
    return 1 + len(splits.y_train) // len(splits.y_val)


def fold_splits(splits: TensorSplits, fold: int, seed: int) -> TensorSplits:
    """Fold ``fold`` (>= 2) of ``method=auto``'s cross-validation: part ``fold - 1`` of the training split (a seeded
    order, parts of the validation split's size) held out, trained on the rest of it and the validation split.
    Test data and the normalisation statistics stay the run's (the statistics are label-free)."""
    limit = fold_count_limit(splits)
    if not 2 <= fold <= limit:
        exist = f"folds 2 to {limit} exist" if limit >= 2 else "no fold beyond the first exists"
        raise ValueError(f"fold {fold}: {exist} (one per whole part of the training split of the validation split's "
                         "size; none without a validation split)")
    n_val, n_train = len(splits.y_val), len(splits.y_train)
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(n_train, dtype=torch.bool)
    held[order[(fold - 2) * n_val:(fold - 1) * n_val]] = True
    kept = ~held
    fine = splits.fine_train is not None and splits.fine_val is not None
    return replace(splits, x_train=torch.cat([splits.x_train[kept], splits.x_val]),
                   y_train=torch.cat([splits.y_train[kept], splits.y_val]), x_val=splits.x_train[held],
                   y_val=splits.y_train[held],
                   fine_train=torch.cat([splits.fine_train[kept], splits.fine_val]) if fine else None,
                   fine_val=splits.fine_train[held] if fine else None)


def subsample_per_class(x: Tensor, y: Tensor, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random subset of at most ``per_class`` samples of every class (original order kept):
    a smaller training set for quick studies on a CPU."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    labels = y[order]
    # rank of each sample within its class in the random order, without a loop over classes
    by_class = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(by_class)
    rank[by_class] = torch.arange(len(labels)) - starts[labels[by_class]]
    keep = torch.sort(order[rank < per_class]).values
    return x[keep], y[keep]


def channel_statistics(x: Tensor, chunk_size: int = 8192) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of (N, C, ...) data, in float64 one chunk at a time
    (no float copy of the whole dataset)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk_size):
        chunk = x[start:start + chunk_size].to(torch.float64).transpose(0, 1).flatten(1)
        total += chunk.sum(1)
        squares += chunk.square().sum(1)
    count = len(x) * (x[0].numel() // x.shape[1])
    mean = total / count
    std = ((squares - count * mean.square()) / max(count - 1, 1)).clamp_min(0).sqrt()
    return mean.float(), std.float().clamp_min(1e-6)


def standardize(splits: TensorSplits) -> TensorSplits:
    """Zero mean, unit variance per channel (images) or per feature (vectors), from train.

    uint8 data is left as it is; its statistics go to ``norm_mean``/``norm_std``. Either way they are
    recorded in ``preprocessing`` (how the network's inputs were made, for ``model/``).
    """
    if splits.x_train.dtype == torch.uint8:
        splits.norm_mean, splits.norm_std = channel_statistics(splits.x_train)
        splits.preprocessing = splits.preprocessing.with_statistics(splits.norm_mean, splits.norm_std, "device")
        return splits
    dims = (0, 2, 3) if splits.is_image else (0,)
    mean = splits.x_train.mean(dims, keepdim=True)
    std = splits.x_train.std(dims, keepdim=True).clamp_min(1e-6)
    splits.preprocessing = splits.preprocessing.with_statistics(mean, std, "loaded")
    for name in ("x_train", "x_val", "x_test"):
        value = getattr(splits, name)
        if value is not None:
            setattr(splits, name, ((value - mean) / std).contiguous())
    return splits


def rank_world() -> tuple[int, int]:
    """(DDP rank, world size); (0, 1) without a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class IndexBatchSampler:
    """Yields index tensors of whole batches; seeded per epoch; shards batches across ranks.

    Each rank takes every world_size-th batch of the same seeded permutation, so ranks never
    overlap. ``set_epoch`` is called by Lightning at the start of every epoch.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last = drop_last and n > batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _num_batches(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __len__(self) -> int:
        """Training (``drop_last``): the same count on every rank, as gradient all-reduce needs.
        Evaluation: every batch once, so a rank may get one batch more than another."""
        rank, world = rank_world()
        total = self._num_batches()
        return total // world if self.drop_last else len(range(rank, total, world))

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        rank, world = rank_world()
        for b in range(rank, rank + len(self) * world, world):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]


class TensorPairs(torch.utils.data.Dataset):
    """``dataset[index_tensor]`` returns the whole batch ``(x[index], y[index])``."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def batch_loader(x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader over whole-batch slices (``batch_size=None`` turns off per-sample collation).

    With a GPU, each batch is gathered into pinned memory so its copy to the device is
    asynchronous.
    """
    sampler = IndexBatchSampler(len(x), batch_size, shuffle=shuffle, seed=seed, drop_last=shuffle)
    # Its own generator: creating an iterator draws a base seed, which would otherwise advance the global
    # RNG at a point that differs between an uninterrupted and a resumed run (sdnn/lit/resume.py).
    return torch.utils.data.DataLoader(TensorPairs(x, y), batch_size=None, sampler=sampler,
                                       pin_memory=torch.cuda.is_available(),
                                       generator=torch.Generator().manual_seed(seed))
