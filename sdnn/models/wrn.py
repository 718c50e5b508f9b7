"""Wide residual network (Zagoruyko & Komodakis, BMVC 2016), as in the Cutout code (DeVries & Taylor, 2017).

WRN-d-k: a 3x3 stem, three stages of (d-4)/6 pre-activation basic blocks of widths 16k, 32k and 64k
(strides 1, 2, 2), then BN-ReLU and global average pooling. The output layer is not part of the backbone;
the pooled 64k-wide vector is the penultimate feature.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sdnn.models.layers import GlobalAvgPool


class BasicBlock(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3 plus a shortcut (1x1 conv when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_channels == out_channels and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_channels, out_channels, kernel_size=1,
                                                                 stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.relu1(self.bn1(x))
        # With equal shapes the shortcut is the raw input; otherwise both paths start from the activation.
        residual = x if self.shortcut is None else self.shortcut(activated)
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return residual + self.conv2(out)


class WideResNet(nn.Module):
    """Penultimate features: the globally average-pooled output of the last stage (64 * widen_factor wide)."""

    needs_images = True  # (C, H, W) inputs

    def __init__(self, input_shape: tuple[int, ...], depth: int = 28, widen_factor: int = 10, dropout: float = 0.3):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"model=wrn needs images (C, H, W), got input shape {tuple(input_shape)}; "
                             "use model=mlp, lr or cnn1d for feature vectors")
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"model.backbone.depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        blocks_per_stage = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = self._make_stage(widths[0], widths[1], blocks_per_stage, 1, dropout)
        self.block2 = self._make_stage(widths[1], widths[2], blocks_per_stage, 2, dropout)
        self.block3 = self._make_stage(widths[2], widths[3], blocks_per_stage, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.pool = GlobalAvgPool()
        self.out_features = widths[3]
        self.reset_parameters()

    @staticmethod
    def _make_stage(in_channels: int, out_channels: int, num_blocks: int, stride: int,
                    dropout: float) -> nn.Sequential:
        return nn.Sequential(*(BasicBlock(in_channels if i == 0 else out_channels, out_channels,
                                          stride if i == 0 else 1, dropout) for i in range(num_blocks)))

    def reset_parameters(self) -> None:
        """The reference initialization: He-normal (fan_out) convolutions, BN weight 1 and bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.pool(self.relu(self.bn(out)))
