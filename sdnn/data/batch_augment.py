"""The image input path on the device: whole batches, per sample, vectorised (no PIL).

Datasets stay as one uint8 tensor (4× smaller than float32); ``InputPipeline`` turns a
batch, once it is on the device, into normalised float images, augmenting training
batches: ``pad + random crop``, ``horizontal flip`` (p = 0.5) and ``cutout`` (DeVries & Taylor 2017:
a length×length square, centred uniformly in the image and clipped at its border, set to 0
after normalisation), in torchvision's order (crop and flip on raw pixels, zero padding
black; normalise; cutout), as in the paper's §3.2 and the original scripts' --data_augmentation,
--cutout --length flags. Uses the torch RNG, so it is seeded by the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def random_crop(x: Tensor, padding: int) -> Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per sample."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]  # (n, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]  # (n, 1, 1, w)
    flat = padded.flatten(2)  # (n, c, H'W')
    index = (rows * padded.shape[3] + cols).expand(n, c, h, w).flatten(2)
    return flat.gather(2, index).view(n, c, h, w)


def random_flip(x: Tensor) -> Tensor:
    """Mirror each image horizontally with probability 0.5."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: Tensor, length: int) -> Tensor:
    """Zero one length×length square per image (clipped at the border)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), device=x.device)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    half = length // 2
    inside = (ys >= cy - half) & (ys < cy - half + length) & (xs >= cx - half) & (xs < cx - half + length)
    return x.masked_fill(inside[:, None], 0)


@dataclass
class BatchAugment:
    """The ``dataset.augment`` options; ``0``/``False`` turn a step off."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.cutout)

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return x
        if self.crop_padding:
            x = random_crop(x, self.crop_padding)
        if self.flip:
            x = random_flip(x)
        if self.cutout:
            x = cutout(x, self.cutout)
        return x


class InputPipeline(nn.Module):
    """Device-side input path: (crop, flip) → per-channel normalisation → cutout.

    ``mean``/``std`` (C,) are in the stored units (0–255 for uint8 data); ``None`` leaves
    already-normalised float data as it is. Buffers are not saved in checkpoints.
    """

    def __init__(self, augment: BatchAugment | None = None, mean: Tensor | None = None, std: Tensor | None = None):
        super().__init__()
        self.augment = augment if augment is not None and augment.active else None
        self.normalizes = mean is not None
        if self.normalizes:
            std = torch.as_tensor(std, dtype=torch.float32)
            self.register_buffer("scale", (1.0 / std).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("shift", (-torch.as_tensor(mean, dtype=torch.float32) / std).view(1, -1, 1, 1),
                                 persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        """``(x − mean) / std`` as one multiply-add, in float32."""
        if not self.normalizes:
            return x.float() if not x.is_floating_point() else x
        if x.dim() == 2:
            return torch.addcmul(self.shift.flatten(), x.float(), self.scale.flatten())
        return torch.addcmul(self.shift, x.float(), self.scale)

    def forward(self, x: Tensor, train: bool = False) -> Tensor:
        augment = self.augment if train and x.dim() == 4 else None
        if augment is not None and augment.crop_padding:
            x = random_crop(x, augment.crop_padding)
        if augment is not None and augment.flip:
            x = random_flip(x)
        x = self.normalize(x)
        if augment is not None and augment.cutout:
            x = cutout(x, augment.cutout)
        return x
