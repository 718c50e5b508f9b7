"""Losses: sigmoid cross-entropy (paper eq. 3), softmax cross-entropy, subclass CE (eq. 11).

All take logits and compute in the stable log-sigmoid form
(``ln σ(h) = logsigmoid(h)``, ``ln(1 − σ(h)) = logsigmoid(−h)``). The ``loss`` config group's
``_target_`` is a class loss; ``for_subclasses`` gives its phase-2 form over the S subclass units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SigmoidCrossEntropy", "SoftmaxCrossEntropy", "SubclassBCELoss", "build_loss"]


def _is_index_target(targets: Tensor) -> bool:
    return targets.dim() == 1 and not torch.is_floating_point(targets)


class SigmoidCrossEntropy(nn.Module):
    """Eq. 3: ``−(1/n) Σ_κ Σ_i [y ln q + (1 − y) ln(1 − q)]`` over c independent sigmoid units;
    with ``positive_weight`` (c,) the positive term of class i is weighted by ``positive_weight[i]``
    (``method=reweight``, SPEC §7b).

    ``targets``: class indices (n,) or a float multi-hot (n, c).
    """

    multilabel = True  # independent sigmoid units: multi-hot targets are fine

    def __init__(self, positive_weight: Tensor | None = None):
        super().__init__()
        weight = None if positive_weight is None else torch.as_tensor(positive_weight, dtype=torch.float32)
        self.register_buffer("positive_weight", weight, persistent=False)

    def reweighted(self, positive_weight: Tensor) -> SigmoidCrossEntropy:
        """Eq. 3 with each class's positive term weighted (the emphasis of SDNN without its split)."""
        return SigmoidCrossEntropy(positive_weight)

    def for_subclasses(self, subclass_to_class: Tensor, sibling_weight: float = 1.0) -> nn.Module:
        """Eq. 11 over the subclass units."""
        return SubclassBCELoss(subclass_to_class, sibling_weight)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if _is_index_target(targets):
            targets = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        weight = None if self.positive_weight is None else self.positive_weight.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=weight,
                                                  reduction="sum") / logits.shape[0]


class SoftmaxCrossEntropy(nn.Module):
    """Softmax cross-entropy; with subclass targets it treats every subclass as a class."""

    multilabel = False

    def for_subclasses(self, subclass_to_class: Tensor, sibling_weight: float = 1.0) -> nn.Module:
        """Every subclass a class (the sibling weight does not apply)."""
        return self

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if not _is_index_target(targets):
            raise ValueError("softmax cross-entropy needs one class index per sample (multiclass data); "
                             "use loss=bce for multilabel data")
        return F.cross_entropy(logits, targets)


class SubclassBCELoss(nn.Module):
    """Subclass cross-entropy, eq. 11, with the original code's sibling weight w.

    ``L = −(1/n) Σ_κ Σ_s [y_{s,κ} ln q_{s,κ} + ω_{s,κ} ln(1 − q_{s,κ})]`` where the negative
    weight ω is 1 for units of classes the sample does not belong to, ``1 − w`` for the
    sibling subclasses of its own class(es), 0 for its own subclass. ``w = 1`` is exactly
    eq. 11 (the class label ``y_{i,κ}`` in the negative term); ``w = 0`` is plain BCE over
    the S units.

    Args:
        subclass_to_class: LongTensor (S,) giving the class of every output unit.
        sibling_weight: w in [0, 1].
    Call with logits (n, S) and targets: subclass indices (n,) or a float multi-hot (n, S).
    """

    def __init__(self, subclass_to_class: Tensor | list[int], sibling_weight: float = 1.0):
        super().__init__()
        if not 0.0 <= float(sibling_weight) <= 1.0:
            raise ValueError(f"sibling_weight must be in [0, 1], got {sibling_weight}")
        s2c = torch.as_tensor(subclass_to_class, dtype=torch.long)
        self.register_buffer("subclass_to_class", s2c, persistent=False)
        self.num_classes = int(s2c.max()) + 1 if s2c.numel() else 0
        # (S, c) membership matrix, for multi-hot targets.
        self.register_buffer("membership", F.one_hot(s2c, self.num_classes).float(), persistent=False)
        self.sibling_weight = float(sibling_weight)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        s2c = self.subclass_to_class
        if _is_index_target(targets):
            own_class = s2c[targets]  # (n,)
            y_sub = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
            y_cls = (s2c.unsqueeze(0) == own_class.unsqueeze(1)).to(logits.dtype)  # (n, S)
        else:
            y_sub = targets.to(logits.dtype)
            membership = self.membership.to(logits.dtype)
            y_cls = ((y_sub @ membership) @ membership.T).clamp_max(1)
        w = self.sibling_weight
        neg_weight = 1 - y_cls + (1 - w) * (y_cls - y_sub)
        loss = -(y_sub * F.logsigmoid(logits) + neg_weight * F.logsigmoid(-logits)).sum()
        return loss / logits.shape[0]


LOSSES: dict[str, type[nn.Module]] = {"bce": SigmoidCrossEntropy, "ce": SoftmaxCrossEntropy}


def build_loss(name: str, subclass_to_class: Tensor | None = None, sibling_weight: float = 1.0) -> nn.Module:
    """A loss by its ``loss=`` name; with a subclass map, its subclass form."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    loss = LOSSES[name]()
    return loss if subclass_to_class is None else loss.for_subclasses(subclass_to_class, sibling_weight)
