"""YouTube-8M metrics (Hit@1, PERR, GAP, mAP) and class accuracies.

The references below are slow, loop-per-video transcriptions of the YT8M starter code
(``eval_util`` + ``average_precision_calculator``), written independently of ``sdnn.metrics``.
The starter code breaks ties at random (a fixed-seed shuffle before a stable sort, and
``argpartition``); both sides here use one deterministic rule instead:

* within a video, equal scores rank by the lower class index: key (-score, class);
* GAP pools the top-k pairs class-major (per class, videos in order: ``top_k_by_class``) and
  ranks them by a stable descending sort of the score (Python's ``sorted(..., reverse=True)``
  keeps the order of equal keys), so equal scores rank by (class, video);
* mAP: each class's list is in video order, then a stable descending sort by score.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdnn.metrics import GAP, PERR, HitAtOne, MeanAP, accuracy, gap, hit_at_one, mean_ap, per_class_accuracy, perr

# ----------------------------------------------------------------------------- slow references


def ref_ranking(row):
    """All classes of one video, best first; equal scores: lower class first."""
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


def ref_hit_at_one(p, y):
    hits = 0.0
    for v in range(len(p)):
        best = 0
        for j in range(1, len(p[v])):
            if p[v][j] > p[v][best]:  # strict: the first of equal maxima stays
                best = j
        hits += 1.0 if y[v][best] > 0 else 0.0
    return hits / len(p)


def ref_perr(p, y):
    aggregated = 0.0
    for v in range(len(p)):
        num_labels = int(sum(y[v]))
        if num_labels == 0:
            continue  # the starter code's item_precision is 0 here; the video still counts below
        item = sum(y[v][j] for j in ref_ranking(p[v])[:num_labels] if p[v][j] > 0)
        aggregated += item / num_labels
    return aggregated / len(p)


def ref_ap(predictions, actuals, num_positives):
    """AveragePrecisionCalculator.ap_at_n without the shuffle: stable sort, descending."""
    if num_positives == 0:
        return float("nan")
    sortidx = sorted(range(len(predictions)), key=lambda i: predictions[i], reverse=True)
    ap, poscount = 0.0, 0
    for rank, i in enumerate(sortidx, start=1):
        if actuals[i] > 0:
            poscount += 1
            ap += poscount / rank
    return ap / num_positives


def ref_top_k_by_class(p, y, k):
    """The starter code's top_k_by_class with a deterministic top k per video."""
    c = len(p[0])
    k = min(k, c)
    out_p, out_y = [[] for _ in range(c)], [[] for _ in range(c)]
    for v in range(len(p)):
        for j in ref_ranking(p[v])[:k]:
            out_p[j].append(p[v][j])
            out_y[j].append(y[v][j])
    positives = [sum(y[v][j] for v in range(len(p))) for j in range(c)]
    return out_p, out_y, positives


def ref_gap(p, y, k=20):
    out_p, out_y, positives = ref_top_k_by_class(p, y, k)
    flat_p = [s for cls in out_p for s in cls]
    flat_y = [a for cls in out_y for a in cls]
    return ref_ap(flat_p, flat_y, sum(positives))


def ref_map(p, y, k=20):
    out_p, out_y, positives = ref_top_k_by_class(p, y, k)
    aps = [ref_ap(out_p[j], out_y[j], positives[j]) for j in range(len(positives)) if positives[j] > 0]
    return sum(aps) / len(aps) if aps else float("nan")


# ----------------------------------------------------------------------------- data


