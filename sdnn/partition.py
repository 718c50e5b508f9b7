"""Subclass partitioners (SPEC §3): k-means, Algorithm 1 (median distance split), random; and how
well a partition recovers known fine labels (``partition_quality``, SPEC §7b).

Every partitioner returns subclass numbers 0..H−1 per observation of one class. Subclass 0
is the part farthest from the mean of the training data (Algorithm 1's convention, also
used to number k-means clusters), so numbers mean the same thing across partitioners.
The classes at the end are the ``partitioner`` config group's ``_target_``s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np

__all__ = [
    "median_distance_split",
    "distances_to",
    "StreamingMedianSplit",
    "kmeans_split",
    "random_split",
    "Partitioner",
    "KMeansSplit",
    "MedianDistanceSplit",
    "RandomSplit",
    "partition_quality",
]


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _runs_of_sorted_order(order: np.ndarray, n_subclasses: int) -> np.ndarray:
    """Give the k-th of H equal runs of ``order`` the subclass number k (bounds ⌊n·k/H⌋)."""
    n = order.size
    bounds = (np.arange(1, n_subclasses) * n) // n_subclasses
    rank_to_subclass = np.searchsorted(bounds, np.arange(n), side="right")
    out = np.empty(n, dtype=np.int64)
    out[order] = rank_to_subclass
    return out


def median_distance_split(x, mean, n_subclasses: int = 2) -> np.ndarray:
    """Algorithm 1: sort a class's observations by ‖x − m‖ descending and cut the order into
    ``n_subclasses`` equal runs (H = 2: the ⌊n/2⌋ farthest → 0, the rest → 1)."""
    x = _as_numpy(x).reshape(len(x), -1)
    return _runs_of_sorted_order(np.argsort(-distances_to(x, mean), kind="stable"), n_subclasses)


def distances_to(x: np.ndarray, mean, chunk_rows: int = 16384) -> np.ndarray:
    """‖x_κ − m‖ in float64, a chunk of rows at a time (never a float64 copy of all of x)."""
    mean = _as_numpy(mean).reshape(-1).astype(np.float64)
    d = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), chunk_rows):
        block = x[start:start + chunk_rows].astype(np.float64) - mean
        d[start:start + chunk_rows] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return d


class StreamingMedianSplit:
    """Algorithm 1 on-line over chunks: one pass for the mean, one for the distances.

    Memory is O(f) for the mean and one distance (and optional key) per (observation, selected
    class) pair, plus the farthest and closest observation of each class (``x̌_1``, ``x̌_2`` of
    eq. 12); never a class's feature matrix. Each chunk is handled with whole-array operations
    (no loop over its rows or over the classes). Labels are class indices (n,) or a multi-hot
    (n, c), so a multilabel observation belongs to each of its selected classes.
    """

    def __init__(self, n_subclasses: int = 2):
        self.n_subclasses = n_subclasses
        self._sum: np.ndarray | None = None
        self._count = 0
        self._classes: np.ndarray | None = None
        self._pair_slot: list[np.ndarray] = []
        self._pair_distance: list[np.ndarray] = []
        self._pair_key: list[np.ndarray] = []
        self._far_d = self._near_d = None
        self._far: np.ndarray | None = None
        self._near: np.ndarray | None = None

    @property
    def mean(self) -> np.ndarray:
        if self._sum is None:
            raise RuntimeError("add_to_mean was never called")
        return self._sum / self._count

    def add_to_mean(self, chunk) -> None:
        """Pass 1: accumulate the mean of all training observations."""
        chunk = _as_numpy(chunk).reshape(len(chunk), -1).astype(np.float64, copy=False)
        part = chunk.sum(0)
        self._sum = part if self._sum is None else self._sum + part
        self._count += len(chunk)

    def add_distances(self, chunk, labels, classes: Iterable[int], keys=None, originals=None) -> None:
        """Pass 2: distances to the mean of the observations of ``classes`` in this chunk.

        ``keys`` (n,): an id per observation, returned per class by ``split`` (e.g. video ids).
        ``originals`` (n, …): what to keep as the anchors x̌ instead of the chunk's rows (the inputs,
        when the chunk holds their embeddings)."""
        chunk = _as_numpy(chunk).reshape(len(chunk), -1)
        labels = _as_numpy(labels)
        selected = np.asarray(sorted({int(c) for c in classes}), dtype=np.int64)
        if self._classes is None:
            self._start(selected, (originals if originals is not None else chunk)[:0])
        elif not np.array_equal(selected, self._classes):
            raise ValueError(f"classes changed between chunks: {self._classes.tolist()} then {selected.tolist()}")
        if labels.ndim == 1:
            rows = np.flatnonzero(np.isin(labels, selected))
            slots = np.searchsorted(selected, labels[rows])
        else:  # multi-hot: one pair per (row, selected class), in row order
            rows, slots = np.nonzero(labels[:, selected] > 0)
        members, inverse = np.unique(rows, return_inverse=True)
        d = distances_to(chunk[members], self.mean)[inverse]
        self._pair_slot.append(slots.astype(np.int64))
        self._pair_distance.append(d)
        if keys is not None:
            self._pair_key.append(np.asarray(keys)[rows])
        self._update_anchors(rows, slots, d, np.asarray(originals) if originals is not None else chunk)

    def _start(self, classes: np.ndarray, empty_rows: np.ndarray) -> None:
        k = len(classes)
        self._classes = classes
        self._far_d, self._near_d = np.full(k, -np.inf), np.full(k, np.inf)
        shape = (k, *empty_rows.shape[1:])
        self._far, self._near = np.zeros(shape, empty_rows.dtype), np.zeros(shape, empty_rows.dtype)

    def _update_anchors(self, rows: np.ndarray, slots: np.ndarray, d: np.ndarray, source: np.ndarray) -> None:
        """Farthest and closest member per class so far; ties keep the earliest in stream order."""
        if not len(rows):
            return
        position = np.arange(len(rows))
        for sign, best_d, best in ((-1.0, self._far_d, self._far), (1.0, self._near_d, self._near)):
            order = np.lexsort((position, sign * d, slots))  # per class: best distance first, then earliest
            first = order[np.r_[True, slots[order][1:] != slots[order][:-1]]]
            better = sign * d[first] < sign * best_d[slots[first]]
            winners = first[better]
            best_d[slots[winners]] = d[winners]
            best[slots[winners]] = source[rows[winners]]

    def split(self) -> dict[int, dict[str, np.ndarray]]:
        """Per class: ``subclass`` numbers (stream order), ``farthest`` and ``closest`` rows (None
        for a class never seen) and, if keys were given, ``keys``."""
        if self._classes is None:
            return {}
        slots = np.concatenate(self._pair_slot)
        d = np.concatenate(self._pair_distance)
        keys = np.concatenate(self._pair_key) if self._pair_key else None
        order = np.argsort(slots, kind="stable")  # grouped by class, stream order within a class
        bounds = np.searchsorted(slots[order], np.arange(len(self._classes) + 1))
        out = {}
        for slot, cls in enumerate(self._classes.tolist()):
            part = order[bounds[slot]:bounds[slot + 1]]
            seen = np.isfinite(self._far_d[slot])
            out[cls] = {
                "subclass": _runs_of_sorted_order(np.argsort(-d[part], kind="stable"), self.n_subclasses),
                "farthest": self._far[slot] if seen else None,
                "closest": self._near[slot] if seen else None,
            }
            if keys is not None:
                out[cls]["keys"] = keys[part]
        return out


def kmeans_split(x, n_subclasses: int, seed: int, mean=None, minibatch_above: int = 20_000) -> np.ndarray:
    """k-means (scikit-learn) in float32; mini-batch k-means above ``minibatch_above`` rows.

    Clusters are numbered by the distance of their centroid to ``mean`` (default: the mean
    of ``x``), farthest first.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = _as_numpy(x).reshape(len(x), -1).astype(np.float32, copy=False)
    if len(x) < n_subclasses:
        raise ValueError(f"cannot split {len(x)} observations into {n_subclasses} subclasses")
    if len(x) > minibatch_above:
        km = MiniBatchKMeans(n_clusters=n_subclasses, random_state=seed, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=n_subclasses, random_state=seed, n_init=10)
    labels = km.fit_predict(x)
    ref = x.mean(0) if mean is None else _as_numpy(mean).reshape(-1).astype(np.float32)
    centre_distance = np.linalg.norm(km.cluster_centers_ - ref, axis=1)
    rank = np.empty(n_subclasses, dtype=np.int64)
    rank[np.argsort(-centre_distance, kind="stable")] = np.arange(n_subclasses)
    return rank[labels]


