"""Losses: sigmoid cross-entropy (paper eq. 3), softmax cross-entropy, subclass CE (eq. 11), and
the comparison losses of ``method=baseline`` (SPEC §7b: focal, Poly-1, encouraging, LDR-KL, label
smoothing).

All take logits and compute in the stable log-sigmoid or log-softmax form
(``ln σ(h) = logsigmoid(h)``, ``ln(1 − σ(h)) = logsigmoid(−h)``, ``ln p = log_softmax(h)``). The
``loss`` config group's ``_target_`` is a class loss; ``for_subclasses`` gives its phase-2 form over
the S subclass units. The comparison losses have no subclass form: they train the baseline only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SigmoidCrossEntropy", "SoftmaxCrossEntropy", "SubclassBCELoss", "FocalLoss", "Poly1CrossEntropy",
           "EncouragingLoss", "LDRKLLoss", "LabelSmoothingCrossEntropy"]


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


# --------------------------------------------------------------------------- comparison losses (SPEC §7b)

def _hyperparameter(name: str, value, ok, rule: str) -> float:
    """``value`` as a float, or a ``ValueError`` ``"<name>=<value> <rule>"`` (which ``sdnn.config`` reports
    as ``loss.<name>=...``) when it is not a finite number or ``ok`` rejects it."""
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not ok(number):
        raise ValueError(f"{name}={value!r} {rule}")
    return number


def _log_p_true(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(ln p_t, ln(1 − p_t)) of the softmax, both from logsumexps: exact where p_t rounds to 1."""
    total = torch.logsumexp(logits, 1)
    true = F.one_hot(targets, logits.shape[1]).bool()
    others = torch.logsumexp(logits.masked_fill(true, -math.inf), 1)
    return logits.gather(1, targets[:, None]).squeeze(1) - total, others - total


class _SoftmaxClassLoss(nn.Module):
    """A loss on the softmax over c classes: one class index per sample, the batch mean of ``per_sample``.
    No ``for_subclasses``: ``method=baseline`` only (phase 1 of SDNN is eq. 3, phase 2 eq. 11)."""

    multilabel = False

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if not _is_index_target(targets):
            raise ValueError(f"{type(self).__name__} needs one class index per sample (multiclass data); "
                             "use loss=bce for multilabel data")
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return self.per_sample(logits, targets).mean()


class FocalLoss(_SoftmaxClassLoss):
    """Focal loss (Lin et al. 2017), softmax form: −(1 − p_t)^γ ln p_t; γ = 0 is cross-entropy."""

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = _hyperparameter("gamma", gamma, lambda g: g >= 0,
                                     "must be a number >= 0 (0 = plain cross-entropy)")

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        log_p, log_rest = _log_p_true(logits, targets)
        return -torch.exp(self.gamma * log_rest) * log_p  # (1 − p_t)^γ as exp(γ ln(1 − p_t)): finite gradients


class Poly1CrossEntropy(_SoftmaxClassLoss):
    """Poly-1 loss (Leng et al. 2022): −ln p_t + ε (1 − p_t); ε = 0 is cross-entropy."""

    def __init__(self, epsilon: float = 1.0):
        super().__init__()
        self.epsilon = _hyperparameter("epsilon", epsilon, lambda e: e >= -1,
                                       "must be a number >= -1 (below it the loss rises again as p_t -> 1)")

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        log_p, log_rest = _log_p_true(logits, targets)
        return -log_p + self.epsilon * log_rest.exp()


class EncouragingLoss(_SoftmaxClassLoss):
    """Encouraging loss (Zhao et al. 2022): −ln p_t + b(p_t), b(p) = ln max(1 − p, 1e-5) up to ``log_end``
    and its tangent at ``log_end`` above it; ``log_end=1`` is the plain bonus."""

    def __init__(self, log_end: float = 0.75):
        super().__init__()
        self.log_end = _hyperparameter("log_end", log_end, lambda e: 0 < e <= 1,
                                       "must be a number in (0, 1]: where the bonus ln(1 - p) turns into its tangent "
                                       "(1 = the plain bonus)")

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
        p, end = log_p.exp(), self.log_end
        bonus = torch.log(torch.clamp(1 - p, min=1e-5))
        if end < 1:
            bonus = torch.where(p > end, (p - end) / (end - 1) + math.log(1 - end), bonus)
        return -log_p + bonus


class LDRKLLoss(_SoftmaxClassLoss):
    """LDR-KL loss (Zhu et al. 2023): λ ln((1/c) Σ_k exp((margin·[k≠y] + h_k − h_y)/λ)) on the logits h."""

    def __init__(self, lam: float = 1.0, margin: float = 1.0):
        super().__init__()
        self.lam = _hyperparameter("lam", lam, lambda v: v > 0, "must be a number > 0 (the KL regulariser's weight λ; "
                                   "small λ tends to the max-margin hinge)")
        self.margin = _hyperparameter("margin", margin, lambda v: v >= 0, "must be a number >= 0")

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        other = 1 - F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        z = (self.margin * other + logits - logits.gather(1, targets[:, None])) / self.lam
        return self.lam * (torch.logsumexp(z, 1) - math.log(logits.shape[1]))


class LabelSmoothingCrossEntropy(_SoftmaxClassLoss):
    """Label smoothing (Szegedy et al. 2016): (1 − s)(−ln p_t) + s · mean_k(−ln p_k)."""

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        self.smoothing = _hyperparameter("smoothing", smoothing, lambda v: 0 <= v < 1,
                                         "must be a number in [0, 1): the share of the target spread over all classes")

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, 1)
        s = self.smoothing
        return -(1 - s) * log_p.gather(1, targets[:, None]).squeeze(1) - s * log_p.mean(1)


def has_subclass_form(loss: nn.Module | type) -> bool:
    """Whether a loss (or loss class) has ``for_subclasses``: what every method other than baseline needs."""
    return callable(getattr(loss, "for_subclasses", None))
