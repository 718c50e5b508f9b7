"""Neglect ratios r_i (paper eq. 6–9) against a slow float64 loop, and their properties.

Reference: for every class i, loop over the samples κ with ζ = σ(h_{κ,i}) − y_{κ,i}:
    δ̂_i = −Σ_{y=1} ζ x_κ (pull),  δ̃_i = Σ_{y=0} ζ x_κ (push),  δ_i = Σ_κ ζ x_κ (all samples),
    r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖, NaN when class i has no positive; no 1/n factor.
δ_i is summed on its own (not as δ̃ − δ̂), so the loop also checks that identity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdnn.neglect import NeglectAccumulator, last_window_theta, neglect_norms, neglect_ratios


# ----------------------------------------------------------------------------- reference
def _sigmoid(h: float) -> float:
    return 1.0 / (1.0 + math.exp(-h)) if h >= 0 else math.exp(h) / (1.0 + math.exp(h))


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(e * e for e in v))


def ref_norms(x, logits, y):
    """(‖δ̂‖, ‖δ̃‖, ‖δ‖) per class, as three lists, from plain Python floats (float64)."""
    x = np.asarray(x, dtype=np.float64).tolist()
    h = np.asarray(logits, dtype=np.float64).tolist()
    y = np.asarray(y, dtype=np.float64).tolist()
    n, c, f = len(h), len(h[0]), len(x[0])
    pulls, pushes, totals = [], [], []
    for i in range(c):
        pull, push, total = [0.0] * f, [0.0] * f, [0.0] * f
        for k in range(n):
            zeta = _sigmoid(h[k][i]) - y[k][i]
            for j in range(f):
                if y[k][i] == 1.0:
                    pull[j] -= zeta * x[k][j]
                else:
                    push[j] += zeta * x[k][j]
                total[j] += zeta * x[k][j]
        pulls.append(_norm(pull))
        pushes.append(_norm(push))
        totals.append(_norm(total))
    return pulls, pushes, totals


def ref_ratios(x, logits, y):
    pulls, pushes, totals = ref_norms(x, logits, y)
    y = np.asarray(y, dtype=np.float64)
    out = []
    for i in range(len(pulls)):
        has_positive = any(y[k, i] == 1.0 for k in range(y.shape[0]))
        out.append((pulls[i] + pushes[i]) / totals[i] if has_positive else math.nan)
    return np.array(out)


def one_hot_loop(idx, c):
    y = np.zeros((len(idx), c))
    for k, cls in enumerate(idx):
        y[k, int(cls)] = 1.0
    return y


def make_batch(n, c, f, seed, dtype=torch.float32):
    """ReLU-like non-negative features (as a real penultimate layer gives), logits ~ N(0, 2²)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, f, generator=g, dtype=torch.float64)).to(dtype)
    logits = (2 * torch.randn(n, c, generator=g, dtype=torch.float64)).to(dtype)
    idx = torch.randint(0, c, (n,), generator=g)
    y = torch.tensor(one_hot_loop(idx.tolist(), c), dtype=dtype)
    return x, logits, idx, y


def make_multilabel(n, c, f, seed, dtype=torch.float32):
    """Multi-hot targets: 0 to 4 labels per sample (some samples have none)."""
    x, logits, _, _ = make_batch(n, c, f, seed, dtype)
    rng = np.random.default_rng(seed)
    y = np.zeros((n, c))
    for k in range(n):
        for cls in rng.choice(c, size=rng.integers(0, 5), replace=False):
            y[k, cls] = 1.0
    return x, logits, torch.tensor(y, dtype=dtype)


REGIMES = [
    (256, 5, 32),  # small c, large n: the direct path is cheaper
    (8, 200, 64),  # large c, small n: the Gram path is cheaper (most classes absent)
    (40, 40, 40),  # square
    (3, 50, 7),  # n ≪ c, n < f
]