def random_split(n: int, n_subclasses: int, seed: int) -> np.ndarray:
    """A control: a random balanced split (sizes differ by at most one)."""
    order = np.random.default_rng(seed).permutation(n)
    return _runs_of_sorted_order(order, n_subclasses)




# --------------------------------------------------------------------------- the config group's classes

SPACES = ("input", "features")


class Partitioner:
    """A way to split one class into subclasses. ``space``: the vectors it works on, the
    (normalised) inputs or the phase-1 network's penultimate features. ``online``: it also runs
    over a stream (one pass for the mean, one for the distances; ``split_online``)."""

    name: ClassVar[str] = "partitioner"
    online: ClassVar[bool] = False

    def __init__(self, space: str = "input"):
        if space not in SPACES:
            raise ValueError(f"space={space!r} is not an option; choose input (the inputs) or features "
                             "(the phase-1 network's penultimate features)")
        self.space = space

    def split(self, vectors: np.ndarray, n_subclasses: int, mean: np.ndarray, seed: int,
              rng: np.random.Generator) -> np.ndarray:
        """Subclass numbers 0..H−1 of a class's ``vectors`` (n, f); ``mean``: of all training data."""
        raise NotImplementedError

    def split_online(self, median_order: np.ndarray, n_subclasses: int, rng: np.random.Generator) -> np.ndarray:
        """Subclass numbers over a stream, from Algorithm 1's numbers of the class (stream order)."""
        raise ValueError(f"partitioner={self.name} needs each class in memory")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(space={self.space!r})"


