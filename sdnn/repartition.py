"""Selection, augmentation and subclass partition of the neglected classes (SPEC §2–3).

Pure numpy/torch: the pipeline passes an ``embed`` function that maps a chunk of inputs to
the vectors the partition is computed in (flattened inputs, or the phase-1 network's
penultimate features).

The result is a small recipe (indices and subclass numbers, no copy of the data), so it can
be cached on disk and applied to the training tensors again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sdnn.augment import extrapolate, sample_pairing
from sdnn.partition import StreamingMedianSplit, distances_to, kmeans_split, median_distance_split, random_split

__all__ = ["select_classes", "Repartition", "repartition"]

Embed = Callable[[Tensor], Tensor]


def select_classes(theta, k: int) -> list[int]:
    """Eq. 10 generalised: the k classes with the largest θ (NaN never selected), ascending."""
    theta = np.asarray(theta, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(theta))
    if len(valid) < k:
        raise ValueError(f"only {len(valid)} classes have a neglect score; cannot select {k}")
    order = valid[np.argsort(-theta[valid], kind="stable")]
    return sorted(int(i) for i in order[:k])


@dataclass
class Repartition:
    """How to build the phase-2 training set from the original one.

    ``subclass_of_train`` (N,): subclass number of every original training sample (0 for
    unselected classes). Added samples: ``added_source`` (M,) index of the sample each is
    made from, ``added_partner`` (M,) its SamplePairing partner or extrapolation anchor
    index, ``subclass_of_added`` (M,).
    """

    classes: list[int]
    n_subclasses: int
    augmenter: str
    lam: float
    subclass_of_train: np.ndarray
    added_source: np.ndarray
    added_partner: np.ndarray
    subclass_of_added: np.ndarray

    def subclasses_per_class(self) -> dict[int, int]:
        return {cls: self.n_subclasses for cls in self.classes}

    def subclass_sizes(self, y: Tensor) -> dict[int, list[int]]:
        """Observations per subclass of each selected class (augmented included)."""
        y_np = np.asarray(y)
        sizes = {}
        for cls in self.classes:
            numbers = np.concatenate([self.subclass_of_train[y_np == cls],
                                      self.subclass_of_added[y_np[self.added_source] == cls]])
            sizes[cls] = np.bincount(numbers, minlength=self.n_subclasses).tolist()
        return sizes

    def apply(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The phase-2 training set: inputs, class labels and subclass numbers."""
        src = torch.as_tensor(self.added_source, dtype=torch.long)
        partner = torch.as_tensor(self.added_partner, dtype=torch.long)
        if self.augmenter == "sample_pairing":
            added = sample_pairing(x[src], x[partner])
        elif self.augmenter == "extrapolation":
            added = extrapolate(x[src], x[partner], self.lam)
        else:
            added = x[:0]
        x_new = torch.cat([x, added])
        y_new = torch.cat([y, y[src]])
        sub = torch.as_tensor(np.concatenate([self.subclass_of_train, self.subclass_of_added]), dtype=torch.long)
        return x_new, y_new, sub

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "classes": np.asarray(self.classes, dtype=np.int64),
            "n_subclasses": np.asarray(self.n_subclasses),
            "augmenter": np.asarray(self.augmenter),
            "lam": np.asarray(self.lam),
            "subclass_of_train": self.subclass_of_train,
            "added_source": self.added_source,
            "added_partner": self.added_partner,
            "subclass_of_added": self.subclass_of_added,
        }

    @classmethod
    def from_arrays(cls, arrays) -> Repartition:
        return cls(
            classes=[int(c) for c in arrays["classes"]],
            n_subclasses=int(arrays["n_subclasses"]),
            augmenter=str(arrays["augmenter"]),
            lam=float(arrays["lam"]),
            subclass_of_train=np.asarray(arrays["subclass_of_train"]),
            added_source=np.asarray(arrays["added_source"]),
            added_partner=np.asarray(arrays["added_partner"]),
            subclass_of_added=np.asarray(arrays["subclass_of_added"]),
        )


def _embed_chunks(embed: Embed, x: Tensor, chunk_size: int) -> np.ndarray:
    parts = [embed(x[i:i + chunk_size]).detach().float().reshape(min(chunk_size, len(x) - i), -1).cpu()
             for i in range(0, len(x), chunk_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), dtype=np.float32)


def _streaming_mean(embed: Embed, x: Tensor, chunk_size: int) -> np.ndarray:
    """m of Algorithm 1: the mean of all training observations, one chunk at a time."""
    stream = StreamingMedianSplit()
    for i in range(0, len(x), chunk_size):
        stream.add_to_mean(embed(x[i:i + chunk_size]).detach().float().cpu())
    return stream.mean


def repartition(
    x: Tensor,
    y: Tensor,
    classes: list[int],
    n_subclasses: int,
    partitioner: str,
    augmenter: str,
    embed: Embed,
    seed: int,
    lam: float = 0.5,
    chunk_size: int = 2048,
) -> Repartition:
    """Augment each selected class and split it into ``n_subclasses`` (SPEC §3).

    SamplePairing doubles a class before the partition (the paper's order with k-means);
    extrapolation doubles it after (eq. 12 needs the subclass anchors); added samples of
    extrapolation take their source's subclass.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    y_np = np.asarray(y)
    mean = _streaming_mean(embed, x, chunk_size)
    subclass_of_train = np.zeros(n, dtype=np.int64)
    sources, partners, added_subclasses = [], [], []
    for cls in classes:
        members = np.flatnonzero(y_np == cls)
        if augmenter == "sample_pairing":
            pair = rng.integers(0, n, size=len(members))
            src_t, pair_t = torch.as_tensor(members), torch.as_tensor(pair)
            pool = torch.cat([x[src_t], sample_pairing(x[src_t], x[pair_t])])
        else:
            pool = x[torch.as_tensor(members)]
        vectors = _embed_chunks(embed, pool, chunk_size)
        if partitioner == "kmeans":
            numbers = kmeans_split(vectors, n_subclasses, seed=seed, mean=mean)
        elif partitioner == "median_split":
            numbers = median_distance_split(vectors, mean, n_subclasses)
        elif partitioner == "random":
            numbers = random_split(len(vectors), n_subclasses, seed=int(rng.integers(2**31)))
        else:
            raise ValueError(f"unknown partitioner {partitioner!r}")
        subclass_of_train[members] = numbers[: len(members)]
        if augmenter == "sample_pairing":
            sources.append(members)
            partners.append(pair)
            added_subclasses.append(numbers[len(members):])
        elif augmenter == "extrapolation":
            distance = distances_to(vectors, mean)
            farthest, closest = members[np.argmax(distance)], members[np.argmin(distance)]
            sources.append(members)
            partners.append(np.where(numbers == 0, farthest, closest))
            added_subclasses.append(numbers)
        elif augmenter != "none":
            raise ValueError(f"unknown augmenter {augmenter!r}")
    empty = np.zeros(0, dtype=np.int64)
    return Repartition(
        classes=sorted(classes),
        n_subclasses=n_subclasses,
        augmenter=augmenter,
        lam=lam,
        subclass_of_train=subclass_of_train,
        added_source=np.concatenate(sources).astype(np.int64) if sources else empty,
        added_partner=np.concatenate(partners).astype(np.int64) if partners else empty,
        subclass_of_added=np.concatenate(added_subclasses).astype(np.int64) if added_subclasses else empty,
    )
