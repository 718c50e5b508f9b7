"""The paper's 1-D CNN for video-level feature vectors (§3.3, SPEC §6).

Conv1d(1→64, kernel 3, stride 1, 'same' padding) + ReLU → MaxPool1d(2, 2) → Dropout(0.3);
the flattened result (64 × ⌊F/2⌋, e.g. 64 × 576 for rgb+audio) feeds the output layer.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class CNN1d(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], filters: int = 64, kernel_size: int = 3, dropout: float = 0.3):
        super().__init__()
        length = math.prod(input_shape)
        self.net = nn.Sequential(
            nn.Conv1d(1, filters, kernel_size, stride=1, padding=kernel_size // 2),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2, 2),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.out_features = filters * (length // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1).unsqueeze(1))
