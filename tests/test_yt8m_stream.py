"""YouTube-8M streaming (issue 4, item 1): synthetic shards in the real format, the division of
shards over DDP ranks × DataLoader workers (every record exactly once), shuffling, features,
labels, max_videos, the shard index cache and damaged shards."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from sdnn.data.tfrecord import count_records, decode_example, read_records
from sdnn.data.yt8m import ShardIndex, YT8MStream, find_shards, slot_ranges
from sdnn.data.yt8m_synth import write_synthetic_shards
from sdnn.errors import DataError
from tests.conftest import QUICK_GUARD, ROOT

CLASSES = 20


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("yt8m")
    # shards of unequal length, so that slot boundaries fall inside shards
    written = write_synthetic_shards(out, classes=CLASSES, train_shards=3, validate_shards=1, videos_per_shard=37)
    extra = write_synthetic_shards(out / "more", classes=CLASSES, train_shards=1, validate_shards=0,
                                   videos_per_shard=11, seed=1, first_id=10_000)
    return out, [*written["train"], *extra["train"]]


def _ids(batches) -> list[str]:
    return [video for batch in batches for video in batch[2]]


def _all_ids(paths) -> list[str]:
    return [decode_example(data)["id"][0].decode() for path in paths for _, data in read_records(path)]


def test_records_become_l2_normalised_features_and_multi_hot_labels(shards):
    _, paths = shards
    for features, size in (("rgb", 1024), ("rgb_audio", 1152)):
        stream = YT8MStream(paths[:1], batch_size=8, features=features, train=False, num_classes=CLASSES,
                            with_ids=True)
        x, y, ids = next(iter(stream))
        assert x.shape == (8, size) and x.dtype == torch.float32 and y.shape == (8, CLASSES)
        assert torch.allclose(x.norm(dim=1), torch.ones(8), atol=1e-5)
        first = decode_example(next(read_records(paths[0]))[1])
        raw = np.concatenate([first["mean_rgb"], first["mean_audio"]][: 1 if features == "rgb" else 2])
        assert np.allclose(x[0].numpy(), raw / np.linalg.norm(raw), atol=1e-6)
        assert torch.nonzero(y[0]).flatten().tolist() == first["labels"].tolist() and ids[0] == first["id"][0].decode()


@pytest.mark.parametrize("world, workers", [(1, 1), (1, 3), (2, 1), (2, 2), (3, 4)])
def test_evaluation_covers_every_record_exactly_once(shards, world, workers):
    _, paths = shards
    stream = YT8MStream(paths, batch_size=5, train=False, num_classes=CLASSES, with_ids=True)
    seen = [v for rank in range(world) for worker in range(workers)
            for v in _ids(stream.slot_batches(rank, world, worker, workers))]
    assert Counter(seen) == Counter(_all_ids(paths))
    assert stream.total == 3 * 37 + 11


@pytest.mark.parametrize("world, workers", [(1, 2), (2, 2), (3, 1)])
def test_training_gives_every_rank_the_same_full_batches_without_overlap(shards, world, workers):
    _, paths = shards
    stream = YT8MStream(paths, batch_size=6, train=True, num_classes=CLASSES, with_ids=True, shuffle_buffer=16)
    per_rank = []
    for rank in range(world):
        batches = [b for worker in range(workers) for b in stream.slot_batches(rank, world, worker, workers)]
        assert all(len(b[2]) == 6 for b in batches)
        per_rank.append(_ids(batches))
    assert len({len(ids) for ids in per_rank}) == 1 and len(per_rank[0]) == stream.num_batches(world) * 6
    seen = [v for ids in per_rank for v in ids]
    assert len(seen) == len(set(seen)) and set(seen) <= set(_all_ids(paths))
    assert stream.total - len(seen) < world * 6  # only what cannot fill a batch on every rank


def test_epochs_reshuffle_and_each_epoch_still_has_no_duplicates(shards):
    _, paths = shards
    stream = YT8MStream(paths, batch_size=4, train=True, num_classes=CLASSES, with_ids=True, shuffle_buffer=8)
    orders = []
    for epoch in range(2):
        stream.set_epoch(epoch)
        ids = _ids(stream.slot_batches(0, 1, 0, 1))
        assert len(ids) == len(set(ids)) == (stream.total // 4) * 4
        orders.append(ids)
    assert orders[0] != orders[1]
    stream.set_epoch(0)
    assert _ids(stream.slot_batches(0, 1, 0, 1)) == orders[0]  # seeded: the same epoch, the same order


def test_dataloader_workers_split_the_shards(shards):
    _, paths = shards
    stream = YT8MStream(paths, batch_size=5, train=False, num_classes=CLASSES, with_ids=True)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2, collate_fn=lambda b: b)
    assert Counter(_ids(loader)) == Counter(_all_ids(paths))


def test_slot_ranges_partition_the_stream():
    for total, batch, world, workers, drop in [(100, 7, 3, 2, False), (100, 7, 3, 2, True), (5, 8, 2, 2, False)]:
        ranges = slot_ranges(total, batch, world, workers, drop)
        assert len(ranges) == world * workers
        assert all(a <= b for a, b in ranges) and all(ranges[i][1] <= ranges[i + 1][0] for i in range(len(ranges) - 1))
        covered = sum(b - a for a, b in ranges)
        assert covered == (total if not drop else (total // (world * batch)) * world * batch)


def test_max_videos_and_the_index_cache(shards, tmp_path):
    _, paths = shards
    cache = tmp_path / "index.json"
    stream = YT8MStream(paths, batch_size=10, train=False, max_videos=25, num_classes=CLASSES, with_ids=True,
                        index_cache=cache)
    assert _ids(stream.slot_batches(0, 1, 0, 1)) == _all_ids(paths)[:25]
    assert cache.is_file() and ShardIndex.build(paths, cache).counts == (37, 37, 37, 11)
    assert [count_records(p) for p in paths] == [37, 37, 37, 11]


def test_damaged_shard_is_named_or_skipped_and_counted(shards, tmp_path):
    _, paths = shards
    damaged = tmp_path / "train9999.tfrecord"
    data = bytearray(paths[0].read_bytes())
    data[12 + 50] ^= 0xFF  # inside the first record's data
    damaged.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train9999.tfrecord: the record at byte offset 0 is damaged \(data checksum"):
        list(YT8MStream([damaged], batch_size=8, train=False, num_classes=CLASSES))
    stream = YT8MStream([damaged], batch_size=8, train=False, num_classes=CLASSES, with_ids=True, on_corrupt="skip")
    ids = _ids(stream.slot_batches(0, 1, 0, 1))
    assert ids == _all_ids(paths[:1])[1:] and len(stream.corruption) == 1


def test_bad_options_and_missing_shards(tmp_path, shards):
    _, paths = shards
    with pytest.raises(DataError, match="no YouTube-8M shards match .*train\\*.tfrecord"):
        find_shards(tmp_path / "train*.tfrecord")
    with pytest.raises(DataError, match="dataset.features='flow'"):
        YT8MStream(paths, batch_size=4, features="flow")
    with pytest.raises(DataError, match="outside 0..9"):
        next(iter(YT8MStream(paths, batch_size=64, train=False, num_classes=10)))


def test_synth_command_writes_shards(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sdnn.data.yt8m_synth", str(tmp_path), "--classes", "8",
                           "--train-shards", "2", "--validate-shards", "1", "--videos-per-shard", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=QUICK_GUARD)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in find_shards(tmp_path / "*.tfrecord")] == ["train0000.tfrecord", "train0001.tfrecord",
                                                                      "validate0000.tfrecord"]
    bad = subprocess.run([sys.executable, "-m", "sdnn.data.yt8m_synth", str(tmp_path), "--classes", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=QUICK_GUARD)
    assert bad.returncode == 2 and "--classes must be >= 4" in bad.stderr
