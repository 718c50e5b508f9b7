"""Hit@1, PERR, GAP@20, mAP against slow loops written from the YT8M starter code's
definitions; ties are broken the same way (stable sorts: lower class first within a video,
earlier video first when pooled); torchmetrics classes equal the functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnn.metrics import GAP, PERR, HitAtOne, MeanAP, accuracy, gap, hit_at_one, mean_ap, per_class_accuracy, perr


def ref_top_k(scores_row, k):
    """Indices of the k best classes of one video: score descending, then class ascending."""
    return sorted(range(len(scores_row)), key=lambda j: (-scores_row[j], j))[:k]


def ref_hit_at_one(p, y):
    return np.mean([1.0 if y[v][ref_top_k(p[v], 1)[0]] > 0 else 0.0 for v in range(len(p))])


def ref_perr(p, y):
    total = 0.0
    for v in range(len(p)):
        k = int(sum(y[v]))
        if k == 0:
            continue  # contributes 0, still counted in the denominator
        total += sum(1 for j in ref_top_k(p[v], k) if p[v][j] > 0 and y[v][j] > 0) / k
    return total / len(p)


def ref_ap(pairs, positives):
    """pairs: (score, is_label) in pooling order; a stable sort by score, descending."""
    ordered = sorted(range(len(pairs)), key=lambda i: -pairs[i][0])
    hits, ap = 0, 0.0
    for rank, i in enumerate(ordered, start=1):
        if pairs[i][1]:
            hits += 1
            ap += hits / rank
    return ap / positives if positives else 0.0


def ref_gap(p, y, k=20):
    pairs = [(p[v][j], y[v][j] > 0) for v in range(len(p)) for j in ref_top_k(p[v], k)]
    return ref_ap(pairs, sum(sum(r) for r in y))


def ref_map(p, y, k=20):
    c = len(p[0])
    aps = []
    for cls in range(c):
        positives = sum(y[v][cls] for v in range(len(p)))
        if positives == 0:
            continue
        pairs = [(p[v][cls], y[v][cls] > 0) for v in range(len(p)) if cls in ref_top_k(p[v], k)]
        aps.append(ref_ap(pairs, positives))
    return float(np.mean(aps))


def random_problem(seed, n=50, c=30, ties=False):
    rng = np.random.default_rng(seed)
    preds = rng.normal(size=(n, c))
    if ties:
        preds = np.round(preds, 1)
    labels = np.zeros((n, c))
    for v in range(n):
        if v % 7 == 3:
            continue  # a video with no label
        labels[v, rng.choice(c, size=rng.integers(1, 6), replace=False)] = 1
    return preds, labels


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True), (3, False)])
def test_functions_equal_the_references(seed, ties):
    p, y = random_problem(seed, ties=ties)
    assert hit_at_one(p, y) == pytest.approx(ref_hit_at_one(p, y))
    assert perr(p, y) == pytest.approx(ref_perr(p, y))
    assert gap(p, y) == pytest.approx(ref_gap(p, y))
    assert mean_ap(p, y) == pytest.approx(ref_map(p, y))
    assert gap(p, y, top_k=3) == pytest.approx(ref_gap(p, y, 3))
    assert mean_ap(p, y, top_k=3) == pytest.approx(ref_map(p, y, 3))
    assert gap(torch.tensor(p), torch.tensor(y)) == pytest.approx(gap(p, y))


def test_worked_example():
    p = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.7, 0.6, -0.5], [0.3, 0.1, 0.2, 0.4]])
    y = np.array([[0, 1, 0, 0], [0, 1, 1, 1], [1, 0, 0, 0]])
    # Hit@1: video 0 tops class 0 (no), video 1 class 1 (yes), video 2 class 3 (no).
    assert hit_at_one(p, y) == pytest.approx(1 / 3)
    # PERR: v0 top-1 = {0}: 0; v1 top-3 = {1, 2, 0}: 2/3 (class 3 is outside, and ≤ 0); v2 top-1 = {3}: 0.
    assert perr(p, y) == pytest.approx((0 + 2 / 3 + 0) / 3)
    # GAP@2: pairs (0.9,0) (0.8,1) (0.7,1) (0.6,1) (0.4,0) (0.3,1) sorted by score;
    # hits at ranks 2, 3, 4, 6 → (1/2 + 2/3 + 3/4 + 4/6) / 5 labels.
    assert gap(p, y, top_k=2) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 6) / 5)


def test_perfect_predictions_score_one():
    _, y = random_problem(5)
    y = y[y.sum(1) > 0]
    p = y + 0.01 * np.random.default_rng(0).random(y.shape)
    for metric in (hit_at_one, perr, gap, mean_ap):
        assert metric(p, y) == pytest.approx(1.0)


def test_torchmetrics_classes_accumulate_uneven_batches():
    p, y = random_problem(7, ties=True)
    p, y = torch.tensor(p), torch.tensor(y)
    metrics = {"hit": HitAtOne(), "perr": PERR(), "gap": GAP(30), "map": MeanAP(30)}
    for a, b in ((0, 7), (7, 31), (31, 50)):
        for m in metrics.values():
            m.update(p[a:b], y[a:b])
    assert float(metrics["hit"].compute()) == pytest.approx(hit_at_one(p, y))
    assert float(metrics["perr"].compute()) == pytest.approx(perr(p, y))
    assert float(metrics["gap"].compute()) == pytest.approx(gap(p, y))
    assert float(metrics["map"].compute()) == pytest.approx(mean_ap(p, y))
    assert sum(t.numel() for t in metrics["gap"].scores) == 50 * 20  # top-20 pairs only


def test_accuracy_per_class_against_a_loop():
    rng = np.random.default_rng(0)
    t, pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    t[t == 4] = 3  # class 4 has no sample
    loop = [np.mean([pred[i] == c for i in range(200) if t[i] == c]) if (t == c).any() else np.nan for c in range(5)]
    np.testing.assert_allclose(per_class_accuracy(pred, t, 5), loop, equal_nan=True)
    assert accuracy(pred, t) == pytest.approx(np.mean(pred == t))
