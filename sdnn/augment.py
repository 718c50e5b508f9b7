"""Augmentation of the selected classes before training with subclasses (SPEC §3).

* SamplePairing (Inoue 2018; the paper's choice for images): a new image is the mean of a
  class image and a random training image, and keeps the class label.
* Extrapolation (DeVries & Taylor 2017; paper eq. 12, for feature vectors):
  ``x' = λ (x − x̌_j) + x`` with ``x̌_j`` the anchor of the sample's subclass (Algorithm 1,
  step 6: the class's observation farthest from the mean for subclass 0, the closest for
  the others).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sdnn.choices import AUGMENTERS

__all__ = ["sample_pairing", "extrapolate", "AUGMENTERS"]


def sample_pairing(x: Tensor, partners: Tensor) -> Tensor:
    """SamplePairing: the mean of each sample and its partner (same shapes)."""
    if x.dtype == torch.uint8:
        return ((x.to(torch.int16) + partners.to(torch.int16) + 1) // 2).to(torch.uint8)
    return (x + partners) / 2


def extrapolate(x: Tensor, anchors: Tensor, lam: float = 0.5) -> Tensor:
    """Eq. 12: ``λ (x − x̌) + x`` row by row (``anchors`` broadcast to ``x``); uint8 data is
    computed in float and rounded and clipped back to 0..255."""
    if x.dtype == torch.uint8:
        return extrapolate(x.float(), anchors.float(), lam).round_().clamp_(0, 255).to(torch.uint8)
    return lam * (x - anchors) + x
