"""The subclass label space (S = c + Σ(H_i − 1) units) against loop references.

Layout: units 0..c−1 are the classes (unit i ↔ class i = subclass 0 of class i); then, for each
selected class in ascending order, its H_i − 1 extra units (subclass 1, 2, ...).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnn.subclass import build_subclass_to_class, class_predictions, class_scores, subclass_targets


# ----------------------------------------------------------------------------- references
def ref_layout(c, per_class):
    s2c = list(range(c))
    for cls in sorted(per_class):
        for _ in range(per_class[cls] - 1):
            s2c.append(cls)
    return s2c


def ref_unit(cls, number, s2c, c):
    if number == 0:
        return cls
    extra = [u for u in range(c, len(s2c)) if s2c[u] == cls]
    return extra[number - 1]


def ref_class_scores(scores, s2c, c):
    rows = scores.tolist()
    return [[max(row[u] for u in range(len(s2c)) if s2c[u] == i) for i in range(c)] for row in rows]


def ref_predictions(logits, s2c):
    out = []
    for row in logits.tolist():
        best = max(range(len(row)), key=lambda u: row[u])
        out.append(s2c[best])
    return out


LAYOUTS = [
    (5, {3: 3, 1: 2}),  # insertion order differs from class order
    (4, {}),
    (6, {0: 2, 5: 4, 2: 1}),  # H = 1 adds no unit
    (10, {9: 2, 0: 3, 4: 2, 7: 5}),
]


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("c, per_class", LAYOUTS)
def test_layout_matches_the_loop(c, per_class):
    s2c = build_subclass_to_class(c, per_class)
    assert isinstance(s2c, torch.Tensor) and s2c.dtype == torch.long and s2c.dim() == 1
    assert len(s2c) == c + sum(h - 1 for h in per_class.values())
    assert s2c.tolist() == ref_layout(c, per_class)


def test_layout_worked_example():
    assert build_subclass_to_class(5, {3: 3, 1: 2}).tolist() == [0, 1, 2, 3, 4, 1, 3, 3]


# ----------------------------------------------------------------------------- targets
@pytest.mark.parametrize("c, per_class", LAYOUTS)
def test_subclass_targets_match_the_loop_and_round_trip(c, per_class):
    s2c = build_subclass_to_class(c, per_class)
    rng = np.random.default_rng(c)
    labels, numbers = [], []
    for _ in range(60):
        cls = int(rng.integers(0, c))
        labels.append(cls)
        numbers.append(int(rng.integers(0, per_class.get(cls, 1))))
    y, j = torch.tensor(labels), torch.tensor(numbers)
    units = subclass_targets(y, j, s2c)
    assert units.dtype == torch.long and units.shape == (60,)
    ref = ref_layout(c, per_class)
    assert units.tolist() == [ref_unit(a, b, ref, c) for a, b in zip(labels, numbers)]
    assert s2c[units].tolist() == labels  # round trip
    if per_class:
        assert any(b > 0 for b in numbers)


def test_subclass_targets_worked_example():
    s2c = build_subclass_to_class(5, {3: 3, 1: 2})  # [0 1 2 3 4 | 1 3 3]
    y = torch.tensor([0, 1, 1, 3, 3, 3, 4])
    j = torch.tensor([0, 0, 1, 0, 1, 2, 0])
    assert subclass_targets(y, j, s2c).tolist() == [0, 1, 5, 3, 6, 7, 4]


def test_every_unit_is_reached_exactly_once():
    c, per_class = 6, {1: 3, 4: 2}
    s2c = build_subclass_to_class(c, per_class)
    pairs = [(cls, k) for cls in range(c) for k in range(per_class.get(cls, 1))]
    units = subclass_targets(torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]), s2c)
    assert sorted(units.tolist()) == list(range(len(s2c)))


# ----------------------------------------------------------------------------- class-level scores
@pytest.mark.parametrize("c, per_class", LAYOUTS)
def test_class_scores_and_predictions_match_the_loop(c, per_class):
    s2c = build_subclass_to_class(c, per_class)
    g = torch.Generator().manual_seed(c)
    logits = 3 * torch.randn(25, len(s2c), generator=g, dtype=torch.float64)  # negatives too: max, not sum
    got = class_scores(logits, s2c, c)
    assert got.shape == (25, c)
    np.testing.assert_array_equal(got.numpy(), np.array(ref_class_scores(logits, s2c.tolist(), c)))
    probs = torch.sigmoid(logits)
    np.testing.assert_array_equal(class_scores(probs, s2c, c).numpy(),
                                  np.array(ref_class_scores(probs, s2c.tolist(), c)))
    preds = class_predictions(logits, s2c)
    assert preds.shape == (25,) and preds.tolist() == ref_predictions(logits, s2c.tolist())
    assert preds.tolist() == got.argmax(1).tolist()  # no ties with random floats


def test_class_scores_takes_the_extra_units_max():
    s2c = build_subclass_to_class(3, {0: 3})  # units: 0 1 2 | 0 0
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.3], [0.8, 0.1, 0.7, 0.2, 0.4], [-1.0, -2.0, -3.0, -0.5, -4.0]],
                          dtype=torch.float64)
    assert class_scores(scores, s2c, 3).tolist() == [[0.9, 0.5, 0.2], [0.8, 0.1, 0.7], [-0.5, -2.0, -3.0]]
    assert class_predictions(scores, s2c).tolist() == [0, 0, 0]
    peaks = torch.tensor([[0.0, 0.0, 0.0, 0.0, 9.0], [0.0, 0.0, 9.0, 8.0, 0.0]])
    assert class_predictions(peaks, s2c).tolist() == [0, 2]


def test_identity_map_changes_nothing():
    s2c = build_subclass_to_class(6, {})
    logits = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(class_scores(logits, s2c, 6), logits)
    assert torch.equal(class_predictions(logits, s2c), logits.argmax(1))
    y = torch.arange(10) % 6
    assert torch.equal(subclass_targets(y, torch.zeros(10, dtype=torch.long), s2c), y)
