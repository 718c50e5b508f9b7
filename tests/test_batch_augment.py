"""Device-side image augmentation, checked sample by sample against the definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sdnn.data.batch_augment import BatchAugment, cutout, random_crop, random_flip


def _images(n=64, c=3, h=10, w=12):
    return torch.rand(n, c, h, w) + 0.5  # strictly positive, so zeros come only from padding/cutout


def test_each_crop_is_a_shifted_window_of_the_padded_image():
    torch.manual_seed(0)
    x = _images()
    out = random_crop(x, 4)
    padded = F.pad(x, (4, 4, 4, 4))
    offsets = set()
    for k in range(len(x)):
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(out[k], padded[k, :, dy:dy + 10, dx:dx + 12])]
        assert matches, f"sample {k} is not a crop"
        offsets.add(matches[0])
    assert len(offsets) > 20  # offsets really vary per sample


def test_flip_mirrors_about_half_the_images():
    torch.manual_seed(1)
    x = _images(n=400)
    out = random_flip(x)
    flipped = [torch.equal(out[k], x[k].flip(2)) for k in range(len(x))]
    kept = [torch.equal(out[k], x[k]) for k in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 150 < sum(flipped) < 250


def test_cutout_zeroes_one_clipped_square_per_image():
    torch.manual_seed(2)
    x = _images(n=200, h=16, w=16)
    out = cutout(x, 8)
    for k in range(len(x)):
        zero = (out[k] == 0).all(0)
        assert torch.equal(out[k][:, ~zero], x[k][:, ~zero])
        rows, cols = torch.nonzero(zero, as_tuple=True)
        assert len(rows) > 0
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(zero.sum()) == height * width and height <= 8 and width <= 8  # a (clipped) rectangle
    full = sum(int((out[k] == 0).all(0).sum()) == 64 for k in range(len(x)))
    assert full > 50  # unclipped squares are 8×8


def test_batch_augment_is_seeded_and_skips_vectors():
    aug = BatchAugment(crop_padding=2, flip=True, cutout=4)
    x = _images()
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    assert torch.equal(a, aug(x)) and not torch.equal(a, x)
    v = torch.rand(5, 7)
    assert aug(v) is v and not BatchAugment().active
