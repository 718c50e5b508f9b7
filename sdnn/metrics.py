"""Class-level metrics: accuracy (overall and per class) and YouTube-8M's Hit@1, PERR, GAP@k, mAP.

The four YouTube-8M metrics follow the challenge definitions (Gkalelis & Mezaris, MMM 2020, §3.3),
i.e. the YT8M starter code's ``eval_util`` / ``average_precision_calculator``. GAP and mAP use
only each video's top-k (score, class, is-label) triples, so the torchmetrics classes keep
O(videos × k) memory, not O(videos × c). Everything is vectorised (no Python loop over videos or
classes).

Inputs: ``preds`` (n, c) float scores, ``labels`` (n, c) multi-hot; a label counts where
``label > 0``. Functions take numpy arrays or torch tensors and return Python floats; the
torchmetrics classes accumulate the same quantities over batches (and DDP ranks) and return
0-d float64 tensors equal to the functions.

Ties (deterministic, unlike the starter code, which shuffles with a fixed seed before its
stable sort):

* within a video, equal scores are ranked by lower class index (a stable descending sort of the
  row); this decides the top-1 class (Hit@1, as ``argmax``), the top-k classes (PERR, GAP, mAP);
* GAP pools the top-k triples class-major, as the starter code's ``top_k_by_class`` does (by class
  index, then by video order) and orders them with a stable descending sort by score
  (``np.argsort(-scores, kind="stable")``): equal scores rank by (class, video);
* mAP: within a class, equal scores rank by video order (stable sort of that class's list).

Undefined values are NaN: Hit@1/PERR of no video, GAP when there is no label at all, mAP when no
class has a positive, accuracy of no sample (the starter code returns 0 for GAP without labels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["accuracy", "per_class_accuracy", "hit_at_one", "perr", "gap", "mean_ap",
           "HitAtOne", "PERR", "GAP", "MeanAP", "MeanAPAndGAP"]


# --------------------------------------------------------------------------- input handling

def _as_tensor(a) -> Tensor:
    if isinstance(a, Tensor):
        return a.detach()
    arr = np.asarray(a)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr)  # torch wants a writeable, positively strided buffer
    return torch.as_tensor(arr)


def _prepare(preds, labels) -> tuple[Tensor, Tensor]:
    """(n, c) float scores and (n, c) bool labels (``label > 0``)."""
    p, y = _as_tensor(preds), _as_tensor(labels)
    if p.dim() != 2 or p.shape != y.shape:
        raise ValueError(f"preds and labels must both be (n, c); got {tuple(p.shape)} and {tuple(y.shape)}")
    if not torch.is_floating_point(p):
        p = p.double()
    return p, y.to(p.device) > 0


def _check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
        raise ValueError(f"top_k must be a positive integer; got {top_k!r}")
    return int(top_k)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den as a 0-d float64 tensor; NaN when den is 0."""
    num, den = num.double(), den.double().to(num.device)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


def _desc_order(scores: Tensor, dim: int = -1) -> Tensor:
    """Indices sorting ``scores`` descending along ``dim``, stable (equal scores keep their order).

    Same as ``np.argsort(-scores, kind="stable")``; adding 0.0 maps −0.0 to +0.0 so signed zeros
    tie on every backend.
    """
    return torch.sort(torch.neg(scores) + 0.0, dim=dim, stable=True).indices


# --------------------------------------------------------------------------- per-batch terms

def _hit_at_one_terms(preds: Tensor, labels: Tensor) -> Tensor:
    """(n,) float64: 1 where the video's top-scoring class (first of equal maxima) is a label."""
    top = preds.argmax(1, keepdim=True)
    return labels.gather(1, top).squeeze(1).double()


def _perr_terms(preds: Tensor, labels: Tensor) -> Tensor:
    """(n,) float64: with k labels, the share of labels among the k top classes whose score is
    > 0; 0 for a video without labels (it still counts in the mean, as in the starter code)."""
    order = _desc_order(preds, dim=1)
    k = labels.sum(1)
    in_top_k = torch.arange(preds.shape[1], device=preds.device).unsqueeze(0) < k.unsqueeze(1)
    found = (labels.gather(1, order) & (preds.gather(1, order) > 0) & in_top_k).sum(1)
    return found.double() / k.clamp_min(1).double()


