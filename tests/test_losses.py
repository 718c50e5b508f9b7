"""Eq. 3 and eq. 11 term by term against loops; properties; stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdnn.losses import SigmoidCrossEntropy, SoftmaxCrossEntropy, SubclassBCELoss, build_loss


def log_sigmoid(h):
    return -np.logaddexp(0.0, -h)  # ln σ(h), stable


def loop_subclass_ce(logits, y_sub, s2c, w):
    """Eq. 11 with sibling weight w, one sample and one unit at a time (float64)."""
    logits, y_sub = np.asarray(logits, np.float64), np.asarray(y_sub, np.float64)
    n, S = logits.shape
    total = 0.0
    for k in range(n):
        own_classes = {int(s2c[s]) for s in range(S) if y_sub[k, s] == 1}
        for s in range(S):
            h = logits[k, s]
            if y_sub[k, s] == 1:
                total += log_sigmoid(h)  # y ln q; its negative term has weight 0
            elif int(s2c[s]) in own_classes:
                total += (1 - w) * log_sigmoid(-h)  # a sibling subclass of an own class
            else:
                total += log_sigmoid(-h)  # (1 − y_class) ln(1 − q)
    return -total / n


S2C = torch.tensor([0, 1, 2, 3, 1, 3, 3])  # c = 4; class 1 has 2 subclasses, class 3 has 3


@pytest.mark.parametrize("w", [1.0, 0.9, 0.37, 0.0])
def test_subclass_ce_with_index_targets_equals_the_loop(w):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20, 7, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (20,), generator=g)
    y_sub = F.one_hot(t, 7).numpy()
    got = SubclassBCELoss(S2C, sibling_weight=w)(logits, t)
    assert float(got) == pytest.approx(loop_subclass_ce(logits, y_sub, S2C, w), rel=1e-10)


@pytest.mark.parametrize("w", [1.0, 0.5, 0.0])
def test_subclass_ce_with_multilabel_targets_equals_the_loop(w):
    y = torch.zeros(4, 7, dtype=torch.float64)
    y[0, [0, 5]] = 1        # class 0 and subclass 2 of class 3
    y[1, [4, 2]] = 1        # subclass 1 of class 1, class 2
    y[2, 6] = 1             # subclass 2 of class 3 only
    y[3, [1, 3]] = 1        # subclass 0 of class 1 and subclass 0 of class 3
    logits = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = SubclassBCELoss(S2C, sibling_weight=w)(logits, y)
    assert float(got) == pytest.approx(loop_subclass_ce(logits, y.numpy(), S2C, w), rel=1e-10)


def test_zero_sibling_weight_is_plain_bce_over_subclasses():
    logits = torch.randn(16, 7, dtype=torch.float64)
    t = torch.randint(0, 7, (16,))
    plain = F.binary_cross_entropy_with_logits(logits, F.one_hot(t, 7).double(), reduction="sum") / 16
    torch.testing.assert_close(SubclassBCELoss(S2C, sibling_weight=0.0)(logits, t), plain)


def test_identity_map_is_the_sigmoid_ce_of_eq3():
    logits = torch.randn(16, 5, dtype=torch.float64)
    t = torch.randint(0, 5, (16,))
    eq3 = SigmoidCrossEntropy()(logits, t)
    torch.testing.assert_close(SubclassBCELoss(torch.arange(5))(logits, t), eq3)
    q, y = torch.sigmoid(logits), F.one_hot(t, 5).double()
    by_definition = -(y * q.log() + (1 - y) * (1 - q).log()).sum() / 16
    torch.testing.assert_close(eq3, by_definition)
    torch.testing.assert_close(SigmoidCrossEntropy()(logits, y), eq3)


def test_stable_for_huge_logits_with_finite_gradients():
    logits = torch.tensor([[200.0, -200.0, 150.0, -180.0, 90.0, -90.0, 0.0]], dtype=torch.float64,
                          requires_grad=True)
    t = torch.tensor([1])
    loss = SubclassBCELoss(S2C, sibling_weight=0.9)(logits, t)
    expected = loop_subclass_ce(logits.detach(), F.one_hot(t, 7).numpy(), S2C, 0.9)
    assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert float(SubclassBCELoss(S2C, 0.9)(logits.detach().float(), t)) == pytest.approx(expected, rel=1e-5)


def test_gradcheck():
    logits = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([4, 0, 6])
    assert torch.autograd.gradcheck(lambda h: SubclassBCELoss(S2C, 0.7)(h, t), (logits,))


def test_factory_and_bad_values():
    assert isinstance(build_loss("bce"), SigmoidCrossEntropy)
    assert isinstance(build_loss("bce", S2C, 0.5), SubclassBCELoss)
    assert isinstance(build_loss("ce", S2C), SoftmaxCrossEntropy)
    with pytest.raises(ValueError, match="sibling_weight"):
        SubclassBCELoss(S2C, sibling_weight=1.2)
    with pytest.raises(ValueError, match="multilabel"):
        SoftmaxCrossEntropy()(torch.randn(2, 3), torch.ones(2, 3))
