"""VGG16 with batch normalization, CIFAR layout (Simonyan & Zisserman, ICLR 2015; Ioffe & Szegedy, ICML 2015).

The layout of the common PyTorch CIFAR VGG that the SDNN authors used: thirteen 3x3 convolutions in five
max-pooled stages, then two ``hidden``-wide fully connected layers. The output layer is not part of the
backbone; the second hidden layer is the penultimate feature.
"""

from __future__ import annotations

from torch import Tensor, nn

from sdnn.models.layers import GlobalAvgPool

POOL = "M"
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL,
                                       512, 512, 512, POOL, 512, 512, 512, POOL)


def make_features(in_channels: int, layout: tuple[int | str, ...], batch_norm: bool) -> nn.Sequential:
    """Conv 3x3 (padding 1) [+ BN] + ReLU per width in ``layout``; 2x2 max-pool per ``POOL``.

    The pools round up (``ceil_mode``) so that small images (8x8 digits) keep a 1x1 map to the end;
    for 32x32 inputs this is the usual 32 -> 1 reduction.
    """
    layers: list[nn.Module] = []
    for entry in layout:
        if entry == POOL:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        layers.append(nn.Conv2d(in_channels, entry, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(entry))
        layers.append(nn.ReLU(inplace=True))
        in_channels = entry
    return nn.Sequential(*layers)


class VGG16BN(nn.Module):
    """Penultimate features: the second ``hidden``-wide ReLU layer of the classifier."""

    needs_images = True  # (C, H, W) inputs

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 4096, dropout: float = 0.5,
                 batch_norm: bool = True):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"model=vgg16 needs images (C, H, W), got input shape {tuple(input_shape)}; "
                             "use model=mlp, lr or cnn1d for feature vectors")
        self.features = make_features(input_shape[0], VGG16_LAYOUT, batch_norm)
        feature_channels = [entry for entry in VGG16_LAYOUT if entry != POOL][-1]
        self.pool = GlobalAvgPool()
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(feature_channels, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        )
        self.out_features = hidden
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's VGG initialization."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))
