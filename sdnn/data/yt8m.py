"""YouTube-8M video-level features streamed from TFRecord shards (SPEC §6).

Each record is a ``tf.train.Example`` with ``id`` (bytes), ``labels`` (int64 list, 3,862 classes),
``mean_rgb`` (1,024 floats) and ``mean_audio`` (128 floats). Nothing is loaded whole: a
``ShardIndex`` counts the records of every shard once (reading only the 12-byte record headers
and seeking over the data; cached in a small JSON file), and each epoch

1. orders the shards by a seeded permutation (a new order every epoch),
2. cuts the concatenated stream into ``world × workers`` contiguous ranges of whole batches,
   one per (DDP rank, DataLoader worker): no record is read twice and, in evaluation, none is
   left out (in training, the fewer than ``world × batch_size`` records that do not fill a batch
   on every rank are left out, as with ``drop_last``, so every rank takes the same number of
   steps, which DDP needs; the shard order changes every epoch, so they differ each time),
3. reads its range (passing over the records before it by their headers alone), shuffles it through a buffer of
   ``shuffle_buffer`` videos, and yields whole batches ``(features, multi-hot labels)``.

Features are ``mean_rgb`` or ``mean_rgb ⊕ mean_audio`` (``features="rgb" | "rgb_audio"``), each
video's vector L2-normalised. ``max_videos`` keeps the first videos of the (unshuffled) shard
order for quick runs. Damaged records follow ``on_corrupt`` (``sdnn.data.tfrecord``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdnn.data.preprocess import Preprocessing
from sdnn.data.tensors import rank_world
from sdnn.data.tfrecord import CorruptionLog, count_records, decode_example, read_records
from sdnn.errors import DataError

NUM_CLASSES = 3862
FEATURE_SIZES = {"mean_rgb": 1024, "mean_audio": 128}
FEATURE_SETS = {"rgb": ("mean_rgb",), "rgb_audio": ("mean_rgb", "mean_audio")}
INDEX_VERSION = 1


def find_shards(pattern: str | Path) -> list[Path]:
    """The shard files of a glob (``data/yt8m/train*.tfrecord``), sorted; a clear error if none."""
    paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(str(pattern))) if Path(p).is_file())
    if not paths:
        raise DataError(f"no YouTube-8M shards match {pattern}: download the video-level features "
                        "(README, YouTube-8M) and point dataset.train / dataset.validate at the *.tfrecord files")
    return paths


@dataclass(frozen=True)
class ShardIndex:
    """Shard paths and their record counts."""

    paths: tuple[Path, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @classmethod
    def build(cls, paths: Sequence[Path], cache_file: Path | None = None) -> ShardIndex:
        """Counts every shard, reusing ``cache_file`` entries whose size and mtime still match."""
        cached = {}
        if cache_file is not None and cache_file.is_file():
            try:
                stored = json.loads(cache_file.read_text())
                if isinstance(stored, dict) and stored.get("version") == INDEX_VERSION:
                    cached = stored["shards"] if isinstance(stored.get("shards"), dict) else {}
            except (OSError, ValueError):  # a damaged index is counted again
                cached = {}
        counts, entries = [], {}
        for path in paths:
            stat = path.stat()
            key = str(path.resolve())
            entry = cached.get(key)
            if (not isinstance(entry, dict) or entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime
                    or not isinstance(entry.get("count"), int)):
                entry = {"size": stat.st_size, "mtime": stat.st_mtime, "count": count_records(path)}
            entries[key] = entry
            counts.append(int(entry["count"]))
        if cache_file is not None:
            partial = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.partial")
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps({"version": INDEX_VERSION, "shards": entries}))
                os.replace(partial, cache_file)
            except OSError:  # a read-only or full data folder: the index is rebuilt next time
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
        return cls(tuple(paths), tuple(counts))


def slot_ranges(total: int, batch_size: int, world: int, workers: int, drop_last: bool
                ) -> list[tuple[int, int]]:
    """``world × workers`` contiguous ``[start, stop)`` ranges of the concatenated stream, in the
    order (rank 0: workers 0…, rank 1: …). Each holds whole batches except, without
    ``drop_last``, the last range of each rank; with ``drop_last`` every rank gets the same
    number of full batches."""
    slots = world * workers
    if drop_last:
        per_rank_batches = total // (world * batch_size)
        bounds = []
        for rank in range(world):
            start = rank * per_rank_batches * batch_size
            for worker in range(workers):
                lo = per_rank_batches * worker // workers
                hi = per_rank_batches * (worker + 1) // workers
                bounds.append((start + lo * batch_size, start + hi * batch_size))
        return bounds
    batches = math.ceil(total / batch_size)
    bounds = []
    for slot in range(slots):
        lo, hi = batches * slot // slots, batches * (slot + 1) // slots
        bounds.append((min(lo * batch_size, total), min(hi * batch_size, total)))
    return bounds


def _records_in_range(index: ShardIndex, order: Sequence[int], start: int, stop: int, on_corrupt: str,
                      log: CorruptionLog) -> Iterator[bytes]:
    """Record payloads ``start … stop-1`` of the stream that concatenates the shards in ``order``."""
    position = 0
    for shard in order:
        count = index.counts[shard]
        if position + count <= start:
            position += count
            continue
        if position >= stop:
            return
        first = max(0, start - position)
        records = read_records(index.paths[shard], on_corrupt, log, yield_skipped=True, start=first)
        for i, (_, data) in enumerate(records, start=first):
            if position + i >= stop:
                break
            if data is not None:
                yield data
        position += count


def video_features(example: dict, features: str) -> np.ndarray:
    """One video's feature vector, L2-normalised (float32)."""
    parts = []
    for name in FEATURE_SETS[features]:
        value = example.get(name)
        if not isinstance(value, np.ndarray) or value.shape != (FEATURE_SIZES[name],):
            raise ValueError(f"'{name}' has {None if value is None else np.shape(value)} values, "
                             f"expected {FEATURE_SIZES[name]}")
        parts.append(value)
    vector = np.concatenate(parts).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class YT8MStream(torch.utils.data.IterableDataset):
    """Whole batches ``(features (B, F) float32, labels (B, c) float32 multi-hot)`` and, with
    ``with_ids``, a third item: the list of video ids. See the module docstring for the division."""

    def __init__(self, shards: Sequence[str | Path] | str, batch_size: int, features: str = "rgb",
                 train: bool = True, seed: int = 0, shuffle_buffer: int = 4096, max_videos: int | None = None,
                 num_classes: int = NUM_CLASSES, on_corrupt: str = "error", index_cache: Path | None = None,
                 with_ids: bool = False, recipe=None, journal: Path | None = None):
        if features not in FEATURE_SETS:
            raise DataError(f"dataset.features={features!r}: choose one of {', '.join(FEATURE_SETS)}")
        if batch_size < 1:
            raise DataError(f"dataset.batch_size={batch_size} must be >= 1")
        paths = find_shards(shards) if isinstance(shards, (str, Path)) else [Path(p) for p in shards]
        self.index = ShardIndex.build(paths, index_cache)
        self.batch_size, self.features, self.train, self.seed = batch_size, features, train, seed
        self.shuffle_buffer, self.num_classes, self.on_corrupt = shuffle_buffer, num_classes, on_corrupt
        self.with_ids, self.recipe = with_ids, recipe
        self.total = min(self.index.total, max_videos) if max_videos else self.index.total
        self.epoch = 0
        self.placement: tuple[int, int] | None = None
        self.corruption = CorruptionLog(journal=None if journal is None else str(journal))

    @property
    def feature_size(self) -> int:
        return sum(FEATURE_SIZES[name] for name in FEATURE_SETS[self.features])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def place(self, rank: int, world: int) -> None:
        """The DDP rank and world size, set in the main process (DataLoader workers cannot ask
        ``torch.distributed``; ``sdnn.lit.streams.StreamEpochs`` calls this)."""
        self.placement = (int(rank), int(world))

    def _rank_world(self) -> tuple[int, int]:
        return self.placement or rank_world()

    def _shard_order(self) -> list[int]:
        # evaluation, and max_videos (the same first videos every epoch, reshuffled by the buffer): file order
        if not self.train or self.total < self.index.total:
            return list(range(len(self.index.paths)))
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.permutation(len(self.index.paths)).tolist()

    def num_batches(self, world: int | None = None) -> int:
        """Batches one rank yields per epoch."""
        world = world or self._rank_world()[1]
        if self.train:
            return self.total // (world * self.batch_size)
        return math.ceil(math.ceil(self.total / self.batch_size) / world)

    def __len__(self) -> int:
        return self.num_batches()

    def my_range(self, rank: int, world: int, worker: int, workers: int) -> tuple[int, int]:
        return slot_ranges(self.total, self.batch_size, world, workers, self.train)[rank * workers + worker]

    def __iter__(self):
        rank, world = self._rank_world()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        yield from self.slot_batches(rank, world, worker, workers)

    def slot_batches(self, rank: int, world: int, worker: int, workers: int):
        """The batches of one (rank, worker) slot in this epoch."""
        start, stop = self.my_range(rank, world, worker, workers)
        records = _records_in_range(self.index, self._shard_order(), start, stop, self.on_corrupt, self.corruption)
        if self.train and self.shuffle_buffer > 1:
            records = _shuffled(records, self.shuffle_buffer, np.random.default_rng([self.seed, self.epoch, rank,
                                                                                     worker]))
        yield from self._batches(records)

    def _batches(self, records: Iterator[bytes]):
        xs, labels, ids = [], [], []
        for data in records:
            example = decode_example(data)
            try:
                xs.append(video_features(example, self.features))
            except ValueError as exc:
                raise DataError(f"a YouTube-8M record is malformed ({exc}); is dataset.features={self.features} "
                                "right for these shards?") from exc
            labels.append(example.get("labels", np.zeros(0, np.int64)))
            ids.append(example["id"][0].decode("utf-8", "replace") if example.get("id") else "")
            if len(xs) == self.batch_size:
                yield self._collate(xs, labels, ids)
                xs, labels, ids = [], [], []
        if xs:
            yield self._collate(xs, labels, ids)

    def _collate(self, xs, labels, ids):
        rows, cols = label_pairs(labels, self.num_classes)
        if self.recipe is not None:  # phase 2: subclass targets and augmented copies (sdnn.repartition)
            x, targets = self.recipe.batch(np.stack(xs), rows, cols, ids)
        else:
            x = torch.from_numpy(np.stack(xs))
            targets = torch.zeros(len(xs), self.num_classes)
            targets[torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
        return (x, targets, ids) if self.with_ids else (x, targets)


class YT8MData:
    """``dataset=yt8m`` (conf/dataset/yt8m.yaml): the ``train`` and ``validate`` shard globs, read as
    streams: ``num_classes``, ``input_shape``, ``names()``, ``skipped``, the streams and their
    DataLoaders (``sdnn.data.module.StreamedData`` serves them to Lightning).

    Damaged records skipped by any DataLoader worker or DDP rank (``on_corrupt: skip``) are written to
    ``journal`` (``load(run_dir)`` puts it in the run folder) as they happen, so the count at the end
    of the run covers all of them.
    """

    is_image = False
    multilabel = True
    streamed = True  # never in memory: partitions run on-line
    norm_mean = norm_std = None  # features are L2-normalised per video instead

    def __init__(self, *, train: str | None = None, validate: str | None = None, name: str = "yt8m",
                 features: str = "rgb", num_classes: int = NUM_CLASSES, vocabulary: str | None = None,
                 max_videos: int | None = None, max_eval_videos: int | None = None, shuffle_buffer: int = 4096,
                 num_workers: int = 2, on_corrupt: str = "error", batch_size: int = 512, seed: int = 0,
                 journal: Path | None = None):
        for key, pattern in (("train", train), ("validate", validate)):
            if not pattern:
                raise DataError(f"dataset=yt8m needs dataset.{key}: a glob of the {key}*.tfrecord shards, e.g. "
                                f"dataset.{key}='/data/yt8m/video/{key}*.tfrecord' (README, YouTube-8M)")
        if features not in FEATURE_SETS:
            raise DataError(f"dataset.features={features!r}: choose one of {', '.join(FEATURE_SETS)}")
        self.name, self.features, self.seed, self.journal = name, features, int(seed), journal
        self.on_corrupt, self.max_videos, self.max_eval_videos = on_corrupt, max_videos, max_eval_videos
        self.shuffle_buffer, self.num_workers = int(shuffle_buffer), int(num_workers or 0)
        self.paths = {"train": find_shards(train), "validate": find_shards(validate)}
        self.num_classes = int(num_classes)
        self.class_names = read_vocabulary(vocabulary, self.num_classes)
        self.batch_size = int(batch_size)
        self.input_shape = (sum(FEATURE_SIZES[name] for name in FEATURE_SETS[self.features]),)

    @property
    def preprocessing(self) -> Preprocessing:
        """Raw inputs: a video's features (``mean_rgb`` or ``mean_rgb`` ⊕ ``mean_audio``), L2-normalised."""
        return Preprocessing("float", "nf", self.input_shape, l2_normalize=True,
                             source=" ⊕ ".join(FEATURE_SETS[self.features]) + " of each video")

    def load(self, run_dir: str | Path | None = None) -> YT8MData:
        """Nothing is read whole: sets the skipped-records journal to ``run_dir/data_skipped.jsonl``."""
        if run_dir is not None:
            self.journal = Path(run_dir) / "data_skipped.jsonl"
            self.journal.parent.mkdir(parents=True, exist_ok=True)
        return self

    def names(self) -> list[str]:
        return self.class_names or [str(i) for i in range(self.num_classes)]

    @property
    def skipped(self) -> list[str]:
        return CorruptionLog.from_journal(self.journal).describe() if self.journal is not None else []

    def stream(self, split: str, train: bool, batch_size: int | None = None, with_ids: bool = False,
               recipe=None) -> YT8MStream:
        """A stream over ``split`` ("train" | "validate"); ``train=True`` shuffles and drops the
        ragged tail (every rank the same number of steps)."""
        limit = self.max_videos if split == "train" else self.max_eval_videos
        paths = self.paths[split]
        return YT8MStream(paths, batch_size or self.batch_size, self.features, train=train, seed=self.seed,
                          shuffle_buffer=self.shuffle_buffer, max_videos=limit, num_classes=self.num_classes,
                          on_corrupt=self.on_corrupt, index_cache=paths[0].parent / f".sdnn_index_{split}.json",
                          with_ids=with_ids, recipe=recipe, journal=self.journal)

    def loader(self, stream: YT8MStream) -> torch.utils.data.DataLoader:
        """Whole batches from the stream's own division over ``num_workers`` worker processes."""
        return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                                           pin_memory=torch.cuda.is_available(),
                                           generator=torch.Generator().manual_seed(self.seed))