class KMeansSplit(Partitioner):
    """k-means (scikit-learn), the paper's choice for CIFAR/SVHN."""

    name = "kmeans"

    def split(self, vectors, n_subclasses, mean, seed, rng):
        return kmeans_split(vectors, n_subclasses, seed=seed, mean=mean)


class MedianDistanceSplit(Partitioner):
    """Algorithm 1, the median distance split (on-line over streams)."""

    name = "median_split"
    online = True

    def split(self, vectors, n_subclasses, mean, seed, rng):
        return median_distance_split(vectors, mean, n_subclasses)

    def split_online(self, median_order, n_subclasses, rng):
        return median_order


class RandomSplit(Partitioner):
    """The control: a random balanced split (does the partition matter?)."""

    name = "random"
    online = True

    def split(self, vectors, n_subclasses, mean, seed, rng):
        return random_split(len(vectors), n_subclasses, seed=int(rng.integers(2**31)))

    def split_online(self, median_order, n_subclasses, rng):
        return random_split(len(median_order), n_subclasses, seed=int(rng.integers(2**31)))


def partition_quality(labels, subclasses, fine, classes: Iterable[int], names: list[str] | None = None) -> dict:
    """NMI and ARI (scikit-learn) between each split class's subclass numbers and its samples' fine
    labels (SPEC §7b: merged or coarse classes; original samples only): ``{"nmi", "ari": their means over
    the classes, "per_class": {"<class>": {"nmi", "ari", "fine": [fine labels present], "fine_names"}}}``.
    1 = the subclasses are the fine classes; about 0 = unrelated (a random split)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels, subclasses, fine = _as_numpy(labels), _as_numpy(subclasses), _as_numpy(fine)
    per_class = {}
    for cls in sorted(int(c) for c in classes):  # the k split classes, once per run
        members = labels == cls
        truth, found = fine[members], subclasses[members]
        present = sorted(int(v) for v in np.unique(truth))
        per_class[str(cls)] = {"nmi": float(normalized_mutual_info_score(truth, found)),
                               "ari": float(adjusted_rand_score(truth, found)), "fine": present,
                               **({"fine_names": [names[v] for v in present]} if names else {})}
    mean = {key: float(np.mean([v[key] for v in per_class.values()])) if per_class else None for key in ("nmi", "ari")}
    return {**mean, "per_class": per_class}
