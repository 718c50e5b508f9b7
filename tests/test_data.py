"""Data: npz layouts and errors, normalisation, the whole-batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnn.data.sources import Digits, Npz
from sdnn.data.npz import load_npz_splits
from sdnn.data.tensors import IndexBatchSampler, batch_loader
from sdnn.errors import DataError
from tests.conftest import write_npz


@pytest.mark.parametrize("kind, shape", [("nhwc", (3, 8, 8)), ("nchw", (3, 8, 8)), ("gray", (1, 8, 8)),
                                         ("vectors", (24,))])
def test_npz_layouts_become_nchw_or_vectors(tmp_path, kind, shape):
    path = write_npz(tmp_path / "d.npz", kind)
    splits = load_npz_splits(str(path))
    assert splits.input_shape == shape and splits.num_classes == 3
    raw = np.load(path)
    if kind == "nhwc":  # pixel (row 2, col 5, channel 1) of image 7 keeps its value
        assert splits.x_train[7, 1, 2, 5] == pytest.approx(raw["x_train"][7, 2, 5, 1] / 255)


def test_normalisation_uses_train_statistics(tmp_path):
    path = write_npz(tmp_path / "d.npz", "nchw", with_val=True)
    splits = Npz(name="npz", path=str(path), normalize=True).load()
    means = splits.x_train.mean((0, 2, 3))
    stds = splits.x_train.std((0, 2, 3))
    torch.testing.assert_close(means, torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(stds, torch.ones(3), atol=1e-3, rtol=0)
    assert splits.x_val is not None and len(splits.x_val) == 30


def test_validation_split_is_held_out_of_train():
    full = Digits(name="digits", normalize=False).load()
    held = Digits(name="digits", val_fraction=0.2, normalize=False).load()
    assert len(held.x_train) + len(held.x_val) == len(full.x_train)
    assert torch.equal(held.x_test, full.x_test)


def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, int)), "missing array"),
    (dict(x_train=np.zeros((4, 3)), y_train=np.zeros(3, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
     "has 4 rows but y_train has 3"),
    (dict(x_train=np.full((4, 3), np.nan), y_train=np.arange(4) % 2, x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
     "NaN or Inf"),
    (dict(x_train=np.zeros((4, 3)), y_train=np.array([0, 1, -1, 0]), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
     "negative class label"),
    (dict(x_train=np.zeros((4, 3)), y_train=np.array([0, 2, 2, 0]), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
     r"class\(es\) \[1\] have no training sample"),
    (dict(x_train=np.zeros((4, 3)), y_train=np.array([0.0, 1, 1, 0]), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
     "integer class labels"),
    (dict(x_train=np.zeros((4, 3, 8, 3)), y_train=np.arange(4) % 2, x_test=np.zeros((2, 3, 8, 3)),
          y_test=np.zeros(2, int)), "dataset.layout"),
    (dict(x_train=np.zeros((4, 3)), y_train=np.arange(4) % 2, x_test=np.zeros((2, 5)), y_test=np.zeros(2, int)),
     "different sample shapes"),
])
def test_npz_errors_name_the_problem(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz_splits(_save(tmp_path / "bad.npz", **arrays))


def test_corrupt_or_missing_npz(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz_splits(str(bad))
    with pytest.raises(DataError, match="no such file"):
        load_npz_splits(str(tmp_path / "absent.npz"))


def test_sampler_covers_every_index_once_per_epoch_and_reshuffles():
    sampler = IndexBatchSampler(103, 10, shuffle=True, seed=5)
    first = torch.cat(list(sampler))
    assert len(sampler) == 11 and sorted(first.tolist()) == list(range(103))
    again = torch.cat(list(sampler))
    sampler.set_epoch(1)
    second = torch.cat(list(sampler))
    assert torch.equal(first, again) and not torch.equal(first, second)
    dropping = IndexBatchSampler(103, 10, shuffle=True, drop_last=True)
    assert len(dropping) == 10 and all(len(b) == 10 for b in dropping)


def test_sampler_shards_ranks_without_overlap(monkeypatch):
    parts = []
    for rank in range(3):
        monkeypatch.setattr("sdnn.data.tensors.rank_world", lambda r=rank: (r, 3))
        sampler = IndexBatchSampler(120, 10, shuffle=True, seed=1, drop_last=True)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4
        parts.append(torch.cat(batches))
    together = torch.cat(parts).tolist()
    assert len(together) == len(set(together)) == 120


def test_loader_yields_whole_batches():
    x, y = torch.arange(50.0).reshape(25, 2), torch.arange(25)
    batches = list(batch_loader(x, y, 8, shuffle=False))
    assert [len(b[0]) for b in batches] == [8, 8, 8, 1]
    assert torch.equal(batches[1][0], x[8:16]) and torch.equal(batches[1][1], y[8:16])


def test_evaluation_sampler_covers_every_index_once_across_ranks(monkeypatch):
    parts = []
    for rank in range(3):
        monkeypatch.setattr("sdnn.data.tensors.rank_world", lambda r=rank: (r, 3))
        sampler = IndexBatchSampler(103, 10, shuffle=False)  # 11 batches over 3 ranks: 4, 4, 3
        batches = list(sampler)
        assert len(batches) == len(sampler) == (4 if rank < 2 else 3)
        parts.append(torch.cat(batches))
    assert sorted(torch.cat(parts).tolist()) == list(range(103))


def test_train_per_class_keeps_a_seeded_subset_of_each_class():
    from sdnn.data.tensors import subsample_per_class

    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.integers(0, 5, size=200))
    x = torch.arange(200)
    xs, ys = subsample_per_class(x, y, 7, seed=3)
    for c in range(5):  # min(count, 7) per class, every kept sample really of that class
        assert int((ys == c).sum()) == min(int((y == c).sum()), 7)
    assert torch.equal(y[xs], ys) and torch.equal(xs, torch.sort(xs).values)
    again, _ = subsample_per_class(x, y, 7, seed=3)
    other, _ = subsample_per_class(x, y, 7, seed=4)
    assert torch.equal(xs, again) and not torch.equal(xs, other)