def _top_k_pairs(preds: Tensor, labels: Tensor, top_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per video its min(top_k, c) best (score, class, is-label), best first (ties: lower class).

    Returns scores (n, k) in the dtype of ``preds``, classes (n, k) long, hits (n, k) uint8.
    """
    k = min(_check_top_k(top_k), preds.shape[1])
    classes = _desc_order(preds, dim=1)[:, :k]
    return preds.gather(1, classes), classes, labels.gather(1, classes).to(torch.uint8)


# --------------------------------------------------------------------------- pooled AP

def _gap_from_pairs(scores: Tensor, classes: Tensor, hits: Tensor, num_labels: Tensor) -> Tensor:
    """AP of the pooled pairs: Σ over hits of precision at that rank / ``num_labels``.

    Pairs (any shape, flattened in video order) are pooled class-major (stable sort by class, as
    the starter code's ``top_k_by_class``), then ranked by a stable descending sort of the score.
    """
    s, c, h = scores.reshape(-1), classes.reshape(-1), hits.reshape(-1).bool()
    by_class = torch.sort(c, stable=True).indices
    hit = h[by_class[_desc_order(s[by_class], dim=0)]]
    ranks = torch.arange(1, len(hit) + 1, device=hit.device)
    found = torch.cumsum(hit.long(), 0)
    return _ratio((found[hit].double() / ranks[hit].double()).sum(), torch.as_tensor(num_labels))


def _mean_ap_from_pairs(scores: Tensor, classes: Tensor, hits: Tensor, positives: Tensor) -> Tensor:
    """Mean over classes with a positive of (Σ over the class's hits of precision at that rank
    within the class's pooled pairs, ranked by score, ties by video order) / its positives."""
    num_classes = len(positives)
    s, c, h = scores.reshape(-1), classes.reshape(-1), hits.reshape(-1).bool()
    by_score = _desc_order(s, dim=0)
    order = by_score[torch.sort(c[by_score], stable=True).indices]  # class asc., score desc., video
    cls, hit = c[order], h[order]
    counts = torch.bincount(cls, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts  # first position of each class's segment
    rank = torch.arange(len(cls), device=cls.device) - starts[cls] + 1
    found = torch.cumsum(hit.long(), 0)
    found_in_class = found - (found - hit.long())[starts[cls]]  # minus hits before the segment
    precision = found_in_class[hit].double() / rank[hit].double()
    ap_sum = torch.zeros(num_classes, dtype=torch.float64, device=cls.device).index_add_(0, cls[hit], precision)
    has_positive = positives > 0
    ap = ap_sum[has_positive] / positives[has_positive].double()
    return _ratio(ap.sum(), has_positive.sum())


# --------------------------------------------------------------------------- public functions

def accuracy(pred_classes, targets) -> float:
    """Share of samples whose predicted class equals the target (NaN for no sample)."""
    pred, target = _as_tensor(pred_classes), _as_tensor(targets)
    if pred.shape != target.shape:
        raise ValueError(f"pred_classes and targets differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return float(_ratio((pred == target.to(pred.device)).sum(), torch.tensor(pred.numel())))


def per_class_accuracy(pred_classes, targets, num_classes: int) -> np.ndarray:
    """(num_classes,) float64: per class, the share of its samples predicted as it (NaN if none)."""
    pred, target = _as_tensor(pred_classes).long().reshape(-1), _as_tensor(targets).long().reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred_classes and targets differ in length: {len(pred)} vs {len(target)}")
    if len(target) and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes})")
    target = target.to(pred.device)
    total = torch.bincount(target, minlength=num_classes).double()
    correct = torch.bincount(target[pred == target], minlength=num_classes).double()
    return torch.where(total > 0, correct / total.clamp_min(1), torch.nan).cpu().numpy()


def hit_at_one(preds, labels) -> float:
    """Hit@1 (YouTube-8M challenge, Gkalelis & Mezaris MMM 2020, §3.3): share of videos whose
    top-scoring class is one of their labels; ties go to the lower class index."""
    p, y = _prepare(preds, labels)
    terms = _hit_at_one_terms(p, y)
    return float(_ratio(terms.sum(), torch.tensor(len(terms))))


def perr(preds, labels) -> float:
    """PERR, precision at equal recall rate (YouTube-8M challenge, Gkalelis & Mezaris MMM 2020,
    §3.3; starter code ``calculate_precision_at_equal_recall_rate``): per video with k labels,
    the share of its labels among its k top-scoring classes (ties: lower class first), a score
    ≤ 0 never counting; summed over videos and divided by the number of ALL videos (a video with
    no label adds 0)."""
    p, y = _prepare(preds, labels)
    terms = _perr_terms(p, y)
    return float(_ratio(terms.sum(), torch.tensor(len(terms))))


def gap(preds, labels, top_k: int = 20) -> float:
    """GAP@top_k, global average precision (YouTube-8M challenge, Gkalelis & Mezaris MMM 2020,
    §3.3; starter code ``calculate_gap``): each video's top_k (score, is-label) pairs (top_k > c
    means c) are pooled over videos and sorted by score; Σ over hits of the precision at that
    rank, divided by the number of labels of all videos (including those outside a top k).
    Ties: see the module docstring. NaN when there is no label."""
    p, y = _prepare(preds, labels)
    return float(_gap_from_pairs(*_top_k_pairs(p, y, top_k), y.sum()))


def mean_ap(preds, labels, top_k: int = 20) -> float:
    """mAP over classes (YouTube-8M challenge, Gkalelis & Mezaris MMM 2020, §3.3; starter code
    ``MeanAveragePrecisionCalculator`` fed ``top_k_by_class``): from the same top_k pairs per
    video, per class the AP of its pairs sorted by score (Σ of precision at each hit's rank)
    divided by that class's positives over all videos; classes without positives are left out
    of the mean. NaN when no class has a positive."""
    p, y = _prepare(preds, labels)
    return float(_mean_ap_from_pairs(*_top_k_pairs(p, y, top_k), y.sum(0)))


# --------------------------------------------------------------------------- torchmetrics

class _PerVideoMean(Metric):
    """Mean of a per-video term as a running sum and video count (two scalar states)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("videos", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def _terms(preds: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, labels: Tensor) -> None:
        terms = self._terms(*_prepare(preds, labels))
        self.total += terms.sum()
        self.videos += len(terms)

    def compute(self) -> Tensor:
        return _ratio(self.total, self.videos)


class HitAtOne(_PerVideoMean):
    """Hit@1 over batches (see :func:`hit_at_one`)."""

    _terms = staticmethod(_hit_at_one_terms)


class PERR(_PerVideoMean):
    """PERR over batches (see :func:`perr`); videos without labels count as 0."""

    _terms = staticmethod(_perr_terms)


class _TopKPairs(Metric):
    """Keeps per video its top_k scores (input dtype), class indices (long) and is-label flags
    (uint8), plus the total label count; memory O(videos × top_k)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, top_k: int = 20, **kwargs):
        super().__init__(**kwargs)
        self.top_k = _check_top_k(top_k)
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("classes", [], dist_reduce_fx="cat")
        self.add_state("hits", [], dist_reduce_fx="cat")
        self.add_state("num_labels", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def sync(self, *args, **kwargs) -> None:
        """A rank that scored no video (fewer evaluation batches than ranks) still sends (0, k)
        tensors of the right dtypes; an empty state list would break torchmetrics' gather."""
        if isinstance(self.scores, list) and not self.scores:
            k = min(self.top_k, getattr(self, "num_classes", None) or self.top_k)
            self.scores.append(torch.zeros(0, k, device=self.num_labels.device))
            self.classes.append(torch.zeros(0, k, dtype=torch.long, device=self.num_labels.device))
            self.hits.append(torch.zeros(0, k, dtype=torch.uint8, device=self.num_labels.device))
        super().sync(*args, **kwargs)

    def _update_pairs(self, preds: Tensor, labels: Tensor) -> None:
        scores, classes, hits = _top_k_pairs(preds, labels, self.top_k)
        self.scores.append(scores)
        self.classes.append(classes)
        self.hits.append(hits)
        self.num_labels += labels.sum()

    def update(self, preds: Tensor, labels: Tensor) -> None:
        self._update_pairs(*_prepare(preds, labels))

    def _pairs(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """The pooled pairs in video order (batches concatenated), or None before any video."""
        if isinstance(self.scores, list) and not self.scores:
            return None
        return dim_zero_cat(self.scores), dim_zero_cat(self.classes), dim_zero_cat(self.hits)


class GAP(_TopKPairs):
    """GAP@top_k over batches (see :func:`gap`).

    ``num_classes`` is optional; when given, inputs are checked to have that many columns.
    """

    def __init__(self, num_classes: int | None = None, top_k: int = 20, **kwargs):
        super().__init__(top_k=top_k, **kwargs)
        self.num_classes = num_classes

    def update(self, preds: Tensor, labels: Tensor) -> None:
        p, y = _prepare(preds, labels)
        if self.num_classes is not None and p.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got {p.shape[1]}")
        self._update_pairs(p, y)

    def compute(self) -> Tensor:
        pairs = self._pairs()
        if pairs is None:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.num_labels.device)
        return _gap_from_pairs(*pairs, self.num_labels)


class MeanAP(_TopKPairs):
    """mAP over batches (see :func:`mean_ap`); keeps also the positives per class, a (c,) state."""

    def __init__(self, num_classes: int, top_k: int = 20, **kwargs):
        super().__init__(top_k=top_k, **kwargs)
        self.num_classes = int(num_classes)
        self.add_state("positives", torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        p, y = _prepare(preds, labels)
        if p.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got {p.shape[1]}")
        self._update_pairs(p, y)
        self.positives += y.sum(0)

    def compute(self) -> Tensor:
        pairs = self._pairs()
        if pairs is None:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.positives.device)
        return _mean_ap_from_pairs(*pairs, self.positives)


class MeanAPAndGAP(MeanAP):
    """mAP and GAP@top_k from one store of top_k pairs (half the memory of ``MeanAP`` + ``GAP``);
    ``compute`` returns ``{"map": …, "gap": …, "videos": …}`` (videos: how many were scored, over
    all DDP ranks)."""

    def compute(self) -> dict[str, Tensor]:
        pairs = self._pairs()
        if pairs is None:
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.positives.device)
            return {"map": nan, "gap": nan, "videos": torch.tensor(0)}
        return {"map": _mean_ap_from_pairs(*pairs, self.positives), "gap": _gap_from_pairs(*pairs, self.num_labels),
                "videos": torch.tensor(len(pairs[0]))}
