"""The subclass label space (SPEC §3): S = c + Σ(H_i − 1) output units.

Unit i (< c) is class i itself, which is also subclass 0 of class i, so unselected classes
keep their index. The extra units of the selected classes follow, in ascending class order.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["build_subclass_to_class", "subclass_targets", "subclass_numbers", "class_scores", "class_predictions"]


def build_subclass_to_class(num_classes: int, subclasses_per_class: dict[int, int]) -> Tensor:
    """LongTensor (S,) with the class of every output unit."""
    extra = [cls for cls in sorted(subclasses_per_class) for _ in range(subclasses_per_class[cls] - 1)]
    return torch.cat([torch.arange(num_classes), torch.tensor(extra, dtype=torch.long)])


def _first_extra_unit(subclass_to_class: Tensor, num_classes: int) -> Tensor:
    """For each class, the index of its first extra unit minus one (so unit = base + j)."""
    extra = subclass_to_class[num_classes:]
    counts = torch.bincount(extra, minlength=num_classes)
    starts = num_classes + torch.cumsum(counts, 0) - counts
    return starts - 1


def subclass_targets(class_labels: Tensor, subclass_numbers: Tensor, subclass_to_class: Tensor) -> Tensor:
    """Unit index per sample: subclass 0 → the class's own unit, j ≥ 1 → its j-th extra unit."""
    class_labels = torch.as_tensor(class_labels, dtype=torch.long)
    subclass_numbers = torch.as_tensor(subclass_numbers, dtype=torch.long)
    base = _first_extra_unit(subclass_to_class, _num_classes(subclass_to_class))[class_labels]
    return torch.where(subclass_numbers == 0, class_labels, base + subclass_numbers)


def subclass_numbers(units: Tensor, subclass_to_class: Tensor, cls: int) -> tuple[Tensor, Tensor]:
    """The observations of class ``cls`` and their subclass numbers 0..H−1, from their output units:
    ``units`` (n,) unit indices, or an (n, S) multi-hot (each positive class contributes one unit)."""
    own = torch.nonzero(subclass_to_class == cls).flatten()  # the class's own unit first, then its extra ones
    if units.ndim == 1:
        members = torch.nonzero(torch.isin(units, own)).flatten()
        rank = torch.empty(int(own.max()) + 1, dtype=torch.long)
        rank[own] = torch.arange(len(own))
        return members, rank[units[members]]
    hot = units[:, own] > 0
    members = torch.nonzero(hot.any(1)).flatten()
    return members, hot[members].float().argmax(1)


def _num_classes(subclass_to_class: Tensor) -> int:
    return int(subclass_to_class.max()) + 1


def class_scores(subclass_scores: Tensor, subclass_to_class: Tensor, num_classes: int | None = None) -> Tensor:
    """(n, c): a class's score is the max over its units (multilabel class-level prediction)."""
    c = num_classes if num_classes is not None else _num_classes(subclass_to_class)
    if subclass_scores.shape[1] == c:
        return subclass_scores
    s2c = subclass_to_class.to(subclass_scores.device)
    out = subclass_scores[:, :c].clone()
    index = s2c[c:].unsqueeze(0).expand(subclass_scores.shape[0], -1)
    return out.scatter_reduce(1, index, subclass_scores[:, c:], reduce="amax", include_self=True)


def class_predictions(subclass_logits: Tensor, subclass_to_class: Tensor) -> Tensor:
    """(n,): the class of the arg-max unit (multiclass class-level prediction)."""
    return subclass_to_class.to(subclass_logits.device)[subclass_logits.argmax(1)]
