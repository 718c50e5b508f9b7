"""The subclass label space: layout, targets, class-level scores and predictions."""

from __future__ import annotations

import torch

from sdnn.subclass import build_subclass_to_class, class_predictions, class_scores, subclass_targets


def test_layout_keeps_classes_and_appends_extra_units_in_class_order():
    s2c = build_subclass_to_class(5, {3: 3, 1: 2})
    assert s2c.tolist() == [0, 1, 2, 3, 4, 1, 3, 3]
    assert build_subclass_to_class(4, {}).tolist() == [0, 1, 2, 3]


def test_targets_round_trip_and_match_a_loop():
    s2c = build_subclass_to_class(5, {3: 3, 1: 2})
    y = torch.tensor([0, 1, 1, 3, 3, 3, 4])
    j = torch.tensor([0, 0, 1, 0, 1, 2, 0])
    units = subclass_targets(y, j, s2c)
    expected = []
    for cls, number in zip(y.tolist(), j.tolist()):
        extra = [u for u in range(5, len(s2c)) if s2c[u] == cls]
        expected.append(cls if number == 0 else extra[number - 1])
    assert units.tolist() == expected == [0, 1, 5, 3, 6, 7, 4]
    assert torch.equal(s2c[units], y)


def test_class_scores_take_the_max_over_units_and_predictions_the_argmax_class():
    s2c = build_subclass_to_class(3, {0: 3})  # units: 0 1 2 | 0 0
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.3], [0.8, 0.1, 0.7, 0.2, 0.4]])
    loop = torch.tensor([[max(row[u] for u in range(5) if s2c[u] == c) for c in range(3)] for row in scores.tolist()])
    torch.testing.assert_close(class_scores(scores, s2c, 3), loop)
    assert class_predictions(scores, s2c).tolist() == [0, 0]


def test_identity_map_changes_nothing():
    s2c = build_subclass_to_class(6, {})
    logits = torch.randn(10, 6)
    assert torch.equal(class_scores(logits, s2c), logits)
    assert torch.equal(class_predictions(logits, s2c), logits.argmax(1))
