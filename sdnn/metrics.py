"""Class-level metrics: accuracy per class; YouTube-8M's Hit@1, PERR, mAP and GAP@20.

The four YouTube-8M metrics follow the challenge's starter code (paper §3.3, SPEC §6). They
are computed from each video's top-k (score, class, is-label) triples only, so evaluation
memory is O(videos × k), not O(videos × c). Ties are broken deterministically: within a
video by the lower class index, across videos by video order (stable sorts).

The functions take numpy arrays or torch tensors (n, c) and return floats; the torchmetrics
classes accumulate the same quantities over batches and under DDP.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["accuracy", "per_class_accuracy", "hit_at_one", "perr", "gap", "mean_ap",
           "HitAtOne", "PERR", "GAP", "MeanAP"]


def _tensor(a) -> Tensor:
    return a.detach() if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))


def accuracy(pred_classes, targets) -> float:
    pred, target = _tensor(pred_classes), _tensor(targets)
    return float((pred == target).double().mean())


def per_class_accuracy(pred_classes, targets, num_classes: int) -> np.ndarray:
    """Share of each class's samples predicted as that class (NaN for a class with none)."""
    pred, target = _tensor(pred_classes).long(), _tensor(targets).long()
    total = torch.bincount(target, minlength=num_classes).double()
    correct = torch.bincount(target[pred == target], minlength=num_classes).double()
    return torch.where(total > 0, correct / total.clamp_min(1), torch.nan).numpy()


def _sorted_by_score(preds: Tensor, labels: Tensor, top_k: int | None = None):
    """Per video: scores sorted descending (ties: lower class first), their classes and labels."""
    scores, classes = torch.sort(preds, dim=1, descending=True, stable=True)
    if top_k is not None:
        scores, classes = scores[:, :top_k], classes[:, :top_k]
    return scores, classes, labels.gather(1, classes)


def _hit_at_one_terms(preds: Tensor, labels: Tensor) -> Tensor:
    """Per video: 1 if its top-scoring class is one of its labels."""
    top = preds.argmax(1, keepdim=True)
    return (labels.gather(1, top).squeeze(1) > 0).double()


def _perr_terms(preds: Tensor, labels: Tensor) -> Tensor:
    """Per video with k labels: share of labels among its k top classes (a score ≤ 0 never
    hits); a video with no label contributes 0 but counts (as the starter code)."""
    scores, _, hits = _sorted_by_score(preds, labels)
    k = (labels > 0).sum(1, keepdim=True)
    in_top_k = torch.arange(preds.shape[1], device=preds.device).unsqueeze(0) < k
    found = ((hits > 0) & in_top_k & (scores > 0)).sum(1).double()
    return torch.where(k.squeeze(1) > 0, found / k.squeeze(1).clamp_min(1), torch.zeros_like(found))


def _average_precision(scores: Tensor, hits: Tensor, positives: float) -> float:
    """Σ over hits of precision at that rank / number of positives (pooled, sorted by score)."""
    if positives <= 0:
        return 0.0
    order = torch.sort(scores.double(), descending=True, stable=True).indices
    hit = hits[order].double()
    precision = torch.cumsum(hit, 0) / torch.arange(1, len(hit) + 1, dtype=torch.float64)
    return float((precision * hit).sum() / positives)


def _mean_ap_from_pairs(scores: Tensor, classes: Tensor, hits: Tensor, positives: Tensor) -> float:
    """AP per class over that class's pooled top-k pairs, / its positives; mean over classes
    that have positives."""
    num_classes = len(positives)
    by_score = torch.sort(scores.double(), descending=True, stable=True).indices
    by_class = torch.sort(classes[by_score], stable=True).indices
    order = by_score[by_class]  # class ascending, score descending within a class
    cls, hit = classes[order], hits[order].double()
    counts = torch.bincount(cls, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(len(cls)) - starts[cls]
    cum = torch.cumsum(hit, 0)
    cum_before = cum - hit  # hits strictly before each position
    cum_in_class = cum - cum_before[starts[cls]]
    precision = cum_in_class / (rank_in_class + 1).double()
    ap_sum = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, cls, precision * hit)
    has_positive = positives > 0
    if not has_positive.any():
        return 0.0
    return float((ap_sum[has_positive] / positives[has_positive].double()).mean())


def hit_at_one(preds, labels) -> float:
    """Hit@1: share of videos whose top-scoring class is one of their labels."""
    return float(_hit_at_one_terms(_tensor(preds), _tensor(labels)).mean())


def perr(preds, labels) -> float:
    """Precision at equal recall rate, averaged over videos."""
    return float(_perr_terms(_tensor(preds), _tensor(labels)).mean())


def gap(preds, labels, top_k: int = 20) -> float:
    """GAP@k: AP of all videos' top-k (score, is-label) pairs pooled, divided by the total
    number of labels (also those outside a top k)."""
    preds, labels = _tensor(preds), _tensor(labels)
    scores, _, hits = _sorted_by_score(preds, labels, min(top_k, preds.shape[1]))
    return _average_precision(scores.flatten(), (hits > 0).flatten(), float((labels > 0).sum()))


def mean_ap(preds, labels, top_k: int = 20) -> float:
    """mAP over classes from the same top-k pairs; a class's AP is divided by its total
    number of positives; classes with no positive are left out."""
    preds, labels = _tensor(preds), _tensor(labels)
    scores, classes, hits = _sorted_by_score(preds, labels, min(top_k, preds.shape[1]))
    return _mean_ap_from_pairs(scores.flatten(), classes.flatten(), (hits > 0).flatten(), (labels > 0).sum(0))


class _PerVideoMean(Metric):
    """Mean of a per-video term, as a running sum and count (two numbers of state)."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("videos", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _terms(self, preds: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, labels: Tensor) -> None:
        terms = self._terms(preds.detach(), labels.detach())
        self.total += terms.sum()
        self.videos += len(terms)

    def compute(self) -> Tensor:
        return self.total / self.videos.clamp_min(1)


class HitAtOne(_PerVideoMean):
    def _terms(self, preds, labels):
        return _hit_at_one_terms(preds, labels)


class PERR(_PerVideoMean):
    def _terms(self, preds, labels):
        return _perr_terms(preds, labels)


class _TopKPairs(Metric):
    """Keeps each video's top-k (score, class, is-label) and the positives per class."""

    full_state_update = False

    def __init__(self, num_classes: int, top_k: int = 20, **kwargs):
        super().__init__(**kwargs)
        self.top_k = top_k
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("classes", [], dist_reduce_fx="cat")
        self.add_state("hits", [], dist_reduce_fx="cat")
        self.add_state("positives", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        preds, labels = preds.detach(), labels.detach()
        scores, classes, hits = _sorted_by_score(preds, labels, min(self.top_k, preds.shape[1]))
        self.scores.append(scores.flatten())
        self.classes.append(classes.flatten())
        self.hits.append((hits > 0).flatten())
        self.positives += (labels > 0).sum(0)

    def _pairs(self):
        def cat(x):
            return torch.cat(x) if isinstance(x, list) else x
        return cat(self.scores).cpu(), cat(self.classes).cpu(), cat(self.hits).cpu(), self.positives.cpu()


class GAP(_TopKPairs):
    def compute(self) -> Tensor:
        scores, _, hits, positives = self._pairs()
        return torch.tensor(_average_precision(scores, hits, float(positives.sum())))


class MeanAP(_TopKPairs):
    def compute(self) -> Tensor:
        return torch.tensor(_mean_ap_from_pairs(*self._pairs()))