# ----------------------------------------------------------------------------- ratios
@pytest.mark.parametrize("n, c, f", REGIMES)
@pytest.mark.parametrize("method", ["auto", "direct", "gram"])
def test_ratios_float32_match_the_float64_loop_for_index_and_one_hot_targets(n, c, f, method):
    x, logits, idx, y = make_batch(n, c, f, seed=1000 + n + c)
    expected = ref_ratios(x, logits, y)
    by_index = neglect_ratios(x, logits, idx, method=method)
    by_one_hot = neglect_ratios(x, logits, y, method=method)
    assert by_index.shape == (c,) and by_index.is_floating_point()
    np.testing.assert_allclose(by_index.double().numpy(), expected, rtol=1e-4, equal_nan=True)
    np.testing.assert_allclose(by_one_hot.double().numpy(), expected, rtol=1e-4, equal_nan=True)
    # One-hot and index forms of the same labels: identical results.
    np.testing.assert_allclose(by_index.double().numpy(), by_one_hot.double().numpy(), rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("n, c, f", [(64, 6, 12), (6, 60, 20)])
@pytest.mark.parametrize("method", ["direct", "gram"])
def test_ratios_float64_match_the_loop_tightly(n, c, f, method):
    x, logits, idx, y = make_batch(n, c, f, seed=7 * n + c, dtype=torch.float64)
    np.testing.assert_allclose(neglect_ratios(x, logits, idx, method=method).numpy(), ref_ratios(x, logits, y),
                               rtol=1e-9, equal_nan=True)


def test_default_method_is_auto_and_methods_agree():
    for n, c, f in [(256, 5, 32), (8, 200, 64)]:
        x, logits, idx, _ = make_batch(n, c, f, seed=3)
        default = neglect_ratios(x, logits, idx).double().numpy()
        for method in ("auto", "direct", "gram"):
            np.testing.assert_allclose(neglect_ratios(x, logits, idx, method=method).double().numpy(), default,
                                       rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("n, c, f", [(50, 12, 9), (10, 80, 16)])
@pytest.mark.parametrize("method", ["auto", "direct", "gram"])
def test_multilabel_targets_match_the_loop(n, c, f, method):
    x, logits, y = make_multilabel(n, c, f, seed=n * c)
    assert (y.sum(1) >= 2).any() and (y.sum(1) == 0).any()  # several labels, and none, per sample
    expected = ref_ratios(x, logits, y)
    got = neglect_ratios(x, logits, y, method=method)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-4, equal_nan=True)
    assert torch.equal(torch.isnan(got), y.sum(0) == 0)


@pytest.mark.parametrize("method", ["auto", "direct", "gram"])
def test_nan_exactly_for_classes_without_a_positive_and_ratio_at_least_one(method):
    for n, c, f, seed in [(30, 45, 10, 0), (200, 8, 16, 1), (5, 120, 33, 2)]:
        x, logits, idx, y = make_batch(n, c, f, seed=seed)
        present = [any(int(t) == i for t in idx) for i in range(c)]
        for targets in (idx, y):
            r = neglect_ratios(x, logits, targets, method=method)
            for i in range(c):
                if present[i]:
                    assert not math.isnan(float(r[i])) and float(r[i]) >= 1 - 1e-5, (i, float(r[i]))
                else:
                    assert math.isnan(float(r[i])), i
    assert not all(present) and any(present)


def test_a_class_with_only_positives_still_has_a_ratio():
    """Every sample positive for class 0: δ̃_0 = 0, so r_0 = ‖δ̂_0‖/‖δ_0‖ = 1."""
    x, logits, _, _ = make_batch(12, 3, 5, seed=4, dtype=torch.float64)
    idx = torch.zeros(12, dtype=torch.long)
    r = neglect_ratios(x, logits, idx)
    assert float(r[0]) == pytest.approx(1.0, rel=1e-9)
    assert torch.isnan(r[1:]).all()


@pytest.mark.parametrize("scale", [1e-3, 7.5, 1e3])
@pytest.mark.parametrize("method", ["direct", "gram"])
def test_ratios_are_invariant_to_scaling_the_features(scale, method):
    x, logits, idx, _ = make_batch(40, 25, 12, seed=9)
    r = neglect_ratios(x, logits, idx, method=method).double().numpy()
    r_scaled = neglect_ratios(scale * x, logits, idx, method=method).double().numpy()
    np.testing.assert_allclose(r_scaled, r, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("q0, q1", [(0.25, 0.3), (0.9, 0.05), (0.5, 0.5)])
def test_orthogonal_features_give_the_closed_form(q0, q1):
    """Positive x₀ = e₁, negative x₁ = e₂: δ̂ = (1 − q₀) e₁, δ̃ = q₁ e₂, δ = (q₀ − 1) e₁ + q₁ e₂."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    logits = torch.logit(torch.tensor([[q0], [q1]], dtype=torch.float64))
    y = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    pull, push, total = neglect_norms(x, logits, y)
    assert float(pull[0]) == pytest.approx(1 - q0, rel=1e-9)
    assert float(push[0]) == pytest.approx(q1, rel=1e-9)
    assert float(total[0]) == pytest.approx(math.hypot(1 - q0, q1), rel=1e-9)
    assert float(neglect_ratios(x, logits, y)[0]) == pytest.approx((1 - q0 + q1) / math.hypot(1 - q0, q1), rel=1e-9)


def test_no_one_over_n_factor():
    """Duplicating the batch doubles every δ, so the norms double (a 1/n factor would cancel it)."""
    x, logits, idx, _ = make_batch(10, 4, 6, seed=5, dtype=torch.float64)
    once = torch.stack(neglect_norms(x, logits, idx))
    twice = torch.stack(neglect_norms(torch.cat([x, x]), torch.cat([logits, logits]), torch.cat([idx, idx])))
    np.testing.assert_allclose(twice.numpy(), 2 * once.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- norms
@pytest.mark.parametrize("n, c, f", [(30, 50, 11), (120, 6, 20), (6, 90, 40)])
@pytest.mark.parametrize("method", ["auto", "direct", "gram"])
def test_norms_match_the_loop_for_every_class(n, c, f, method):
    x, logits, idx, _ = make_batch(n, c, f, seed=n + 2 * c)
    idx[idx == c - 1] = 0  # class c − 1 has no positive
    y = torch.tensor(one_hot_loop(idx.tolist(), c), dtype=x.dtype)
    expected = np.array(ref_norms(x, logits, y))  # (3, c)
    for targets in (idx, y):
        got = neglect_norms(x, logits, targets, method=method)
        assert isinstance(got, tuple) and len(got) == 3 and all(t.shape == (c,) for t in got)
        got = torch.stack(got).double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.max())
        absent = [i for i in range(c) if not any(int(t) == i for t in idx)]
        assert absent and all(abs(got[0, i]) <= 1e-6 * expected.max() for i in absent)  # ‖δ̂‖ = 0


@pytest.mark.parametrize("method", ["direct", "gram"])
def test_norms_multilabel_float64(method):
    x, logits, y = make_multilabel(25, 30, 8, seed=17, dtype=torch.float64)
    got = torch.stack(neglect_norms(x, logits, y, method=method)).numpy()
    np.testing.assert_allclose(got, np.array(ref_norms(x, logits, y)), rtol=1e-9, atol=1e-12)


def test_total_norm_is_n_times_the_output_weight_gradient_of_eq3():
    """Eq. 6: δ_i = n · ∂L/∂w_i for L the sigmoid CE of eq. 3 and logits = X Wᵀ + b (autograd)."""
    g = torch.Generator().manual_seed(21)
    n, c, f = 16, 7, 5
    x = torch.relu(torch.randn(n, f, generator=g, dtype=torch.float64))
    w = torch.randn(c, f, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    idx = torch.randint(0, c, (n,), generator=g)
    y = torch.tensor(one_hot_loop(idx.tolist(), c))
    logits = x @ w.T + b
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") / n
    loss.backward()
    _, _, total = neglect_norms(x, logits.detach(), idx)
    expected = [n * math.sqrt(sum(float(v) ** 2 for v in w.grad[i])) for i in range(c)]
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-9)


# ----------------------------------------------------------------------------- accumulator
def test_accumulator_theta_is_the_mean_of_non_nan_ratios_and_reset_clears():
    rng = np.random.default_rng(123)
    c = 7
    acc = NeglectAccumulator(c)
    steps = []
    for _ in range(15):
        r = 1 + 3 * rng.random(c)
        r[rng.random(c) < 0.5] = np.nan
        r[6] = np.nan  # class 6 never has a positive
        steps.append(r)
        acc.update(torch.tensor(r, dtype=torch.float32))
    expected_theta, expected_sum, expected_count = [], [], []
    for i in range(c):
        seen = [float(np.float32(s[i])) for s in steps if not math.isnan(s[i])]
        expected_sum.append(sum(seen))
        expected_count.append(len(seen))
        expected_theta.append(sum(seen) / len(seen) if seen else math.nan)
    assert any(0 < k < 15 for k in expected_count)  # some NaNs were really skipped
    theta = acc.theta()
    assert theta.shape == (c,)
    np.testing.assert_allclose(theta.double().numpy(), expected_theta, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(acc.sums.double().numpy(), expected_sum, rtol=1e-6)
    np.testing.assert_allclose(acc.counts.double().numpy(), expected_count)

    acc.reset()
    assert torch.isnan(acc.theta()).all()
    assert float(acc.sums.abs().sum()) == 0 and float(acc.counts.abs().sum()) == 0
    # After a reset only the new updates count.
    acc.update(torch.tensor([2.0, math.nan, 4.0, 1.5, math.nan, 3.0, math.nan]))
    acc.update(torch.tensor([4.0, 5.0, math.nan, 2.5, math.nan, 1.0, math.nan]))
    np.testing.assert_allclose(acc.theta().double().numpy(), [3.0, 5.0, 4.0, 2.0, math.nan, 2.0, math.nan],
                               rtol=1e-9, equal_nan=True)


def test_accumulator_fed_by_neglect_ratios():
    acc = NeglectAccumulator(20)
    per_step = []
    for step in range(4):
        x, logits, idx, _ = make_batch(12, 20, 6, seed=300 + step)
        r = neglect_ratios(x, logits, idx)
        per_step.append(r.double().numpy())
        acc.update(r)
    for i in range(20):
        seen = [s[i] for s in per_step if not math.isnan(s[i])]
        if seen:
            assert float(acc.theta()[i]) == pytest.approx(sum(seen) / len(seen), rel=1e-6)
        else:
            assert math.isnan(float(acc.theta()[i]))


# ----------------------------------------------------------------------------- kept from the previous version
# (outside the definitions above, but part of the module's API)
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


def test_last_window_theta_prefers_complete_windows():
    history = [{"complete": True, "theta": [1.0]}, {"complete": True, "theta": [2.0]},
               {"complete": False, "theta": [3.0]}]
    assert last_window_theta(history) == ([2.0], True)
    assert last_window_theta(history[2:]) == ([3.0], False)