def random_problem(seed, n=50, c=30, ties=True, empty_every=7):
    """Informative scores with negatives; ``ties``: rounded to 1 decimal; 1–5 labels per video,
    every ``empty_every``-th video none."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, c))
    for v in range(n):
        if empty_every and v % empty_every == 3:
            continue
        labels[v, rng.choice(c, size=rng.integers(1, 6), replace=False)] = 1
    preds = rng.normal(size=(n, c)) + 1.0 * labels
    if ties:
        preds = np.round(preds, 1)
    return preds, labels


CASES = [(0, True), (1, True), (2, True), (3, False), (4, True)]


@pytest.mark.parametrize("seed, ties", CASES)
def test_hit_at_one_and_perr_equal_the_loops(seed, ties):
    p, y = random_problem(seed, ties=ties)
    assert (p < 0).any() and (y.sum(1) == 0).any()
    assert hit_at_one(p, y) == pytest.approx(ref_hit_at_one(p, y), abs=1e-12)
    assert perr(p, y) == pytest.approx(ref_perr(p, y), abs=1e-12)


@pytest.mark.parametrize("seed, ties", CASES)
@pytest.mark.parametrize("top_k", [20, 3, 45])
def test_gap_and_map_equal_the_loops(seed, ties, top_k):
    p, y = random_problem(seed, ties=ties)
    assert gap(p, y, top_k=top_k) == pytest.approx(ref_gap(p, y, top_k), abs=1e-12)
    assert mean_ap(p, y, top_k=top_k) == pytest.approx(ref_map(p, y, top_k), abs=1e-12)


def test_ties_actually_occur_and_matter():
    """The rounded scores tie across the top-k boundary and across videos, so the tie rule is
    exercised: an opposite rule (video-major pooling) gives a different GAP."""
    p, y = random_problem(1)
    assert any(len(set(row)) < len(row) for row in p)
    pairs = [(p[v][j], y[v][j]) for v in range(len(p)) for j in ref_ranking(p[v])[:20]]
    video_major = ref_ap([s for s, _ in pairs], [a for _, a in pairs], y.sum())
    assert video_major != pytest.approx(gap(p, y), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_numpy_torch_and_float32_inputs_agree(seed):
    p, y = random_problem(seed)
    for fn in (hit_at_one, perr, gap, mean_ap):
        expected = fn(p, y)
        assert fn(torch.tensor(p), torch.tensor(y)) == pytest.approx(expected, abs=1e-12)
        # 1-decimal values stay ordered and tied in float32; labels as bool/int work too
        assert fn(torch.tensor(p, dtype=torch.float32), torch.tensor(y, dtype=torch.bool)) == pytest.approx(expected,
                                                                                                          abs=1e-12)
        assert fn(p.astype(np.float32), y.astype(np.int64)) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- torchmetrics


@pytest.mark.parametrize("seed, top_k", [(5, 20), (6, 4)])
def test_torchmetrics_classes_accumulate_uneven_batches(seed, top_k):
    p, y = random_problem(seed)
    pt, yt = torch.tensor(p, dtype=torch.float32), torch.tensor(y)
    metrics = {hit_at_one: HitAtOne(), perr: PERR(), gap: GAP(top_k=top_k), mean_ap: MeanAP(30, top_k=top_k)}
    for a, b in ((0, 7), (7, 38), (38, 50)):
        for m in metrics.values():
            m.update(pt[a:b], yt[a:b])
    for fn, m in metrics.items():
        kwargs = {"top_k": top_k} if fn in (gap, mean_ap) else {}
        value = m.compute()
        assert value.dim() == 0
        assert float(value) == pytest.approx(fn(p, y, **kwargs), abs=1e-12)
    # memory: only the top-k triples per video, never (n, c)
    for m in (metrics[gap], metrics[mean_ap]):
        assert sum(t.numel() for t in m.scores) == 50 * top_k
        assert all(t.dtype == torch.long for t in m.classes)
    assert metrics[mean_ap].positives.tolist() == y.sum(0).astype(int).tolist()
    assert int(metrics[gap].num_labels) == int(y.sum())
    # reset empties the states
    for m in metrics.values():
        m.reset()
        m.update(pt[:10], yt[:10])
    assert float(metrics[gap].compute()) == pytest.approx(gap(p[:10], y[:10], top_k=top_k), abs=1e-12)


def test_metric_classes_check_the_number_of_classes():
    p, y = random_problem(0)
    with pytest.raises(ValueError):
        MeanAP(29).update(torch.tensor(p), torch.tensor(y))
    with pytest.raises(ValueError):
        GAP(num_classes=29).update(torch.tensor(p), torch.tensor(y))


# ----------------------------------------------------------------------------- worked examples

P = np.array([[0.9, 0.8, 0.1, -0.2],     # labels {0, 3}
              [-0.3, -0.7, -0.1, -0.2],  # labels {2}: ranked first but with a score ≤ 0
              [0.5, -0.1, 0.4, 0.95]])   # no label
Y = np.array([[1, 0, 0, 1],
              [0, 0, 1, 0],
              [0, 0, 0, 0]])


def test_worked_example_hit_at_one_and_perr():
    # Hit@1: v0 tops class 0 (label), v1 class 2 (label), v2 class 3 (no label, counted) → 2/3.
    assert hit_at_one(P, Y) == pytest.approx(2 / 3)
    # PERR: v0 k=2, top-2 {0, 1}: class 0 hits → 1/2; v1 k=1, top-1 {2} is a label but its
    # score −0.1 ≤ 0 → 0; v2 no label → 0, still in the denominator: (1/2 + 0 + 0) / 3.
    assert perr(P, Y) == pytest.approx(1 / 6)


def test_worked_example_gap_and_map_top2():
    # Top-2 pairs: v0 (0.9 c0 ✓) (0.8 c1); v1 (−0.1 c2 ✓) (−0.2 c3); v2 (0.95 c3) (0.5 c0).
    # Pooled, sorted: 0.95 ✗, 0.9 ✓, 0.8 ✗, 0.5 ✗, −0.1 ✓, −0.2 ✗ → hits at ranks 2 and 5;
    # 3 labels in all (v0's class 3 at −0.2 fell outside its top 2).
    assert gap(P, Y, top_k=2) == pytest.approx((1 / 2 + 2 / 5) / 3)
    # mAP: class 0 pairs (0.9 ✓, 0.5 ✗) → 1/1; class 1 has no positive → left out;
    # class 2 (−0.1 ✓) → 1/1; class 3 pairs (0.95 ✗, −0.2 ✗ from v1), 1 positive → 0.
    assert mean_ap(P, Y, top_k=2) == pytest.approx((1 + 1 + 0) / 3)


def test_worked_example_gap_with_ties_top4():
    # All 12 pairs. Sorted: 0.95 v2c3, 0.9 v0c0 ✓, 0.8 v0c1, 0.5 v2c0, 0.4 v2c2, 0.1 v0c2, then
    # the tie at −0.1: class-major pooling puts v2c1 (rank 7) before v1c2 ✓ (rank 8); the tie at
    # −0.2: both class 3, so video order: v0c3 ✓ (rank 9), v1c3 (rank 10); then −0.3, −0.7.
    assert gap(P, Y, top_k=4) == pytest.approx((1 / 2 + 2 / 8 + 3 / 9) / 3)
    assert gap(P, Y, top_k=99) == gap(P, Y, top_k=4)  # top_k > c means c
    # mAP, class 3: pairs 0.95 (v2), −0.2 ✓ (v0), −0.2 (v1) → the tie goes to v0: 1/2.
    # class 0: 0.9 ✓, 0.5, −0.3 → 1; class 2: 0.4, 0.1, −0.1 ✓ → 1/3.
    assert mean_ap(P, Y, top_k=4) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)


def test_ties_inside_a_video_go_to_the_lower_class():
    p = np.array([[0.5, 0.5, 0.5]])
    y = np.array([[0, 0, 1]])
    assert hit_at_one(p, y) == 0.0  # top-1 is class 0
    assert perr(p, y) == 0.0  # top-1 of k=1 is class 0
    assert gap(p, y, top_k=1) == 0.0  # class 2 is not in the top 1
    assert gap(p, y, top_k=3) == pytest.approx(1 / 3)  # ranks c0, c1, c2 ✓
    assert perr(np.array([[0.5, 0.5, 0.5]]), np.array([[1, 0, 0]])) == 1.0


def test_perfect_predictions_score_one():
    _, y = random_problem(8, empty_every=0)
    p = y + 0.05 * np.random.default_rng(0).random(y.shape)  # labels ≥ 1, others < 0.05
    for fn in (hit_at_one, perr, gap, mean_ap):
        assert fn(p, y) == pytest.approx(1.0)
    for m in (HitAtOne(), PERR(), GAP(), MeanAP(30)):
        m.update(torch.tensor(p), torch.tensor(y))
        assert float(m.compute()) == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_undefined_values_are_nan_and_bad_input_raises():
    p = np.array([[0.2, 0.1]])
    y = np.zeros((1, 2))
    assert math.isnan(gap(p, y)) and math.isnan(mean_ap(p, y))
    assert perr(p, y) == 0.0 and hit_at_one(p, y) == 0.0
    assert math.isnan(hit_at_one(np.zeros((0, 2)), np.zeros((0, 2))))
    assert math.isnan(float(GAP().compute())) and math.isnan(float(MeanAP(2).compute()))
    assert math.isnan(float(HitAtOne().compute()))
    with pytest.raises(ValueError):
        gap(p, y, top_k=0)
    with pytest.raises(ValueError):
        perr(p, np.zeros((1, 3)))


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_per_class_against_a_loop():
    rng = np.random.default_rng(0)
    t, pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    t[t == 4] = 3  # class 4 has no sample
    loop = []
    for c in range(5):
        n = sum(1 for i in range(200) if t[i] == c)
        hits = sum(1 for i in range(200) if t[i] == c and pred[i] == c)
        loop.append(hits / n if n else np.nan)
    out = per_class_accuracy(pred, t, 5)
    assert isinstance(out, np.ndarray) and out.shape == (5,)
    np.testing.assert_allclose(out, loop, equal_nan=True)
    np.testing.assert_allclose(per_class_accuracy(torch.tensor(pred), torch.tensor(t), 5), loop, equal_nan=True)
    assert accuracy(pred, t) == pytest.approx(sum(pred[i] == t[i] for i in range(200)) / 200)
    assert isinstance(accuracy(torch.tensor(pred), torch.tensor(t)), float)
    with pytest.raises(ValueError):
        per_class_accuracy(pred, t, 3)  # a target outside [0, 3)
