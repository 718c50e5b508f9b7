"""The label-free indicators (sdnn/indicators.py) on data whose answer is known, and their math against slow
references written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnn.indicators import (class_indicators, gaussian_references, principal_coordinates, probe_targets, ridge_probe,
                             separation_gap, split_stability)
from sdnn.partition import kmeans_split, random_split
from sdnn.subclass import build_subclass_to_class, subclass_numbers, subclass_targets


def _kmeans(vectors, seed, mean=None):
    return kmeans_split(vectors, 2, seed=seed, mean=mean)


def _random(vectors, seed, mean=None):
    return random_split(len(vectors), 2, seed=seed)


def two_modes(n, rng, dim=8, distance=8.0):
    """One class of two well-separated Gaussian modes (the fine labels are the modes)."""
    centre = np.zeros(dim)
    centre[0] = distance / 2
    fine = rng.integers(0, 2, n)
    return rng.standard_normal((n, dim)) + np.where(fine[:, None] == 0, centre, -centre), fine


def one_mode(n, rng, dim=8):
    """One elongated Gaussian mode (k-means still splits it, stably, along its long axis)."""
    return rng.standard_normal((n, dim)) * np.r_[4.0, np.ones(dim - 1)]


# ----------------------------------------------------------------------------------------------- per class

def test_two_separated_modes_have_a_large_gap_and_a_stable_split():
    rng = np.random.default_rng(0)
    x, fine = two_modes(600, rng)
    split = _kmeans(x, 0)
    assert abs(np.corrcoef(split, fine)[0, 1]) > 0.99  # k-means finds the modes
    result = class_indicators(x, split, _kmeans, seed=0)
    assert result.gap > 0.5 and result.gap_z > 10 and result.stability > 0.95


def test_one_mode_has_no_gap_though_its_split_is_stable():
    rng = np.random.default_rng(1)
    x = one_mode(600, rng)
    result = class_indicators(x, _kmeans(x, 0), _kmeans, seed=0)
    assert abs(result.gap) < 0.05 and abs(result.gap_z) < 4
    assert result.stability > 0.8  # why stability alone cannot tell modes apart (the module docstring)


def test_modes_only_in_the_fine_labels_noise_have_no_gap():
    """Fine labels drawn at random inside one mode: nothing a label-free indicator could (or should) see."""
    rng = np.random.default_rng(2)
    x = one_mode(600, rng)
    fine = rng.integers(0, 2, 600)
    split = _kmeans(x, 0)
    from sklearn.metrics import normalized_mutual_info_score

    assert normalized_mutual_info_score(fine, split) < 0.02
    assert abs(class_indicators(x, split, _kmeans, seed=3).gap) < 0.05


def test_a_random_split_is_unstable_and_explains_nothing():
    rng = np.random.default_rng(3)
    x, _ = two_modes(400, rng)
    result = class_indicators(x, _random(x, 0), _random, seed=0)
    assert abs(result.stability) < 0.1 and abs(result.gap) < 0.05


def test_the_gap_against_a_slow_reference():
    """log(W_H/W_1) of each reference minus that of the data, with W summed by a loop over the observations."""
    rng = np.random.default_rng(4)
    x, _ = two_modes(120, rng, dim=3)
    labels = _kmeans(x, 0)

    def explained(v, lab):
        means = {k: v[lab == k].mean(0) for k in set(lab.tolist())}
        within = sum(float(((row - means[k]) ** 2).sum()) for row, k in zip(v, lab))
        total = sum(float(((row - v.mean(0)) ** 2).sum()) for row in v)
        return np.log(within / total)

    references = [rng.standard_normal(x.shape) * 2 for _ in range(3)]  # any references: the arithmetic is checked
    logs = [explained(r, _kmeans(r, i + 1)) for i, r in enumerate(references)]
    gap, z = separation_gap(x, labels, _kmeans, references)
    assert gap == pytest.approx(np.mean(logs) - explained(x, labels), rel=1e-9)
    assert z == pytest.approx(gap / np.std(logs, ddof=1), rel=1e-9)


@pytest.mark.parametrize("n, d", [(4000, 3), (8, 20)])
def test_the_references_have_the_datas_mean_and_covariance(n, d):
    """Both ways of finding the principal axes (more rows than features, and fewer) draw from the data's
    Gaussian: the draws' mean and covariance match the data's, over many draws."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 3.0
    draws = np.concatenate(gaussian_references(x, np.random.default_rng(6), 4000 // n + 50))
    assert np.allclose(draws.mean(0), x.mean(0), atol=0.15 * x.std(0).max())
    covariance = np.cov(x, rowvar=False)
    assert np.allclose(np.cov(draws, rowvar=False), covariance, atol=0.1 * np.abs(covariance).max())


@pytest.mark.parametrize("n, d", [(300, 100), (50, 200)])
def test_principal_coordinates_against_numpys_svd(n, d):
    """The top-``width`` coordinates hold the same geometry as the projection onto the SVD's top right singular
    vectors (columns may differ in sign), and the point map sends each row to its own coordinates."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, d)) * np.linspace(3, 0.1, d) + 5.0
    coordinates, to_coordinates = principal_coordinates(x, 10)
    centred = x - x.mean(0)
    top = centred @ np.linalg.svd(centred, full_matrices=False)[2][:10].T
    assert coordinates.shape == (n, 10)
    assert np.allclose(coordinates @ coordinates.T, top @ top.T, atol=1e-8 * np.abs(top @ top.T).max())
    assert np.allclose(to_coordinates(x[3]), coordinates[3])
    same, identity = principal_coordinates(x, d)
    row = x[0]
    assert same is x and identity(row) is row


def test_principal_coordinates_of_fewer_rows_than_the_width_keep_the_axes_with_spread():
    """20 rows span 19 directions about their mean: no axis of zero spread (which would amplify rounding)."""
    x = np.random.default_rng(8).standard_normal((20, 200))
    coordinates, _ = principal_coordinates(x, 64)
    centred = x - x.mean(0)
    assert coordinates.shape == (20, 19)
    assert np.allclose(coordinates @ coordinates.T, centred @ centred.T, atol=1e-9)  # all the geometry kept


def test_wide_classes_are_judged_in_their_principal_coordinates():
    """Two modes and one elongated mode, each in 400 dimensions of noise: the top 64 principal coordinates keep
    what tells them apart, as in the narrow tests above (on a smaller scale: most of the spread is noise)."""
    rng = np.random.default_rng(8)
    rotation = np.linalg.qr(rng.standard_normal((400, 400)))[0]
    modes, _ = two_modes(600, rng, dim=400)
    modes = modes @ rotation
    result = class_indicators(modes, _kmeans(modes, 0), _kmeans, seed=0, mean=np.zeros(400))
    assert result.gap > 0.02 and result.gap_z > 4 and result.stability > 0.95
    full = class_indicators(modes, _kmeans(modes, 0), _kmeans, seed=0, mean=np.zeros(400), width=400)
    assert full.gap_z > 4 and full.gap < result.gap  # the noise's many small axes dilute the modes' share
    elongated = one_mode(600, rng, dim=400) @ rotation
    flat = class_indicators(elongated, _kmeans(elongated, 0), _kmeans, seed=0, mean=np.zeros(400))
    assert abs(flat.gap) < 0.01 and abs(flat.gap_z) < 2


def test_the_partitioner_sees_the_training_mean_in_the_same_coordinates():
    """Beyond the width the partitioner gets the projected mean: the same point as the vectors' map of it."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((200, 100))
    mean = rng.standard_normal(100)
    seen = []

    def recording(vectors, seed, centre):
        seen.append((vectors.shape[1], None if centre is None else centre.shape))
        return _kmeans(vectors, seed, centre)

    class_indicators(x, _kmeans(x, 0), recording, seed=0, mean=mean, width=16)
    expected = principal_coordinates(x, 16)[1](mean)
    assert set(seen) == {(16, (16,))}
    wide = []
    class_indicators(x, _kmeans(x, 0), lambda v, s, c: wide.append(c) or _kmeans(v, s, c), seed=0, mean=mean,
                     width=100)
    assert all(c is mean for c in wide) and len(expected) == 16


def test_stability_is_one_for_a_deterministic_split_of_separated_modes():
    rng = np.random.default_rng(5)
    x, _ = two_modes(300, rng, distance=20.0)
    assert split_stability(x, _kmeans, np.random.default_rng(0), pairs=2) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------- the probe

def xor_like(n_per_mode, rng, distance=6.0):
    """Class 0: two modes on either side of class 1's one mode. No single hyperplane tells class 0 from class 1;
    class 0's subclasses (its modes) each can be told from class 1 by one."""
    left = rng.standard_normal((n_per_mode, 2)) + [-distance, 0]
    right = rng.standard_normal((n_per_mode, 2)) + [distance, 0]
    middle = rng.standard_normal((2 * n_per_mode, 2))
    x = np.concatenate([left, right, middle])
    y = np.r_[np.zeros(2 * n_per_mode), np.ones(2 * n_per_mode)].astype(np.int64)
    modes = np.r_[np.zeros(n_per_mode), np.ones(n_per_mode), np.zeros(2 * n_per_mode)].astype(np.int64)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), torch.as_tensor(modes)


def _probe(x, y, numbers, selected, seed=0, **kwargs):
    s2c = build_subclass_to_class(int(y.max()) + 1, {k: 2 for k in selected})
    units = subclass_targets(y, numbers, s2c)
    classes, unit_targets = probe_targets(y, units, int(y.max()) + 1, len(s2c))
    return ridge_probe(x, classes, unit_targets, s2c, selected, 2, seed=seed, **kwargs)


def test_the_probe_sees_what_subclasses_buy_a_linear_head():
    x, y, modes = xor_like(300, np.random.default_rng(0))
    result = _probe(x, y, modes, [0])
    assert result.plain < 80 and result.delta > 15 and result.delta > 5 * result.delta_se


def test_the_probe_sees_nothing_to_buy_for_one_mode_per_class():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(np.concatenate([rng.standard_normal((400, 4)) + 1.5, rng.standard_normal((400, 4)) - 1.5]),
                        dtype=torch.float32)
    y = torch.as_tensor(np.r_[np.zeros(400), np.ones(400)].astype(np.int64))
    numbers = torch.as_tensor(_kmeans(x.numpy()[:400], 0).tolist() + [0] * 400)
    result = _probe(x, y, numbers, [0])
    assert abs(result.delta) < 3 * max(result.delta_se, 0.25) and abs(result.delta) < 1.5


def test_the_probe_against_slow_per_fold_least_squares():
    """Each fold's heads solved with numpy on the same standardised design, scored observation by observation."""
    rng = np.random.default_rng(2)
    x, y, modes = xor_like(40, rng)
    y = y.clone()
    y[::7] = 2  # a third class
    numbers = torch.where(y == 0, modes, torch.zeros_like(modes))
    folds, ridge, seed = 4, 0.05, 3
    result = _probe(x, y, numbers, [0, 1], seed=seed, folds=folds, ridge=ridge)

    xs = x.double().numpy()
    xs = (xs - xs.mean(0)) / xs.std(0, ddof=1)
    design = np.c_[xs, np.ones(len(xs))]
    c, n = 3, len(y)
    s2c = [0, 1, 2, 0, 1]
    unit = np.array([int(k) if (k not in (0, 1) or j == 0) else (3 if k == 0 else 4)
                     for k, j in zip(y.tolist(), numbers.tolist())])
    fold = np.random.default_rng(seed).permutation(n) % folds
    lam = ridge * np.trace(design.T @ design) / design.shape[1]
    right = {"plain": np.zeros(n), "units": np.zeros(n), "reweight": np.zeros(n)}
    for f in range(folds):
        kept, held = fold != f, fold == f
        a = design[kept].T @ design[kept] + lam * np.eye(design.shape[1])
        yc = np.eye(c)[y.numpy()[kept]]
        yu = np.eye(5)[unit[kept]]
        w_class, w_unit = np.linalg.solve(a, design[kept].T @ yc), np.linalg.solve(a, design[kept].T @ yu)
        w_re = w_class.copy()
        for k in (0, 1):
            weight = np.where(y.numpy()[kept] == k, 2.0, 1.0)  # positives of a selected class count H = 2 times
            w_re[:, k] = np.linalg.solve(design[kept].T @ (weight[:, None] * design[kept]) + lam * np.eye(len(a)),
                                         design[kept].T @ (weight * yc[:, k]))
        for i in np.flatnonzero(held):
            truth = int(y[i])
            right["plain"][i] = np.argmax(design[i] @ w_class) == truth
            unit_scores = design[i] @ w_unit
            right["units"][i] = s2c[int(np.argmax(unit_scores))] == truth
            right["reweight"][i] = np.argmax(design[i] @ w_re) == truth
    assert result.plain == pytest.approx(100 * right["plain"].mean())
    assert result.delta == pytest.approx(100 * (right["units"] - right["plain"]).mean())
    assert result.reweight == pytest.approx(100 * (right["reweight"] - right["plain"]).mean())
    assert result.delta_se == pytest.approx(100 * (right["units"] - right["plain"]).std(ddof=1) / np.sqrt(n))


def test_a_wide_probe_is_sketched_and_still_sees_what_subclasses_buy():
    """xor_like's two informative directions spread over 300 correlated columns: past ``width`` the heads see a
    seeded Gaussian sketch (its width recorded), which keeps the modes and so the subclasses' payoff."""
    rng = np.random.default_rng(4)
    x, y, modes = xor_like(300, rng)
    wide = x @ torch.as_tensor(rng.standard_normal((2, 300)), dtype=torch.float32)
    wide = wide + 0.1 * torch.as_tensor(rng.standard_normal(wide.shape), dtype=torch.float32)
    result = _probe(wide, y, modes, [0], width=32)
    assert (result.width, result.features) == (32, 300)
    assert result.delta > 15 and result.delta > 5 * result.delta_se
    assert _probe(wide, y, modes, [0], width=32) == result  # the sketch is seeded
    narrow = _probe(x, y, modes, [0])
    assert (narrow.width, narrow.features) == (2, 2)
    assert result.seen() == "a 32-column Gaussian sketch of the 300 phase-1 features"
    assert narrow.seen() == "the phase-1 features"


def test_the_probe_of_multilabel_data_counts_a_hit_at_one():
    """Multi-hot classes and units: a held-out observation is right when its top class is one of its labels."""
    rng = np.random.default_rng(3)
    x, y, modes = xor_like(200, rng)
    multi = torch.nn.functional.one_hot(y, 3).float()
    multi[:, 2] = (torch.rand(len(y), generator=torch.Generator().manual_seed(0)) < 0.2).float()  # a second label
    s2c = build_subclass_to_class(3, {0: 2})
    units = torch.zeros(len(y), len(s2c))
    units[torch.arange(len(y)), subclass_targets(y, torch.where(y == 0, modes, 0), s2c)] = 1
    units[:, 2] = multi[:, 2]
    classes, unit_targets = probe_targets(multi, units, 3, len(s2c))
    result = ridge_probe(x, classes, unit_targets, s2c, [0], 2, seed=0)
    assert result.delta > 10 and 0 <= result.plain <= 100


def test_subclass_numbers_from_units_and_multi_hot_units():
    s2c = build_subclass_to_class(4, {1: 3, 3: 2})  # units: 0 1 2 3 | 1 1 | 3
    y = torch.tensor([1, 0, 1, 3, 1, 3])
    numbers = torch.tensor([0, 0, 2, 1, 1, 0])
    units = subclass_targets(y, numbers, s2c)
    members, found = subclass_numbers(units, s2c, 1)
    assert members.tolist() == [0, 2, 4] and found.tolist() == [0, 2, 1]
    hot = torch.nn.functional.one_hot(units, len(s2c))
    members3, found3 = subclass_numbers(hot, s2c, 3)
    assert members3.tolist() == [3, 5] and found3.tolist() == [1, 0]