def read_vocabulary(path, num_classes: int) -> list[str]:
    """Class names from YouTube-8M's ``vocabulary.csv`` (columns ``Index`` and ``Name``); [] without one."""
    if not path:
        return []
    import csv

    path = Path(os.path.expanduser(str(path)))
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = [str(i) for i in range(num_classes)]
        for row in rows:
            index = int(row["Index"])
            if 0 <= index < num_classes:
                names[index] = row.get("Name") or names[index]
        return names
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"dataset.vocabulary={path}: cannot read class names ({exc}); it should be YouTube-8M's "
                        "vocabulary.csv with Index and Name columns, or null") from exc


def label_pairs(labels: Sequence[np.ndarray], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The (video, class) pairs of a batch's label lists, as two int64 arrays; a clear error for a
    label outside 0..num_classes−1."""
    rows = np.repeat(np.arange(len(labels)), [len(v) for v in labels])
    cols = np.concatenate(labels).astype(np.int64) if len(labels) else np.zeros(0, np.int64)
    if len(cols) and (cols.min() < 0 or cols.max() >= num_classes):
        raise DataError(f"a YouTube-8M label is outside 0..{num_classes - 1} ({int(cols.min())}..."
                        f"{int(cols.max())}): these shards do not match dataset.num_classes={num_classes}")
    return rows, cols


def _shuffled(records: Iterator[bytes], size: int, rng: np.random.Generator) -> Iterator[bytes]:
    """A shuffle buffer: keep ``size`` records, emit a random one for each one read."""
    buffer: list[bytes] = []
    for data in records:
        if len(buffer) < size:
            buffer.append(data)
            continue
        slot = int(rng.integers(size))
        buffer[slot], data = data, buffer[slot]
        yield data
    rng.shuffle(buffer)
    yield from buffer
