"""Device-side image augmentation, checked sample by sample against the definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sdnn.data.batch_augment import BatchAugment, InputPipeline, cutout, random_crop, random_flip
from sdnn.data.tensors import channel_statistics


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


def _slow_normalize(image, mean, std):
    return torch.stack([(image[ch].double() - mean[ch]) / std[ch] for ch in range(image.shape[0])]).float()


def test_input_pipeline_on_uint8_pads_black_then_normalises_then_cuts_out():
    torch.manual_seed(4)
    x = torch.randint(1, 256, (40, 3, 8, 8), dtype=torch.uint8)  # no raw zeros: zeros come from padding
    mean, std = torch.tensor([120.0, 110.0, 100.0]), torch.tensor([60.0, 50.0, 40.0])
    pipeline = InputPipeline(BatchAugment(crop_padding=2, flip=True, cutout=0), mean, std)
    out = pipeline(x, train=True)
    assert out.dtype == torch.float32
    padded = F.pad(x, (2, 2, 2, 2))
    for k in range(len(x)):
        candidates = [padded[k, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        candidates += [c.flip(2) for c in candidates]
        assert any(torch.allclose(out[k], _slow_normalize(c, mean, std), atol=1e-5) for c in candidates), k
    black = (-mean / std)[:, None]  # a padded pixel is raw 0, normalised
    assert any(torch.allclose(out[k].flatten(1)[:, :1], black, atol=1e-5) for k in range(len(x)))

    cut = InputPipeline(BatchAugment(cutout=4), mean, std)(x, train=True)
    reference = torch.stack([_slow_normalize(img, mean, std) for img in x])
    zero = (cut == 0).all(1)
    assert zero.flatten(1).any(1).all()  # every image has its square
    assert torch.allclose(cut[~zero[:, None].expand_as(cut)], reference[~zero[:, None].expand_as(cut)], atol=1e-5)


def test_input_pipeline_evaluation_only_normalises_and_float_data_passes_through():
    x = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 3.0, 4.0])
    pipeline = InputPipeline(BatchAugment(crop_padding=2, flip=True, cutout=2), mean, std)
    expected = torch.stack([_slow_normalize(img, mean, std) for img in x])
    torch.testing.assert_close(pipeline(x, train=False), expected)
    floats = torch.rand(4, 3, 5, 5)
    assert torch.equal(InputPipeline()(floats, train=False), floats)
    assert InputPipeline().state_dict() == {} and pipeline.state_dict() == {}  # never in checkpoints


def test_channel_statistics_match_a_direct_computation():
    x = torch.randint(0, 256, (37, 3, 4, 5), dtype=torch.uint8)
    mean, std = channel_statistics(x, chunk_size=8)
    for ch in range(3):
        values = x[:, ch].double().flatten()
        assert abs(float(mean[ch]) - float(values.mean())) < 1e-4
        assert abs(float(std[ch]) - float(values.std())) < 1e-4
