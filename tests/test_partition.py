"""Algorithm 1 (batch and on-line), k-means and random splits, augmentation, repartition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnn.augment import extrapolate, sample_pairing
from sdnn.partition import StreamingMedianSplit, kmeans_split, median_distance_split, random_split
from sdnn.repartition import Repartition, repartition, select_classes


def sorted_runs_reference(x, mean, h):
    """Algorithm 1 by hand: sort by distance, descending; cut into h runs at ⌊n·k/h⌋."""
    d = [float(np.sqrt(((row - mean) ** 2).sum())) for row in x]
    order = sorted(range(len(x)), key=lambda i: -d[i])
    n = len(x)
    out = [None] * n
    for rank, i in enumerate(order):
        out[i] = sum(rank >= (n * k) // h for k in range(1, h))
    return out


@pytest.mark.parametrize("n, h", [(10, 2), (11, 2), (17, 3), (23, 4), (1, 2)])
def test_median_distance_split_equals_sorting(n, h):
    rng = np.random.default_rng(n)
    x, mean = rng.normal(size=(n, 5)), rng.normal(size=5)
    got = median_distance_split(x, mean, h)
    assert got.tolist() == sorted_runs_reference(x, mean, h)
    if h == 2:  # the ⌊n/2⌋ farthest go to subclass 0
        assert (got == 0).sum() == n // 2
    assert median_distance_split(torch.tensor(x), torch.tensor(mean), h).tolist() == got.tolist()


def test_streaming_split_equals_the_batch_algorithm():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(257, 6))
    y = rng.integers(0, 4, size=257)
    stream = StreamingMedianSplit(n_subclasses=2)
    bounds = [0, 13, 90, 91, 200, 257]  # uneven chunks
    for a, b in zip(bounds, bounds[1:]):
        stream.add_to_mean(x[a:b])
    np.testing.assert_allclose(stream.mean, x.mean(0))
    for a, b in zip(bounds, bounds[1:]):
        stream.add_distances(x[a:b], y[a:b], classes=[1, 3])
    result = stream.split()
    for cls in (1, 3):
        rows = x[y == cls]
        assert result[cls]["subclass"].tolist() == median_distance_split(rows, x.mean(0)).tolist()
        d = np.linalg.norm(rows - x.mean(0), axis=1)
        np.testing.assert_allclose(result[cls]["farthest"], rows[np.argmax(d)])
        np.testing.assert_allclose(result[cls]["closest"], rows[np.argmin(d)])


def test_kmeans_recovers_blobs_and_numbers_the_far_one_zero():
    rng = np.random.default_rng(1)
    near = rng.normal(0, 0.1, size=(40, 3))
    far = rng.normal(0, 0.1, size=(25, 3)) + [8, 0, 0]
    x = np.concatenate([near, far])
    labels = kmeans_split(x, 2, seed=0)
    assert (labels[:40] == 1).all() and (labels[40:] == 0).all()  # the 25-blob's centroid is farther from x.mean(0)
    assert kmeans_split(x, 2, seed=0).tolist() == labels.tolist()
    mini = kmeans_split(x, 2, seed=0, minibatch_above=10)  # the mini-batch path
    assert (mini[:40] == 1).all() and (mini[40:] == 0).all()


def test_random_split_is_balanced_and_seeded():
    a, b, c = random_split(101, 3, seed=1), random_split(101, 3, seed=1), random_split(101, 3, seed=2)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    counts = np.bincount(a)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 101


def test_sample_pairing_and_extrapolation_formulas():
    x, p = torch.tensor([[1.0, 3.0]]), torch.tensor([[3.0, 5.0]])
    assert sample_pairing(x, p).tolist() == [[2.0, 4.0]]
    assert sample_pairing(torch.tensor([[10, 255]], dtype=torch.uint8),
                          torch.tensor([[11, 254]], dtype=torch.uint8)).tolist() == [[11, 255]]
    assert extrapolate(x, p, lam=0.5).tolist() == [[0.0, 2.0]]  # 0.5 (x − x̌) + x


def test_select_classes_takes_the_largest_theta_and_skips_nan():
    assert select_classes([1.2, float("nan"), 3.0, 2.5, 1.0], 2) == [2, 3]
    with pytest.raises(ValueError, match="only 2 classes"):
        select_classes([1.0, float("nan"), 2.0], 3)


def test_repartition_with_extrapolation_follows_algorithm1_and_eq12():
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(size=(60, 4)), dtype=torch.float32)
    y = torch.tensor(np.arange(60) % 3)
    rep = repartition(x, y, [2], 2, "median_split", "extrapolation", lambda v: v.flatten(1), seed=0, lam=0.5)
    members = np.flatnonzero(y.numpy() == 2)
    mean = x.double().mean(0).numpy()
    expected = median_distance_split(x[members].numpy(), mean)
    assert rep.subclass_of_train[members].tolist() == expected.tolist()
    assert (rep.subclass_of_train[y.numpy() != 2] == 0).all()
    x2, y2, numbers = rep.apply(x, y)
    assert len(x2) == 80 and (y2[60:] == 2).all()
    d = np.linalg.norm(x[members].double().numpy() - mean, axis=1)
    far, near = x[members[np.argmax(d)]], x[members[np.argmin(d)]]
    for j, k in enumerate(members):
        anchor = far if expected[j] == 0 else near
        torch.testing.assert_close(x2[60 + j], 0.5 * (x[k] - anchor) + x[k])
        assert numbers[60 + j] == expected[j]
    again = Repartition.from_arrays(rep.to_arrays())
    assert all(torch.equal(a, b) for a, b in zip(again.apply(x, y), rep.apply(x, y)))


def test_repartition_with_sample_pairing_partitions_the_doubled_class():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(40, 2, 3, 3)), dtype=torch.float32)
    y = torch.tensor(np.arange(40) % 4)
    rep = repartition(x, y, [1, 3], 3, "kmeans", "sample_pairing", lambda v: v.flatten(1), seed=0)
    x2, y2, numbers = rep.apply(x, y)
    assert len(x2) == 60 and sorted(rep.subclass_sizes(y)) == [1, 3]
    for cls in (1, 3):
        assert sum(rep.subclass_sizes(y)[cls]) == 20
    for j, (src, partner) in enumerate(zip(rep.added_source, rep.added_partner)):
        torch.testing.assert_close(x2[40 + j], (x[src] + x[partner]) / 2)
        assert y2[40 + j] == y[src]
