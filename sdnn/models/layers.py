"""Layers shared by the image backbones."""

from __future__ import annotations

from torch import Tensor, nn


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) → (N, C), the mean over H and W: ``AdaptiveAvgPool2d(1)`` + ``Flatten``, but with a
    CUDA backward that ``torch.use_deterministic_algorithms`` (``trainer.deterministic=true``) accepts."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))
