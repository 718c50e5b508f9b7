"""A small VGG-style CNN for images: (conv-BN-ReLU ×2, max-pool) per stage, then a hidden layer."""

from __future__ import annotations

from torch import Tensor, nn

from sdnn.models.layers import GlobalAvgPool


class SmallCNN(nn.Module):
    """Penultimate features: the ``hidden``-wide ReLU layer after global average pooling."""

    needs_images = True  # (C, H, W) inputs

    def __init__(self, input_shape: tuple[int, ...], channels: tuple[int, ...] = (32, 64),
                 hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"model=cnn needs images (C, H, W), got input shape {tuple(input_shape)}; "
                             "use model=mlp, lr or cnn1d for feature vectors")
        layers: list[nn.Module] = []
        in_ch = input_shape[0]
        for out_ch in channels:
            for _ in range(2):
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers, GlobalAvgPool())
        self.hidden = nn.Sequential(nn.Linear(in_ch, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.out_features = hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.hidden(self.features(x))
