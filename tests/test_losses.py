"""Eq. 3 (sigmoid CE) and eq. 11 (subclass CE, with sibling weight w) against float64 loops.

Reference, one sample κ and one unit s at a time, with ln σ(h) = −log(1 + e^{−h}) (numpy logaddexp):
    L = −(1/n) Σ_κ Σ_s [ y_{s,κ} ln σ(h) + ω_{s,κ} ln(1 − σ(h)) ],
    ω = 1 if class(s) is not a label of κ; 1 − w if it is but s is not positive (a sibling); 0 if s is positive.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdnn.losses import SigmoidCrossEntropy, SoftmaxCrossEntropy, SubclassBCELoss


# ----------------------------------------------------------------------------- reference
def log_sigmoid(h: float) -> float:
    return -float(np.logaddexp(0.0, -h))  # ln σ(h) = −ln(1 + e^{−h}), stable for |h| large


def sigmoid(h: float) -> float:
    return math.exp(log_sigmoid(h))


def negative_weight(y_row, s2c, s, w):
    """ω for unit s of a sample whose subclass labels are y_row."""
    if y_row[s] == 1:
        return 0.0
    label_classes = {s2c[u] for u in range(len(y_row)) if y_row[u] == 1}
    return (1.0 - w) if s2c[s] in label_classes else 1.0


def ref_subclass_loss(logits, y_sub, s2c, w):
    """Loss and its gradient w.r.t. the logits: dℓ/dh of −[y ln σ(h) + ω ln(1 − σ(h))] is −y(1 − σ) + ω σ."""
    h = np.asarray(logits, dtype=np.float64).tolist()
    y = np.asarray(y_sub, dtype=np.float64).tolist()
    s2c = [int(v) for v in s2c]
    n, S = len(h), len(h[0])
    total = 0.0
    grad = np.zeros((n, S))
    for k in range(n):
        for s in range(S):
            omega = negative_weight(y[k], s2c, s, w)
            total += y[k][s] * log_sigmoid(h[k][s]) + omega * log_sigmoid(-h[k][s])
            q = sigmoid(h[k][s])
            grad[k, s] = (-y[k][s] * (1 - q) + omega * q) / n
    return -total / n, grad


def ref_eq11_class_form(logits, y_sub, s2c):
    """Eq. 11 as printed: −(1/n) Σ [y_s ln q_s + (1 − y_{class(s)}) ln(1 − q_s)] with the class label."""
    h = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_sub, dtype=np.float64)
    n, S = h.shape
    total = 0.0
    for k in range(n):
        for s in range(S):
            y_class = 1.0 if any(y[k, u] == 1 and int(s2c[u]) == int(s2c[s]) for u in range(S)) else 0.0
            total += y[k, s] * log_sigmoid(h[k, s]) + (1 - y_class) * log_sigmoid(-h[k, s])
    return -total / n


def ref_eq3(logits, y):
    h = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, c = h.shape
    total = 0.0
    for k in range(n):
        for i in range(c):
            total += y[k, i] * log_sigmoid(h[k, i]) + (1 - y[k, i]) * log_sigmoid(-h[k, i])
    return -total / n


def one_hot_loop(idx, S):
    y = np.zeros((len(idx), S))
    for k, s in enumerate(idx):
        y[k, int(s)] = 1.0
    return y


S2C = torch.tensor([0, 1, 2, 3, 1, 3, 3])  # c = 4; class 1 has units {1, 4}, class 3 has units {3, 5, 6}
S2C_SHUFFLED = torch.tensor([2, 0, 1, 0, 2, 2, 1])  # any map works: class 2 has units {0, 4, 5}


def multilabel_targets():
    """Subclass-level multi-hot rows for S2C."""
    y = torch.zeros(6, 7, dtype=torch.float64)
    y[0, [0, 5]] = 1  # class 0 and subclass 2 of class 3 (which has 3 subclasses): siblings 3, 6
    y[1, [4, 2]] = 1  # subclass 1 of class 1 (sibling 1) and class 2
    y[2, 6] = 1  # subclass 2 of class 3 only
    y[3, [3, 6]] = 1  # two subclasses of class 3: sibling 5
    y[4, [1, 3, 2, 0]] = 1  # four classes, subclass 0 of each
    # row 5: no label at all: every unit is a plain negative
    return y


# ----------------------------------------------------------------------------- eq. 3
@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_sigmoid_ce_matches_eq3_for_index_and_multihot_targets(dtype, rel):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(24, 5, generator=g, dtype=torch.float64)).to(dtype)
    idx = torch.randint(0, 5, (24,), generator=g)
    loss = SigmoidCrossEntropy()(logits, idx)
    assert loss.dim() == 0
    assert float(loss.detach()) == pytest.approx(ref_eq3(logits, one_hot_loop(idx.tolist(), 5)), rel=rel)
    multi = (torch.rand(24, 5, generator=g) < 0.4).to(dtype)
    multi[0] = 0  # a sample with no label
    assert float(SigmoidCrossEntropy()(logits, multi)) == pytest.approx(ref_eq3(logits, multi), rel=rel)


# ----------------------------------------------------------------------------- eq. 11
@pytest.mark.parametrize("s2c", [S2C, S2C_SHUFFLED], ids=["layout", "shuffled-map"])
@pytest.mark.parametrize("w", [1.0, 0.9, 0.37, 0.0])
def test_subclass_loss_with_index_targets_matches_the_loop(w, s2c):
    g = torch.Generator().manual_seed(1)
    logits = (3 * torch.randn(30, 7, generator=g, dtype=torch.float64)).requires_grad_()
    t = torch.randint(0, 7, (30,), generator=g)
    loss = SubclassBCELoss(s2c, sibling_weight=w)(logits, t)
    expected, expected_grad = ref_subclass_loss(logits.detach(), one_hot_loop(t.tolist(), 7), s2c, w)
    assert loss.dim() == 0
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-10)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("w", [1.0, 0.9, 0.37, 0.0])
def test_subclass_loss_with_multihot_targets_matches_the_loop(w):
    y = multilabel_targets()
    logits = (2 * torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))).requires_grad_()
    loss = SubclassBCELoss(S2C, sibling_weight=w)(logits, y)
    expected, expected_grad = ref_subclass_loss(logits.detach(), y, S2C, w)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-10)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=1e-8, atol=1e-14)


def test_multihot_one_hot_rows_equal_index_targets():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 7, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (12,), generator=g)
    for w in (1.0, 0.37):
        a = SubclassBCELoss(S2C, w)(logits, t)
        b = SubclassBCELoss(S2C, w)(logits, torch.tensor(one_hot_loop(t.tolist(), 7)))
        assert float(a) == pytest.approx(float(b), rel=1e-12)


def test_unit_weight_is_eq11_with_the_class_label():
    g = torch.Generator().manual_seed(4)
    logits = 2 * torch.randn(18, 7, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (18,), generator=g)
    assert float(SubclassBCELoss(S2C)(logits, t)) == pytest.approx(  # default sibling_weight = 1
        ref_eq11_class_form(logits, one_hot_loop(t.tolist(), 7), S2C), rel=1e-10)
    y = multilabel_targets()
    assert float(SubclassBCELoss(S2C, 1.0)(logits[:6], y)) == pytest.approx(
        ref_eq11_class_form(logits[:6], y, S2C), rel=1e-10)


def test_zero_sibling_weight_is_plain_bce_over_the_subclass_units():
    g = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(16, 7, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (16,), generator=g)
    plain = F.binary_cross_entropy_with_logits(logits, F.one_hot(t, 7).double(), reduction="sum") / 16
    assert float(SubclassBCELoss(S2C, sibling_weight=0.0)(logits, t)) == pytest.approx(float(plain), rel=1e-12)
    y = multilabel_targets()
    plain = F.binary_cross_entropy_with_logits(logits[:6], y, reduction="sum") / 6
    assert float(SubclassBCELoss(S2C, sibling_weight=0.0)(logits[:6], y)) == pytest.approx(float(plain), rel=1e-12)


def test_loss_decreases_as_siblings_are_spared():
    """−(1 − w) ln(1 − q) ≥ 0 for every sibling term: the loss falls strictly with w when siblings exist."""
    logits = torch.randn(10, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([4, 1, 5, 3, 6, 4, 1, 5, 3, 6])  # all in classes with siblings
    losses = [float(SubclassBCELoss(S2C, w)(logits, t)) for w in (0.0, 0.3, 0.7, 1.0)]
    assert losses[0] > losses[1] > losses[2] > losses[3]
    # Targets in classes without siblings (0 and 2): w has no effect.
    t = torch.tensor([0, 2, 0, 2, 0, 2, 0, 2, 0, 2])
    assert float(SubclassBCELoss(S2C, 0.0)(logits, t)) == pytest.approx(float(SubclassBCELoss(S2C, 1.0)(logits, t)),
                                                                         rel=1e-12)


def test_batch_loss_is_the_mean_of_per_sample_losses():
    logits = torch.randn(9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([0, 1, 2, 3, 4, 5, 6, 4, 5])
    loss = SubclassBCELoss(S2C, 0.6)
    per_sample = [float(loss(logits[k:k + 1], t[k:k + 1])) for k in range(9)]
    assert float(loss(logits, t)) == pytest.approx(sum(per_sample) / 9, rel=1e-12)


def test_identity_map_equals_the_sigmoid_ce_of_eq3():
    g = torch.Generator().manual_seed(8)
    logits = 2 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (16,), generator=g)
    multi = (torch.rand(16, 5, generator=g) < 0.4).double()
    for w in (1.0, 0.37, 0.0):
        sub = SubclassBCELoss(torch.arange(5), sibling_weight=w)
        assert float(sub(logits, t)) == pytest.approx(float(SigmoidCrossEntropy()(logits, t)), rel=1e-12)
        assert float(sub(logits, multi)) == pytest.approx(float(SigmoidCrossEntropy()(logits, multi)), rel=1e-12)


# ----------------------------------------------------------------------------- stability and gradients
HUGE = [[200.0, -200.0, 150.0, -180.0, 90.0, -90.0, 0.0],
        [-200.0, 200.0, -200.0, 200.0, 200.0, -200.0, 200.0],
        [35.0, -35.0, 200.0, 200.0, -200.0, -200.0, 1.0]]


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("w", [1.0, 0.9, 0.0])
def test_huge_logits_give_finite_exact_loss_and_gradients(dtype, rel, w):
    t = torch.tensor([1, 4, 5])
    logits = torch.tensor(HUGE, dtype=dtype, requires_grad=True)
    loss = SubclassBCELoss(S2C, sibling_weight=w)(logits, t)
    expected, expected_grad = ref_subclass_loss(HUGE, one_hot_loop(t.tolist(), 7), S2C, w)
    assert math.isfinite(float(loss.detach())) and expected > 100  # wrong-signed ±200 logits cost ≈ 200 each
    assert float(loss.detach()) == pytest.approx(expected, rel=rel)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    np.testing.assert_allclose(logits.grad.double().numpy(), expected_grad, rtol=max(rel, 1e-8), atol=1e-7)
    y = torch.tensor([[0.0, 1, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0, 0]], dtype=dtype)
    logits = torch.tensor(HUGE, dtype=dtype, requires_grad=True)
    loss = SubclassBCELoss(S2C, sibling_weight=w)(logits, y)
    expected, expected_grad = ref_subclass_loss(HUGE, y, S2C, w)
    assert float(loss.detach()) == pytest.approx(expected, rel=rel)
    loss.backward()
    np.testing.assert_allclose(logits.grad.double().numpy(), expected_grad, rtol=max(rel, 1e-8), atol=1e-7)
    sce = SigmoidCrossEntropy()(torch.tensor(HUGE, dtype=dtype), torch.tensor([0, 1, 2]))
    assert float(sce) == pytest.approx(ref_eq3(HUGE, one_hot_loop([0, 1, 2], 7)), rel=rel)


def test_gradcheck():
    w = 0.7  # the analytic gradients for w = 1, 0.9, 0.37, 0 are checked against the loop above
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(3, 7, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.tensor([4, 0, 6])
    assert torch.autograd.gradcheck(lambda h: SubclassBCELoss(S2C, w)(h, t), (logits,))
    y = multilabel_targets()[:3]
    assert torch.autograd.gradcheck(lambda h: SubclassBCELoss(S2C, w)(h, y), (logits,))
    assert torch.autograd.gradcheck(lambda h: SigmoidCrossEntropy()(h, torch.tensor([0, 3, 6])), (logits,))


# ----------------------------------------------------------------------------- kept from the previous version
# (factory and argument checks: outside the definitions above, but part of the module's API)
def test_subclass_forms_and_bad_values():
    assert isinstance(SigmoidCrossEntropy().for_subclasses(S2C, 0.5), SubclassBCELoss)
    assert isinstance(SoftmaxCrossEntropy().for_subclasses(S2C), SoftmaxCrossEntropy)
    with pytest.raises(ValueError, match="sibling_weight"):
        SubclassBCELoss(S2C, sibling_weight=1.2)
    with pytest.raises(ValueError, match="multilabel"):
        SoftmaxCrossEntropy()(torch.randn(2, 3), torch.ones(2, 3))
