"""Neglect score θ (paper eq. 6–10), in pure torch.

For a batch with penultimate features ``X`` (n×f), logits ``H`` (n×c), sigmoid outputs
``Q = σ(H)``, class indicators ``Y`` (n×c) and ``Z = Q − Y``:

* ``δ̂_i = −Σ_{κ∈ω_i} ζ_{i,κ} x_κ``  — row i of ``−P``, ``P = (Z⊙Y)ᵀX`` (positives' pull, eq. 7)
* ``δ̃_i =  Σ_{κ∉ω_i} ζ_{i,κ} x_κ``  — row i of ``N = (Z⊙(1−Y))ᵀX`` (negatives' push, eq. 8)
* ``δ_i = δ̃_i − δ̂_i``              — row i of ``ZᵀX`` = n × the output weights' gradient (eq. 6)
* ``r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖`` (≥ 1, large when the two parts cancel)

θ_i is the mean of r_i over the steps of a window (eq. 9) in which class i had a positive;
the paper's constant 1/n is dropped (SPEC §2).

Only norms are needed, so three algorithms give the same numbers:

* ``direct`` (``neglect_norms``): form ``P`` and ``ZᵀX`` (c×f each); cost ≈ 2·n·c·f multiply-adds.
* ``gram`` (``neglect_norms``): with ``G = XXᵀ`` (n×n), ``‖Aᵀ X e_i‖² = a_iᵀ G a_i``; cost ≈
  n²·f + 4·n²·c. Much cheaper than ``direct`` when c ≫ n; never forms a c×f matrix.
* ``gradient`` (``neglect_norms_from_gradient``): reuses the output layer's weight gradient
  ``g = ∂L/∂W`` of the step (L the sigmoid CE of eq. 3), since ``δ = n·g``. ``P`` has rows only
  for the u classes present in the batch and is built from the nnz positive (sample, class)
  pairs alone; with the rows ``g_i`` of those classes, ``‖δ_i‖ = n‖g_i‖``, ``‖δ̂_i‖ = ‖P_i‖`` and
  ``‖δ̃_i‖ = ‖n·g_i − P_i‖``. Cost ≈ a few·(nnz + u)·f element operations, no matrix product and
  nothing c×f allocated; the absent classes (r_i is NaN there, θ leaves them out) need only
  ``‖δ̃_i‖ = ‖δ_i‖``, one more reduction over all of g (c·f reads), which can be skipped. For
  YouTube-8M (c = 3,862, f = 36,864, n = 512, ~3 labels a video: u ≈ 900) a few times cheaper
  than ``gram`` (docs/benchmarks.md). With class-index targets there is no host sync; multi-hot
  targets need one ``nonzero`` (a host sync on CUDA, one per call) to list the positive pairs.

``method="auto"`` of ``neglect_norms`` picks the cheaper of ``direct`` and ``gram``;
``choose_method`` adds ``gradient`` when a gradient is at hand (the cost model is in
``method_costs``). ``direct`` and ``gram`` stay on the device: no host sync.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "NeglectAccumulator",
    "choose_method",
    "last_window_theta",
    "method_costs",
    "neglect_norms",
    "neglect_norms_from_gradient",
    "neglect_ratios",
    "ratios_from_norms",
]

_EPS = 1e-12
# Cost model of the three methods, in multiply-adds of a float32 matrix product: one element streamed
# by a reduction over the weight gradient costs about _STREAM of them, one element of the per-pair
# work (gather, sum, subtract, norm) about _PAIR, and every call a fixed cost of a few dozen kernel
# calls (_FIXED). Calibrated on a 2-core CPU (docs/benchmarks.md, "θ cost model"); on a GPU matrix
# products gain more than memory traffic, so these constants favour direct and gram there, if anything.
_STREAM = 13
_PAIR = 30
_FIXED = {"direct": 5e6, "gram": 8e6, "gradient": 12e6}


def _indicators(targets: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """Class indicators Y (n×c) from class indices (n,) or a multi-hot (n, c)."""
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8) and targets.dim() == 1:
        return torch.nn.functional.one_hot(targets.long(), num_classes).to(dtype)
    return targets.to(dtype)


def _squared_norms(features: Tensor, logits: Tensor, targets: Tensor, method: str):
    """Squared norms ‖P_i‖², ‖N_i‖², ‖δ_i‖² (each (c,)) with P = (Z⊙Y)ᵀX, N = (Z⊙(1−Y))ᵀX."""
    x = features.detach().flatten(1)
    h = logits.detach()
    # Norms are computed in at least float32, whatever the autocast dtype of the step.
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, h = x.to(dtype), h.to(dtype)
    n, f = x.shape
    c = h.shape[1]
    y = _indicators(targets.detach(), c, dtype)
    z = torch.sigmoid(h) - y
    pos = z * y  # (n, c): ζ of positives
    neg = z - pos  # (n, c): ζ of negatives
    if method == "auto":
        method = choose_method(n, c, f)
    if method == "direct":
        p = pos.T @ x  # (c, f)
        d = z.T @ x  # (c, f) = δ
        p2 = p.square().sum(1)
        d2 = d.square().sum(1)
        n2 = (d - p).square().sum(1)
        return p2, n2, d2
    if method == "gram":
        g = x @ x.T  # (n, n)
        both = torch.cat([pos, neg], dim=1)  # (n, 2c)
        g_both = g @ both
        gp, gn = g_both[:, :c], g_both[:, c:]
        p2 = (pos * gp).sum(0)
        n2 = (neg * gn).sum(0)
        cross = (pos * gn).sum(0)
        d2 = p2 + n2 + 2 * cross
        # Quadratic forms of a PSD matrix are ≥ 0; clamp away round-off.
        return p2.clamp_min(0), n2.clamp_min(0), d2.clamp_min(0)
    raise ValueError(f"method must be 'auto', 'direct' or 'gram', got {method!r}")


def method_costs(n: int, c: int, f: int, nnz: int | None = None) -> dict[str, float]:
    """Estimated cost (multiply-add equivalents) of each method for one batch: ``direct`` and
    ``gram`` from their matrix products, ``gradient`` (given the weight gradient) from its memory
    traffic; ``nnz`` is the number of positive (sample, class) pairs (n for class-index targets)."""
    nnz = n if nnz is None else min(nnz, n * c)
    costs = {"direct": 2.0 * n * c * f, "gram": n * n * (f + 4.0 * c),
             "gradient": _STREAM * c * f + _PAIR * (nnz + min(nnz, c)) * f}
    return {method: cost + _FIXED[method] for method, cost in costs.items()}


def choose_method(n: int, c: int, f: int, nnz: int | None = None, gradient: bool = False) -> str:
    """The cheapest method by ``method_costs``; ``gradient`` only when a weight gradient is at hand."""
    costs = method_costs(n, c, f, nnz)
    if not gradient:
        del costs["gradient"]
    return min(costs, key=costs.get)


def _positive_pairs(targets: Tensor, dtype: torch.dtype):
    """(class, sample, label value) of the nonzero entries of Y, sorted by class (then sample); the
    label value is None for class-index targets (all ones). Multi-hot targets: one ``nonzero``, a
    host sync on CUDA."""
    if targets.dim() == 1 and not torch.is_floating_point(targets):
        cls = targets.long()
        order = torch.argsort(cls, stable=True)
        return cls[order], order, None
    y = targets.detach()
    smp, cls = y.nonzero().unbind(1)
    order = torch.argsort(cls, stable=True)
    cls, smp = cls[order], smp[order]
    return cls, smp, y[smp, cls].to(dtype)


_CPU_BLOCK = 1 << 22  # elements of P per block on a CPU (16 MiB in float32)


def _sizes_on_host(device: torch.device) -> bool:
    """Whether sizes may be read from device values: free on a CPU, a host sync elsewhere. Off the
    host the present classes are counted by an upper bound (nnz), the empty rows go to spare
    entries, and P is built in one block (few kernel launches, no sync to cut blocks)."""
    return device.type == "cpu"


def neglect_norms_from_gradient(weight_grad: Tensor, features: Tensor, logits: Tensor, targets: Tensor,
                                loss_scale: float | Tensor = 1.0, block_elements: int | None = None,
                                absent: bool = True):
    """(‖δ̂_i‖, ‖δ̃_i‖, ‖δ_i‖) per class, as ``neglect_norms``, from the output layer's weight gradient.

    ``weight_grad`` (c, f) is ``loss_scale × ∂L/∂W`` for L the sigmoid CE of eq. 3 (summed over
    classes, averaged over the n samples: ``sdnn.losses.SigmoidCrossEntropy``) of this batch with
    ``logits = features Wᵀ + b``; ``loss_scale`` is what the loss was multiplied by before the
    backward pass (``1/accumulate_grad_batches`` in Lightning; a number, or a 0-d tensor that then
    stays on the device). ``features`` (n, f), ``logits`` (n, c) and ``targets`` (class indices (n,)
    or a multi-hot (n, c)) are those of the same batch.

    Nothing c×f is allocated. The rows of ``δ = (n / loss_scale)·g`` of the u classes present in
    the batch are gathered, and the rows of ``P`` for those classes are weighted sums of the
    positives' feature rows (``embedding_bag`` over the nnz positive pairs), ``block_elements`` at a
    time on a CPU (default: a few MiB, few enough kernel calls for a busy machine), all at once on a
    GPU. The classes without a positive need one more pass over the whole gradient, for their
    ‖δ_i‖ = ‖δ̃_i‖; ``absent=False`` skips it and leaves their three norms NaN: θ does not use
    them (its r_i is NaN there), so the callback asks for them only on the steps it records.
    """
    g = weight_grad.detach()
    x = features.detach().flatten(1)
    h = logits.detach()
    dtype = torch.promote_types(torch.promote_types(x.dtype, g.dtype), torch.float32)
    n, f = x.shape
    c = h.shape[1]
    if g.shape != (c, f):
        raise ValueError(f"weight_grad has shape {tuple(g.shape)}, expected ({c}, {f}) for these features and logits")
    on_host = _sizes_on_host(x.device)
    if isinstance(loss_scale, Tensor) and on_host:
        loss_scale = float(loss_scale)
    scale = n / loss_scale
    if absent:
        total = torch.linalg.vector_norm(g, dim=1, dtype=dtype) * scale  # ‖δ_i‖: one pass over g
        pull = torch.zeros_like(total)
        push = total.clone()  # δ̃_i = δ_i for a class without a positive
    else:
        total = torch.full((c,), math.nan, dtype=dtype, device=g.device)
        pull, push = total.clone(), total.clone()
    cls, smp, y_pair = _positive_pairs(targets, dtype)
    nnz = cls.shape[0]
    if nnz == 0:
        return pull, push, total
    x = x.to(dtype)
    zeta = torch.sigmoid(h[smp, cls].to(dtype))
    weight = zeta - 1 if y_pair is None else (zeta - y_pair) * y_pair  # ζ·y of each positive pair
    starts = torch.ones(nnz, dtype=torch.bool, device=cls.device)
    starts[1:] = cls[1:] != cls[:-1]
    if on_host:
        first = starts.nonzero()[:, 0]  # the first pair of each present class
        classes = cls[first]
        u = classes.shape[0]
    else:  # u ≤ nnz slots; slot k ≥ u is an empty bag, written to spare entry c + k
        slot = starts.cumsum(0) - 1
        classes = torch.full((nnz,), c, dtype=torch.long, device=cls.device).scatter_(0, slot, cls)
        classes = torch.where(classes < c, classes, c + torch.arange(nnz, device=cls.device))
        first = torch.searchsorted(slot, torch.arange(nnz, device=cls.device))
        u = nnz
        pull, push, total = (torch.cat([v, v.new_zeros(nnz)]) for v in (pull, push, total))
    bounds = torch.cat([first, first.new_full((1,), nnz)])  # bag k: pairs bounds[k] .. bounds[k+1]
    per_block = max(1, (block_elements or _CPU_BLOCK) // max(f, 1)) if on_host else u
    host_bounds = bounds.tolist() if per_block < u else None
    for s in range(0, u, per_block):
        e = min(u, s + per_block)
        a, b = (host_bounds[s], host_bounds[e]) if host_bounds else (0, nnz)
        p = F.embedding_bag(smp[a:b], x, bounds[s:e + 1] - a, mode="sum", per_sample_weights=weight[a:b],
                            include_last_offset=True)  # rows s..e of P
        block_classes = classes[s:e]
        pull.index_copy_(0, block_classes, torch.linalg.vector_norm(p, dim=1))
        gr = g[block_classes.clamp_max(c - 1)].to(dtype)  # (not index_select: far slower on a busy CPU)
        if not absent:
            total.index_copy_(0, block_classes, torch.linalg.vector_norm(gr, dim=1) * scale)
        diff = torch.sub(p, gr, alpha=scale, out=gr) if isinstance(scale, (int, float)) else gr.mul_(scale).sub_(p)
        push.index_copy_(0, block_classes, torch.linalg.vector_norm(diff, dim=1))  # ‖P_i − n·g_i‖
    return pull[:c], push[:c], total[:c]


def neglect_norms(features: Tensor, logits: Tensor, targets: Tensor, method: str = "auto"):
    """(‖δ̂_i‖, ‖δ̃_i‖, ‖δ_i‖) per class for one batch (eq. 6–8): three (c,) tensors."""
    p2, n2, d2 = _squared_norms(features, logits, targets, method)
    return p2.sqrt(), n2.sqrt(), d2.sqrt()


def neglect_ratios(features: Tensor, logits: Tensor, targets: Tensor, method: str = "auto") -> Tensor:
    """r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖ per class for one batch (the summand of eq. 9).

    ``features`` (n, f) are the inputs of the output layer, ``logits`` (n, c) its outputs
    (sigmoid units), ``targets`` a float multi-hot (n, c) or class indices (n,). Classes with
    no positive in the batch get NaN (they are left out of θ's mean).
    """
    return ratios_from_norms(*neglect_norms(features, logits, targets, method), targets)


def ratios_from_norms(pos_norm: Tensor, neg_norm: Tensor, total_norm: Tensor, targets: Tensor) -> Tensor:
    """r_i from the three norms of ``neglect_norms``; NaN for classes without a positive in ``targets``."""
    ratio = (pos_norm + neg_norm) / total_norm.clamp_min(_EPS)
    if targets.dim() == 1:  # index_fill, not bincount: no host sync on CUDA
        has_positive = torch.zeros(ratio.shape[0], dtype=torch.bool, device=ratio.device)
        has_positive = has_positive.index_fill(0, targets.long(), True)
    else:
        has_positive = targets.detach().sum(0) > 0
    return torch.where(has_positive, ratio, torch.full_like(ratio, float("nan")))


class NeglectAccumulator:
    """Per-class sums and counts of r_i over a window; θ = sums / counts (eq. 9).

    Kept on the device of the first update; ``update`` never synchronises with the host.
    """

    def __init__(self, num_classes: int, device: torch.device | str | None = None):
        self.num_classes = num_classes
        self.sums = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.float64, device=device)

    def update(self, ratios: Tensor) -> None:
        if self.sums.device != ratios.device:
            self.sums = self.sums.to(ratios.device)
            self.counts = self.counts.to(ratios.device)
        seen = ~torch.isnan(ratios)
        self.sums += torch.where(seen, ratios, torch.zeros_like(ratios)).to(self.sums.dtype)
        self.counts += seen.to(self.counts.dtype)

    def theta(self) -> Tensor:
        """θ per class (c,): mean ratio over the steps where the class had a positive; NaN if none."""
        return torch.where(self.counts > 0, self.sums / self.counts.clamp_min(1), torch.nan)

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()


def last_window_theta(history: list[dict]) -> tuple[list[float], bool]:
    """θ of the last complete window of a history (SPEC §2), or of the last partial one if
    no window completed; the flag says which."""
    complete = [w for w in history if w["complete"]]
    return (complete[-1]["theta"], True) if complete else (history[-1]["theta"], False)
