"""θ (eq. 6–10) against a slow loop over classes and samples, and its properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdnn.neglect import NeglectAccumulator, last_window_theta, neglect_norms, neglect_ratios


def loop_norms(x, logits, y):
    """‖δ̂_i‖, ‖δ̃_i‖, ‖δ_i‖ by eq. 6–8, one class and one sample at a time, in float64."""
    x = np.asarray(x, dtype=np.float64)
    q = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
    y = np.asarray(y, dtype=np.float64)
    n, c = q.shape
    out = np.zeros((3, c))
    for i in range(c):
        pull = np.zeros(x.shape[1])   # δ̂_i = −Σ_{κ∈ω_i} ζ x
        push = np.zeros(x.shape[1])   # δ̃_i =  Σ_{κ∉ω_i} ζ x
        for k in range(n):
            zeta = q[k, i] - y[k, i]
            if y[k, i] == 1:
                pull += -zeta * x[k]
            else:
                push += zeta * x[k]
        delta = push - pull
        out[:, i] = np.linalg.norm(pull), np.linalg.norm(push), np.linalg.norm(delta)
    return out


def loop_ratios(x, logits, y):
    pull, push, delta = loop_norms(x, logits, y)
    has_positive = np.asarray(y).sum(0) > 0
    return np.where(has_positive, (pull + push) / delta, np.nan)


def _batch(n, c, f, seed, labels_per_sample=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, f, generator=g))
    logits = 2 * torch.randn(n, c, generator=g)
    if labels_per_sample == 1:
        idx = torch.randint(0, c, (n,), generator=g)
        y = torch.nn.functional.one_hot(idx, c).float()
        return x, logits, y, idx
    y = torch.zeros(n, c)
    for k in range(n):
        y[k, torch.randperm(c, generator=g)[:labels_per_sample]] = 1
    return x, logits, y, None


@pytest.mark.parametrize("n, c, f", [(256, 5, 32), (64, 10, 16), (8, 200, 64), (3, 40, 7)])
@pytest.mark.parametrize("method", ["auto", "direct", "gram"])
def test_ratios_equal_the_loop(n, c, f, method):
    x, logits, y, idx = _batch(n, c, f, seed=n + c)
    expected = loop_ratios(x, logits, y)
    got = neglect_ratios(x, logits, y, method=method)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, equal_nan=True)
    # Class-index targets give the same numbers as their one-hot form.
    np.testing.assert_allclose(neglect_ratios(x, logits, idx, method=method).numpy(), expected, rtol=1e-4,
                               equal_nan=True)


@pytest.mark.parametrize("method", ["direct", "gram"])
def test_multilabel_targets(method):
    x, logits, y, _ = _batch(40, 12, 9, seed=3, labels_per_sample=3)
    np.testing.assert_allclose(neglect_ratios(x, logits, y, method=method).numpy(), loop_ratios(x, logits, y),
                               rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("method", ["direct", "gram"])
def test_norms_equal_the_loop_for_every_class(method):
    x, logits, y, _ = _batch(30, 50, 11, seed=5)  # most classes have no positive
    got = torch.stack(neglect_norms(x, logits, y, method=method)).numpy()
    np.testing.assert_allclose(got, loop_norms(x, logits, y), rtol=1e-4, atol=1e-5)
    absent = y.sum(0) == 0
    assert absent.any() and (got[0][absent.numpy()] == 0).all()


def test_properties_ratio_at_least_one_nan_exactly_for_absent_classes_and_scale_free():
    x, logits, y, idx = _batch(50, 30, 20, seed=11)
    r = neglect_ratios(x, logits, idx)
    present = torch.zeros(30, dtype=torch.bool)
    present[idx] = True
    assert torch.equal(torch.isnan(r), ~present)
    assert (r[present] >= 1 - 1e-6).all()
    torch.testing.assert_close(neglect_ratios(7.5 * x, logits, idx), r, equal_nan=True)


def test_cancellation_gives_a_large_ratio():
    """A positive and a negative pulling the same feature in opposite directions:
    r = (|ζ₀| + |ζ₁|) / |ζ₀ + ζ₁|, which grows as the two contributions cancel."""
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[1.0], [0.0]])
    ratios = []
    for q1 in (0.3, 0.6, 0.7):  # the positive has q0 = 0.25, so ζ₀ = −0.75
        logits = torch.logit(torch.tensor([[0.25], [q1]], dtype=torch.float64))
        r = float(neglect_ratios(x.double(), logits, y.double()))
        assert r == pytest.approx((0.75 + q1) / abs(q1 - 0.75), rel=1e-9)
        ratios.append(r)
    assert ratios[0] < ratios[1] < ratios[2] and ratios[2] > 25


def test_accumulator_means_non_nan_ratios_and_resets():
    rng = np.random.default_rng(0)
    acc = NeglectAccumulator(6)
    steps = []
    for _ in range(9):
        r = 1 + rng.random(6)
        r[rng.random(6) < 0.4] = np.nan
        r[5] = np.nan  # class 5 never seen
        steps.append(r)
        acc.update(torch.tensor(r, dtype=torch.float32))
    expected = []
    for i in range(6):
        seen = [s[i] for s in steps if not math.isnan(s[i])]
        expected.append(sum(seen) / len(seen) if seen else math.nan)
    np.testing.assert_allclose(acc.theta().numpy(), expected, rtol=1e-6, equal_nan=True)
    assert acc.counts.tolist()[5] == 0
    acc.reset()
    assert torch.isnan(acc.theta()).all() and acc.sums.sum() == 0


def test_last_window_theta_prefers_complete_windows():
    history = [{"complete": True, "theta": [1.0]}, {"complete": True, "theta": [2.0]},
               {"complete": False, "theta": [3.0]}]
    assert last_window_theta(history) == ([2.0], True)
    assert last_window_theta(history[2:]) == ([3.0], False)
