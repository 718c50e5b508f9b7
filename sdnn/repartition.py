"""Selection, augmentation and subclass partition of the neglected classes (SPEC §2–3).

Pure numpy/torch: the pipeline passes an ``embed`` function that maps a chunk of inputs to
the vectors the partition is computed in (flattened inputs, or the phase-1 network's
penultimate features).

The result is a small recipe (indices and subclass numbers, no copy of the data), so it can
be cached on disk and applied to the training tensors again. Both recipes, ``Repartition`` (data
in memory) and ``VideoSubclasses`` (streamed multilabel data), are a ``Partition``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from sdnn.augment import Augmenter, extrapolate, sample_pairing
from sdnn.errors import DataError
from sdnn.partition import Partitioner, StreamingMedianSplit, distances_to
from sdnn.subclass import build_subclass_to_class, subclass_targets

__all__ = ["select_classes", "Partition", "Repartition", "repartition", "VideoSubclasses", "stream_repartition",
           "embed_chunks"]


class Partition(Protocol):
    """The subclasses of the selected classes, as a recipe for phase 2's training data."""

    classes: list[int]   # selected classes, ascending
    n_subclasses: int
    augmenter: str

    def subclasses_per_class(self) -> dict[int, int]: ...

    def subclass_sizes(self) -> dict[int, list[int]]:
        """Training observations per subclass of each selected class."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The recipe as arrays (``from_arrays`` reads them back; cache and run folder)."""

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
    index, ``subclass_of_added`` (M,). ``sizes`` (k, H): observations per subclass of each
    selected class, added ones included.
    """

    classes: list[int]
    n_subclasses: int
    augmenter: str
    lam: float
    subclass_of_train: np.ndarray
    added_source: np.ndarray
    added_partner: np.ndarray
    subclass_of_added: np.ndarray
    sizes: np.ndarray

    def subclasses_per_class(self) -> dict[int, int]:
        return {cls: self.n_subclasses for cls in self.classes}

    def subclass_sizes(self) -> dict[int, list[int]]:
        """Observations per subclass of each selected class (augmented included)."""
        return {cls: [int(v) for v in row] for cls, row in zip(self.classes, self.sizes)}

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
            "sizes": self.sizes,
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
            sizes=np.asarray(arrays["sizes"]),
        )


def embed_chunks(embed: Embed, x: Tensor, chunk_size: int = 2048) -> np.ndarray:
    """``embed`` over ``x`` a chunk at a time, as one (n, f) float array."""
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
    partitioner: Partitioner,
    augmenter: Augmenter,
    embed: Embed,
    seed: int,
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
    sources, partners, added_subclasses, sizes = [], [], [], []
    kind = augmenter.name
    if kind not in ("none", "sample_pairing", "extrapolation"):
        raise ValueError(f"unknown augmenter {kind!r}")
    for cls in sorted(classes):
        members = np.flatnonzero(y_np == cls)
        if kind == "sample_pairing":
            pair = rng.integers(0, n, size=len(members))
            src_t, pair_t = torch.as_tensor(members), torch.as_tensor(pair)
            pool = torch.cat([x[src_t], sample_pairing(x[src_t], x[pair_t])])
        else:
            pool = x[torch.as_tensor(members)]
        vectors = embed_chunks(embed, pool, chunk_size)
        numbers = np.asarray(partitioner.split(vectors, n_subclasses, mean, seed, rng), dtype=np.int64)
        subclass_of_train[members] = numbers[: len(members)]
        if kind == "sample_pairing":
            sources.append(members)
            partners.append(pair)
            added_subclasses.append(numbers[len(members):])
        elif kind == "extrapolation":
            distance = distances_to(vectors, mean)
            farthest, closest = members[np.argmax(distance)], members[np.argmin(distance)]
            sources.append(members)
            partners.append(np.where(numbers == 0, farthest, closest))
            added_subclasses.append(numbers)
        counted = numbers if kind != "extrapolation" else np.concatenate([numbers, numbers])
        sizes.append(np.bincount(counted, minlength=n_subclasses))
    empty = np.zeros(0, dtype=np.int64)
    return Repartition(
        classes=sorted(classes),
        n_subclasses=n_subclasses,
        augmenter=kind,
        lam=float(augmenter.lam),
        subclass_of_train=subclass_of_train,
        added_source=np.concatenate(sources).astype(np.int64) if sources else empty,
        added_partner=np.concatenate(partners).astype(np.int64) if partners else empty,
        subclass_of_added=np.concatenate(added_subclasses).astype(np.int64) if added_subclasses else empty,
        sizes=np.stack(sizes).astype(np.int64) if sizes else np.zeros((0, n_subclasses), dtype=np.int64),
    )


# --------------------------------------------------------------------------- streamed multilabel data

@dataclass
class VideoSubclasses:
    """Phase 2's recipe for streamed multilabel data (YouTube-8M), keyed by video id: one entry per
    (video, selected class) pair, never a rewritten copy of the dataset.

    ``batch`` turns a decoded batch into phase-2 training data: subclass multi-hot targets (each
    positive selected class contributes its assigned subclass, SPEC §4) and, with extrapolation,
    one added copy of every video that has a selected label (eq. 12; the anchor is that of the
    video's most neglected selected class and of its subclass there).
    """

    classes: list[int]           # selected classes, ascending
    n_subclasses: int
    augmenter: str               # "extrapolation" | "none"
    lam: float
    num_classes: int
    ids: np.ndarray              # (P,) video id of each pair
    pair_class: np.ndarray       # (P,)
    pair_subclass: np.ndarray    # (P,) 0..H−1
    farthest: np.ndarray         # (k, F) x̌_1 of each selected class (inputs)
    closest: np.ndarray          # (k, F) x̌_2
    priority: np.ndarray         # (k,) 0 = the most neglected selected class (highest θ)

    def __getstate__(self):  # pickled (spawned workers, DDP broadcast): the arrays only; tables are rebuilt
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def subclasses_per_class(self) -> dict[int, int]:
        return {cls: self.n_subclasses for cls in self.classes}

    def subclass_sizes(self) -> dict[int, list[int]]:
        """Training videos per subclass of each selected class (before the added copies)."""
        return {cls: np.bincount(self.pair_subclass[self.pair_class == cls], minlength=self.n_subclasses).tolist()
                for cls in self.classes}

    def prepare(self) -> VideoSubclasses:
        """Builds the lookup tables now, in this process, so that forked DataLoader workers share
        them instead of each building its own."""
        self._tables()
        return self

    def _tables(self):
        """Sorted id+class keys and their subclasses: a binary search per batch, and plain numpy
        arrays that forked DataLoader workers share with the main process (no per-pair Python objects)."""
        if getattr(self, "_keys", None) is None:
            keys = _pair_keys(self.ids, self.pair_class)
            order = np.argsort(keys, kind="stable")
            slot = np.full(self.num_classes, -1, dtype=np.int64)
            slot[self.classes] = np.arange(len(self.classes))
            self._keys, self._key_subclass, self._slot = keys[order], self.pair_subclass[order], slot
            self._s2c = build_subclass_to_class(self.num_classes, self.subclasses_per_class())
        return self._keys, self._key_subclass, self._slot, self._s2c

    def batch(self, x: np.ndarray, rows: np.ndarray, cols: np.ndarray, ids: list[str]) -> tuple[Tensor, Tensor]:
        """``x`` (B, F) inputs, ``(rows, cols)`` the batch's (video, class) label pairs, ``ids`` (B,) →
        inputs (B + copies, F) and subclass multi-hot targets (B + copies, S)."""
        keys, key_subclass, slot, s2c = self._tables()
        selected = np.flatnonzero(slot[cols] >= 0)
        sub = np.zeros(len(cols), dtype=np.int64)
        if len(selected):
            wanted = _pair_keys(np.asarray(ids, dtype=str)[rows[selected]], cols[selected])
            found = np.searchsorted(keys, wanted).clip(max=max(len(keys) - 1, 0))
            known = keys[found] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
            if not known.all():
                video, cls = wanted[~known][0].split(b"\x1f")
                raise DataError(f"video {video.decode()!r} of selected class {int(cls, 16)} has no subclass: the "
                                "training shards changed since the partition was computed; run with "
                                "phase1.use_cache=false (or delete the phase-1 cache folder)")
            sub[selected] = key_subclass[found]
        unit = subclass_targets(torch.from_numpy(cols), torch.from_numpy(sub), s2c)
        targets = torch.zeros(len(x), len(s2c))
        targets[torch.from_numpy(rows), unit] = 1.0
        inputs = torch.from_numpy(x)
        if self.augmenter != "extrapolation" or not len(selected):
            return inputs, targets
        # per video with a selected label: the pair of its most neglected selected class
        pair_rows, pair_slots = rows[selected], slot[cols[selected]]
        order = np.lexsort((self.priority[pair_slots], pair_rows))
        first = order[np.r_[True, pair_rows[order][1:] != pair_rows[order][:-1]]]
        source, anchor_slot, anchor_sub = pair_rows[first], pair_slots[first], sub[selected][first]
        anchors = np.where((anchor_sub == 0)[:, None], self.farthest[anchor_slot], self.closest[anchor_slot])
        copies = extrapolate(inputs[torch.from_numpy(source)], torch.from_numpy(anchors), self.lam)
        return torch.cat([inputs, copies]), torch.cat([targets, targets[torch.from_numpy(source)]])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"classes": np.asarray(self.classes, dtype=np.int64), "n_subclasses": np.asarray(self.n_subclasses),
                "augmenter": np.asarray(self.augmenter), "lam": np.asarray(self.lam),
                "num_classes": np.asarray(self.num_classes), "ids": np.asarray(self.ids, dtype=str),
                "pair_class": self.pair_class, "pair_subclass": self.pair_subclass, "farthest": self.farthest,
                "closest": self.closest, "priority": self.priority}

    @classmethod
    def from_arrays(cls, arrays) -> VideoSubclasses:
        return cls(classes=[int(c) for c in arrays["classes"]], n_subclasses=int(arrays["n_subclasses"]),
                   augmenter=str(arrays["augmenter"]), lam=float(arrays["lam"]), num_classes=int(arrays["num_classes"]),
                   ids=np.asarray(arrays["ids"]), pair_class=np.asarray(arrays["pair_class"]),
                   pair_subclass=np.asarray(arrays["pair_subclass"]), farthest=np.asarray(arrays["farthest"]),
                   closest=np.asarray(arrays["closest"]), priority=np.asarray(arrays["priority"]))


def _pair_keys(ids: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One byte string per (video id, class) pair, ``id`` + ``\\x1f`` + the class in 4 hex digits
    (YouTube-8M: 9 bytes a pair), for sorting and binary search."""
    suffixes = np.array([b"\x1f%04x" % i for i in range(int(np.max(classes, initial=0)) + 1)], dtype="S5")
    return np.char.add(np.char.encode(np.asarray(ids, dtype=str), "utf-8"), suffixes[np.asarray(classes)])


def stream_repartition(batches: Callable[[], Iterable[tuple]], classes: list[int], n_subclasses: int,
                       partitioner: Partitioner, augmenter: Augmenter, embed: Embed, seed: int, num_classes: int,
                       priority: list[int] | None = None) -> VideoSubclasses:
    """Algorithm 1 on-line over a stream (SPEC §3): ``batches()`` yields ``(x, multi-hot y, ids)`` over
    the training videos, in the same order each time it is called. Pass 1: the mean m of all
    videos; pass 2: each selected class's distances to m, video ids and anchors. Memory: O(f) plus
    one distance and id per (video, selected class) pair.

    ``partitioner``: an ``online`` one, Algorithm 1 or the random control with the same sizes
    (k-means needs a class in memory). ``priority``: the selected classes, most neglected first
    (default: ascending).
    """
    if not partitioner.online:
        raise ValueError(f"partitioner={partitioner.name} cannot run over a stream; use median_split (Algorithm 1) "
                         "or random")
    if augmenter.name not in ("extrapolation", "none"):
        raise ValueError(f"augmenter={augmenter.name} is not available for streamed feature vectors; use "
                         "extrapolation or none")
    split = StreamingMedianSplit(n_subclasses)
    for x, _, _ in batches():
        split.add_to_mean(embed(x).detach().float().cpu())
    for x, y, ids in batches():
        split.add_distances(embed(x).detach().float().cpu(), y, classes, keys=np.asarray(ids, dtype=str),
                            originals=np.asarray(x, dtype=np.float32))
    result = split.split()
    rng = np.random.default_rng(seed)
    ids, pair_class, pair_subclass = [], [], []
    for cls in sorted(classes):
        part = result[cls]
        numbers = part["subclass"]
        if part["farthest"] is None:
            raise ValueError(f"class {cls} has no training video")
        numbers = partitioner.split_online(numbers, n_subclasses, rng)
        ids.append(part["keys"])
        pair_class.append(np.full(len(numbers), cls, dtype=np.int64))
        pair_subclass.append(numbers.astype(np.int64))
    order = list(priority) if priority is not None else sorted(classes)
    rank = {cls: i for i, cls in enumerate(order)}
    return VideoSubclasses(
        classes=sorted(classes), n_subclasses=n_subclasses, augmenter=augmenter.name, lam=float(augmenter.lam),
        num_classes=num_classes,
        ids=np.concatenate(ids), pair_class=np.concatenate(pair_class), pair_subclass=np.concatenate(pair_subclass),
        farthest=np.stack([result[cls]["farthest"] for cls in sorted(classes)]).astype(np.float32),
        closest=np.stack([result[cls]["closest"] for cls in sorted(classes)]).astype(np.float32),
        priority=np.asarray([rank[cls] for cls in sorted(classes)], dtype=np.int64))
