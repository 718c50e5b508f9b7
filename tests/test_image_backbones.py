"""VGG16-BN and WideResNet backbones: shapes, parameter counts, dropout modes, registry and config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sdnn.models import build_backbone
from sdnn.models.vgg import VGG16BN
from sdnn.models.wrn import WideResNet
from tests.conftest import compose_config

SHAPES = [(3, 32, 32), (1, 8, 8)]
VGG16_CONV_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_on_meta(cls: type[nn.Module], input_shape: tuple[int, ...], **kwargs) -> nn.Module:
    """A full-size model without allocating or initializing its weights, for counting only."""
    with torch.device("meta"):
        return cls(input_shape, **kwargs)


def linear_parameters(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features


def wrn_parameters(depth: int, widen_factor: int, in_channels: int = 3) -> int:
    """WRN-depth-k parameters from the architecture description (no output layer)."""
    blocks_per_stage = (depth - 4) // 6
    widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    total = 9 * in_channels * widths[0]  # stem conv, no bias
    for stage in range(3):
        for block in range(blocks_per_stage):
            c_in = widths[stage] if block == 0 else widths[stage + 1]
            c_out = widths[stage + 1]
            total += 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out  # BN, conv, BN, conv
            if c_in != c_out:
                total += c_in * c_out  # 1x1 shortcut conv
    return total + 2 * widths[3]  # final BN


def vgg16_bn_parameters(hidden: int, in_channels: int = 3) -> int:
    """VGG16-BN parameters: conv 3x3 with bias + BN (2 per channel) per width, then two linear layers."""
    total = 0
    for width in VGG16_CONV_WIDTHS:
        total += 9 * in_channels * width + width + 2 * width
        in_channels = width
    return total + linear_parameters(512, hidden) + linear_parameters(hidden, hidden)


@pytest.mark.parametrize("input_shape", SHAPES)
def test_wrn_output_shape(input_shape):
    model = WideResNet(input_shape, depth=10, widen_factor=2, dropout=0.0)
    assert model.out_features == 128
    assert model(torch.randn(4, *input_shape)).shape == (4, 128)


@pytest.mark.parametrize("input_shape", SHAPES)
def test_vgg_output_shape_and_final_map_is_1x1(input_shape):
    model = VGG16BN(input_shape, hidden=64)
    x = torch.randn(4, *input_shape)
    assert model.out_features == 64
    assert model.features(x).shape == (4, 512, 1, 1)
    assert model(x).shape == (4, 64)


def test_wrn_28_10_parameter_count():
    backbone = build_on_meta(WideResNet, (3, 32, 32), depth=28, widen_factor=10)
    assert backbone.out_features == 640
    with_head = count_parameters(backbone) + linear_parameters(640, 10)
    assert with_head == wrn_parameters(28, 10) + linear_parameters(640, 10)
    assert with_head == 36_479_194  # published WRN-28-10 (CIFAR-10): 36.5M
    assert sum(isinstance(m, nn.Conv2d) for m in backbone.modules()) == 28  # 25 3x3 + 3 shortcuts


def test_wrn_16_8_parameter_count_and_forward():
    backbone = WideResNet((3, 32, 32), depth=16, widen_factor=8, dropout=0.4)
    assert backbone.out_features == 512
    with_head = count_parameters(backbone) + linear_parameters(512, 10)
    assert with_head == wrn_parameters(16, 8) + linear_parameters(512, 10)
    assert round(with_head / 1e6, 1) == 11.0  # published WRN-16-8: 11.0M
    backbone.eval()
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_vgg16_bn_parameter_count():
    backbone = build_on_meta(VGG16BN, (3, 32, 32))
    assert backbone.out_features == 4096
    assert count_parameters(backbone) == vgg16_bn_parameters(4096)
    conv_and_bn = count_parameters(backbone.features)
    assert conv_and_bn + linear_parameters(512, 10) == 14_728_266  # the common CIFAR VGG16 (512 -> 10 head)
    assert sum(isinstance(m, nn.Conv2d) for m in backbone.modules()) == 13


def test_vgg_without_batch_norm():
    backbone = build_on_meta(VGG16BN, (3, 32, 32), batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert count_parameters(backbone) == vgg16_bn_parameters(4096) - 2 * sum(VGG16_CONV_WIDTHS)


@pytest.mark.parametrize("depth", [27, 4, 0])
def test_wrn_bad_depth(depth):
    with pytest.raises(ValueError, match="model.backbone.depth"):
        WideResNet((3, 32, 32), depth=depth)


@pytest.mark.parametrize("cls", [VGG16BN, WideResNet])
def test_non_image_input_rejected(cls):
    with pytest.raises(ValueError, match="images"):
        cls((24,))


@pytest.mark.parametrize("cls, options", [(VGG16BN, {"hidden": 32}), (WideResNet, {"depth": 10, "widen_factor": 1})])
def test_dropout_only_in_training(cls, options):
    torch.manual_seed(0)
    model = cls((1, 8, 8), dropout=0.5, **options)
    x = torch.randn(8, 1, 8, 8)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_build_through_registry():
    wrn = build_backbone({"name": "wrn", "depth": 10, "widen_factor": 1, "dropout": 0.0}, (3, 32, 32))
    vgg = build_backbone({"name": "vgg16", "hidden": 16, "dropout": 0.0, "batch_norm": True}, [1, 8, 8])
    assert isinstance(wrn, WideResNet) and wrn.out_features == 64
    assert isinstance(vgg, VGG16BN) and vgg.out_features == 16


def test_wrn_config_defaults_and_dataset_choice():
    model = compose_config(["model=wrn"]).model
    backbone = model.backbone
    assert (model.name, backbone.depth, backbone.widen_factor, backbone.dropout) == ("wrn", 28, 10, 0.3)
    assert backbone._target_ == "sdnn.models.WideResNet"
    chosen = compose_config(["model=wrn", "+dataset.wrn.depth=16"]).model.backbone
    assert (chosen.depth, chosen.widen_factor) == (16, 10)
    overridden = compose_config(["model=wrn", "model.backbone.depth=16", "model.backbone.widen_factor=4"]).model
    assert (overridden.backbone.depth, overridden.backbone.widen_factor) == (16, 4)


def test_vgg16_config():
    model = compose_config(["model=vgg16"]).model
    assert model.name == "vgg16"
    assert dict(model.backbone) == {"_target_": "sdnn.models.VGG16BN", "hidden": 4096, "dropout": 0.5,
                                    "batch_norm": True}
