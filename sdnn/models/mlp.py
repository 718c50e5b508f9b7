"""Multilayer perceptron on flattened inputs (feature vectors or small images)."""

from __future__ import annotations

import math

from torch import Tensor, nn


class MLP(nn.Module):
    """Penultimate features: the last hidden ReLU layer."""

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...] = (256, 256), dropout: float = 0.2):
        super().__init__()
        if not hidden:
            raise ValueError("model.backbone.hidden must list at least one layer width (use model=lr for none)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
