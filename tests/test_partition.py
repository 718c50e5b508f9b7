"""Algorithm 1 (batch and on-line), k-means and random splits, against hand-written references.

Algorithm 1 reference: d_κ = ‖x_κ − m‖; sort descending; with H subclasses the sorted order is cut
into H consecutive runs at ⌊n·k/H⌋, k = 1..H−1; run k is subclass k (0 = farthest from the mean).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdnn.augment import Extrapolation, SamplePairing, extrapolate, sample_pairing
from sdnn.partition import (KMeansSplit, MedianDistanceSplit, StreamingMedianSplit, kmeans_split,
                            median_distance_split, random_split)
from sdnn.repartition import Repartition, repartition, select_classes


# ----------------------------------------------------------------------------- reference
def distances(rows, mean):
    return [math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(row, mean))) for row in rows]


def ref_median_split(rows, mean, h):
    d = distances(rows, mean)
    n = len(d)
    assert len(set(d)) == n, "the test data must have distinct distances"
    order = sorted(range(n), key=lambda i: d[i], reverse=True)  # farthest first
    bounds = [math.floor(n * k / h) for k in range(1, h)]
    out = [0] * n
    for rank, i in enumerate(order):
        subclass = 0
        for b in bounds:
            if rank >= b:
                subclass += 1
        out[i] = subclass
    return out


def check_int_labels(labels, n, h):
    assert isinstance(labels, np.ndarray) and labels.shape == (n,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= 0 and labels.max() <= h - 1


# ----------------------------------------------------------------------------- Algorithm 1
@pytest.mark.parametrize("n, h", [(10, 2), (11, 2), (2, 2), (17, 3), (18, 3), (23, 4), (40, 4), (9, 4)])
def test_median_distance_split_equals_sorting(n, h):
    rng = np.random.default_rng(100 + n * h)
    x, mean = rng.normal(size=(n, 5)), rng.normal(size=5)
    expected = ref_median_split(x, mean, h)
    got = median_distance_split(x, mean, h)
    check_int_labels(got, n, h)
    assert got.tolist() == expected
    # Run sizes: ⌊n·(k+1)/H⌋ − ⌊n·k/H⌋.
    sizes = [math.floor(n * (k + 1) / h) - math.floor(n * k / h) for k in range(h)]
    assert [int((got == k).sum()) for k in range(h)] == sizes
    # torch inputs give the same numbers.
    assert median_distance_split(torch.tensor(x), torch.tensor(mean), h).tolist() == expected
    assert median_distance_split(torch.tensor(x, dtype=torch.float32), torch.tensor(mean, dtype=torch.float32),
                                 h).tolist() == ref_median_split(x.astype(np.float32), mean.astype(np.float32), h)


def test_median_split_default_is_two_and_the_farthest_half_is_zero():
    rng = np.random.default_rng(5)
    x, mean = rng.normal(size=(13, 4)), np.zeros(4)
    got = median_distance_split(x, mean)
    d = distances(x, mean)
    farthest_six = sorted(range(13), key=lambda i: -d[i])[:6]  # ⌊13/2⌋ = 6
    assert sorted(np.flatnonzero(got == 0).tolist()) == sorted(farthest_six)
    assert (got == 1).sum() == 7
    # Every observation in subclass 0 is farther from the mean than every one in subclass 1.
    assert min(d[i] for i in range(13) if got[i] == 0) > max(d[i] for i in range(13) if got[i] == 1)


def test_median_split_uses_the_given_mean_not_the_class_mean():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert median_distance_split(x, np.array([0.0]), 2).tolist() == [1, 1, 0, 0]
    assert median_distance_split(x, np.array([3.1]), 2).tolist() == [0, 0, 1, 1]


# ----------------------------------------------------------------------------- on-line Algorithm 1
def stream(x, y, chunk_bounds, classes, h):
    s = StreamingMedianSplit(n_subclasses=h)
    for a, b in zip(chunk_bounds, chunk_bounds[1:]):
        s.add_to_mean(x[a:b])
    for a, b in zip(chunk_bounds, chunk_bounds[1:]):
        s.add_distances(x[a:b], y[a:b], classes=classes)
    return s


@pytest.mark.parametrize("h", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_split_equals_the_batch_algorithm_over_random_chunks(h, seed):
    rng = np.random.default_rng(seed)
    n = 301
    x = rng.normal(size=(n, 6)) + rng.normal(size=6)
    y = rng.integers(0, 7, size=n)
    cuts = sorted(rng.choice(np.arange(1, n), size=9, replace=False).tolist())
    bounds = [0, *cuts, n]
    s = stream(x, y, bounds, classes=[3, 5], h=h)
    full_mean = [sum(float(x[k, j]) for k in range(n)) / n for j in range(6)]
    np.testing.assert_allclose(np.asarray(s.mean, dtype=np.float64), full_mean, rtol=1e-12, atol=1e-12)
    result = s.split()
    assert set(result) >= {3, 5}
    for cls in (3, 5):
        rows = [x[k] for k in range(n) if y[k] == cls]  # stream order
        expected = ref_median_split(rows, full_mean, h)
        check_int_labels(result[cls]["subclass"], len(rows), h)
        assert result[cls]["subclass"].tolist() == expected
        assert result[cls]["subclass"].tolist() == median_distance_split(np.array(rows), np.array(full_mean),
                                                                         h).tolist()
        d = distances(rows, full_mean)
        far = max(range(len(rows)), key=lambda i: d[i])
        near = min(range(len(rows)), key=lambda i: d[i])
        np.testing.assert_array_equal(np.asarray(result[cls]["farthest"]).reshape(-1), rows[far])
        np.testing.assert_array_equal(np.asarray(result[cls]["closest"]).reshape(-1), rows[near])


def test_streaming_mean_covers_all_classes_not_only_the_selected_ones():
    """Class 0 sits far away: leaving it out of the mean would change the split of class 1."""
    rng = np.random.default_rng(2)
    x1 = rng.normal(size=(20, 2))
    x0 = rng.normal(size=(30, 2)) + [50.0, 0.0]
    x = np.concatenate([x0, x1])
    y = np.array([0] * 30 + [1] * 20)
    s = stream(x, y, [0, 7, 33, 50], classes=[1], h=2)
    mean = x.mean(0)
    assert s.split()[1]["subclass"].tolist() == ref_median_split(x1, mean, 2)
    assert ref_median_split(x1, mean, 2) != ref_median_split(x1, x1.mean(0), 2)  # the test can tell them apart


# ----------------------------------------------------------------------------- k-means
def blobs(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.2, size=(40, 3))  # larger blob
    b = rng.normal(0, 0.2, size=(25, 3)) + [6.0, 2.0, -1.0]  # smaller blob
    perm = rng.permutation(65)
    x = np.concatenate([a, b])[perm]
    truth = np.array([0] * 40 + [1] * 25)[perm]  # 0 = blob a, 1 = blob b
    return x, truth


@pytest.mark.parametrize("seed", [0, 3])
def test_kmeans_recovers_two_blobs_and_numbers_the_far_one_zero(seed):
    x, truth = blobs(seed)
    labels = kmeans_split(x, 2, seed=seed)
    check_int_labels(labels, 65, 2)
    mean = x.mean(0)
    centroid = {blob: x[truth == blob].mean(0) for blob in (0, 1)}
    far_blob = max((0, 1), key=lambda blob: np.linalg.norm(centroid[blob] - mean))
    assert far_blob == 1  # the smaller blob: the data mean lies nearer the larger one
    for k in range(65):
        assert labels[k] == (0 if truth[k] == far_blob else 1)
    assert kmeans_split(x, 2, seed=seed).tolist() == labels.tolist()  # deterministic for a seed


def test_kmeans_numbers_three_clusters_by_centroid_distance_to_the_data_mean():
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 25.0]])
    sizes = [30, 20, 15]
    x = np.concatenate([rng.normal(0, 0.3, size=(m, 2)) + c for m, c in zip(sizes, centres)])
    truth = np.repeat([0, 1, 2], sizes)
    labels = kmeans_split(x, 3, seed=0)
    check_int_labels(labels, 65, 3)
    mean = x.mean(0)
    d = [np.linalg.norm(x[truth == b].mean(0) - mean) for b in range(3)]
    rank_of_blob = {b: r for r, b in enumerate(sorted(range(3), key=lambda b: -d[b]))}
    assert labels.tolist() == [rank_of_blob[b] for b in truth]


# ----------------------------------------------------------------------------- random
@pytest.mark.parametrize("n, h", [(101, 3), (10, 2), (64, 4), (7, 5)])
def test_random_split_is_balanced_and_seeded(n, h):
    a = random_split(n, h, seed=1)
    check_int_labels(a, n, h)
    counts = [int((a == k).sum()) for k in range(h)]
    assert max(counts) - min(counts) <= 1 and sum(counts) == n
    assert random_split(n, h, seed=1).tolist() == a.tolist()
    others = [random_split(n, h, seed=s).tolist() for s in (2, 3, 4)]
    assert any(o != a.tolist() for o in others)


def test_random_split_differs_between_seeds():
    assert random_split(200, 2, seed=0).tolist() != random_split(200, 2, seed=1).tolist()


# ----------------------------------------------------------------------------- kept from the previous version
# (augmentation and repartition: outside the definitions above)
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
    rep = repartition(x, y, [2], 2, MedianDistanceSplit(), Extrapolation(0.5), lambda v: v.flatten(1), seed=0)
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
    rep = repartition(x, y, [1, 3], 3, KMeansSplit(), SamplePairing(), lambda v: v.flatten(1), seed=0)
    x2, y2, numbers = rep.apply(x, y)
    assert len(x2) == 60 and sorted(rep.subclass_sizes()) == [1, 3]
    for cls in (1, 3):
        assert sum(rep.subclass_sizes()[cls]) == 20
        in_class = (y2 == cls).numpy()  # sizes counted independently from the phase-2 training set
        assert rep.subclass_sizes()[cls] == np.bincount(numbers.numpy()[in_class], minlength=3).tolist()
    for j, (src, partner) in enumerate(zip(rep.added_source, rep.added_partner)):
        torch.testing.assert_close(x2[40 + j], (x[src] + x[partner]) / 2)
        assert y2[40 + j] == y[src]
