"""Neglect score θ (paper eq. 6–10), in pure torch.

For a batch with penultimate features ``X`` (n×f), logits ``H`` (n×c), sigmoid outputs
``Q = σ(H)``, class indicators ``Y`` (n×c) and ``Z = Q − Y``:

* ``δ̂_i = −Σ_{κ∈ω_i} ζ_{i,κ} x_κ``  — row i of ``−P``, ``P = (Z⊙Y)ᵀX`` (positives' pull, eq. 7)
* ``δ̃_i =  Σ_{κ∉ω_i} ζ_{i,κ} x_κ``  — row i of ``N = (Z⊙(1−Y))ᵀX`` (negatives' push, eq. 8)
* ``δ_i = δ̃_i − δ̂_i``              — row i of ``ZᵀX`` = n × the output weights' gradient (eq. 6)
* ``r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖`` (≥ 1, large when the two parts cancel)

θ_i is the mean of r_i over the steps of a window (eq. 9) in which class i had a positive;
the paper's constant 1/n is dropped (SPEC §2).

Only norms are needed, so two algorithms give the same numbers:

* ``direct``: form ``P`` and ``ZᵀX`` (c×f each); cost ≈ 2·n·c·f.
* ``gram``: with ``G = XXᵀ`` (n×n), ``‖Aᵀ X e_i‖² = a_iᵀ G a_i``; cost ≈ n²·f + 4·n²·c. Much
  cheaper when c ≫ n (YouTube-8M: c = 3,862, f = 36,864, n = 512), never forms a c×f matrix.

``method="auto"`` picks the cheaper one. Everything stays on the device: no host sync.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["neglect_norms", "neglect_ratios", "ratios_from_norms", "NeglectAccumulator", "last_window_theta"]

_EPS = 1e-12


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
        method = "gram" if n * n * (f + 4 * c) < 2 * n * c * f else "direct"
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
