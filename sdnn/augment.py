"""Augmentation of the selected classes before training with subclasses (SPEC §3).

* SamplePairing (Inoue 2018; the paper's choice for images): a new image is the mean of a
  class image and a random training image, and keeps the class label.
* Extrapolation (DeVries & Taylor 2017; paper eq. 12, for feature vectors):
  ``x' = λ (x − x̌_j) + x`` with ``x̌_j`` the anchor of the sample's subclass (Algorithm 1,
  step 6: the class's observation farthest from the mean for subclass 0, the closest for
  the others).

The classes are the ``augmenter`` config group's ``_target_``s. torch is imported by the functions
that compute, so that a configuration is checked before it loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["sample_pairing", "extrapolate", "Augmenter", "NoAugmentation", "SamplePairing", "Extrapolation",
           "Auto"]


def sample_pairing(x: Tensor, partners: Tensor) -> Tensor:
    """SamplePairing: the mean of each sample and its partner (same shapes)."""
    import torch

    if x.dtype == torch.uint8:
        return ((x.to(torch.int16) + partners.to(torch.int16) + 1) // 2).to(torch.uint8)
    return (x + partners) / 2


def extrapolate(x: Tensor, anchors: Tensor, lam: float = 0.5) -> Tensor:
    """Eq. 12: ``λ (x − x̌) + x`` row by row (``anchors`` broadcast to ``x``); uint8 data is
    computed in float and rounded and clipped back to 0..255."""
    import torch

    if x.dtype == torch.uint8:
        return extrapolate(x.float(), anchors.float(), lam).round_().clamp_(0, 255).to(torch.uint8)
    return lam * (x - anchors) + x


class Augmenter:
    """How the selected classes are doubled. ``online``: also over a stream of feature vectors."""

    name: ClassVar[str] = "augmenter"
    online: ClassVar[bool] = False
    lam: float = 0.5

    def resolve(self, is_image: bool) -> Augmenter:
        """The augmenter for this kind of data (only ``Auto`` depends on it)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoAugmentation(Augmenter):
    """The selected classes as they are."""

    name = "none"
    online = True


class SamplePairing(Augmenter):
    """Each sample of the class paired with a random training sample (images; doubles the class
    before the partition)."""

    name = "sample_pairing"


class Extrapolation(Augmenter):
    """Eq. 12 towards the subclass anchors (vectors; doubles the class after the partition)."""

    name = "extrapolation"
    online = True

    def __init__(self, lam: float = 0.5):
        if not 0 <= lam <= 1:
            raise ValueError(f"lam={lam!r} must be a number in [0, 1] (the paper uses 0.5)")
        self.lam = float(lam)

    def __repr__(self) -> str:
        return f"Extrapolation(lam={self.lam})"


class Auto(Extrapolation):
    """The paper's choice by data kind: SamplePairing for images, extrapolation (λ) for vectors."""

    name = "auto"

    def resolve(self, is_image: bool) -> Augmenter:
        chosen = SamplePairing() if is_image else Extrapolation(self.lam)
        chosen.lam = self.lam  # the configured λ, recorded with the partition either way
        return chosen
