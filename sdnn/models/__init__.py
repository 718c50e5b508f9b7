"""Backbones: each maps inputs to the penultimate features (``out_features`` wide).

The output layer is not part of a backbone: one linear head on top serves the c classes of
phase 1 and the baseline and the S subclass units of phase 2. ``conf/model/<name>.yaml``'s
``model.backbone._target_`` is one of these classes (or a user's own with the same contract:
``input_shape`` keyword, ``out_features`` attribute, ``forward`` → (n, out_features)).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from sdnn.models.cnn import SmallCNN
from sdnn.models.cnn1d import CNN1d
from sdnn.models.lr import LogisticRegression
from sdnn.models.mlp import MLP
from sdnn.models.vgg import VGG16BN
from sdnn.models.wrn import WideResNet

BACKBONES: dict[str, type[nn.Module]] = {
    "cnn": SmallCNN,
    "mlp": MLP,
    "lr": LogisticRegression,
    "cnn1d": CNN1d,
    "vgg16": VGG16BN,
    "wrn": WideResNet,
}


def build_backbone(cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> nn.Module:
    """The backbone named by ``cfg['name']`` (a key of ``BACKBONES``), with the other keys as its arguments."""
    options = dict(cfg)
    name = options.pop("name")
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(BACKBONES)}")
    for key, value in options.items():
        if isinstance(value, list):
            options[key] = tuple(value)
    return BACKBONES[name](tuple(input_shape), **options)
