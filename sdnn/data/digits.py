"""scikit-learn's bundled 8×8 ``digits`` (1,797 images, 10 classes): works offline."""

from __future__ import annotations

import torch

from sdnn.data.preprocess import Preprocessing
from sdnn.data.tensors import TensorSplits


def load_digits_splits(test_fraction: float = 0.3, split_seed: int = 0) -> TensorSplits:
    """A seeded, stratified train/test split; images (N, 1, 8, 8) scaled to [0, 1]. Raw inputs are
    scikit-learn's ``load_digits().images``: (N, 8, 8) values 0–16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype("float32") / 16.0
    y = bunch.target.astype("int64")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    as_images = lambda a: torch.from_numpy(a).unsqueeze(1)  # noqa: E731
    return TensorSplits(as_images(x_tr), torch.from_numpy(y_tr), as_images(x_te), torch.from_numpy(y_te),
                        num_classes=10, class_names=[str(d) for d in range(10)],
                        preprocessing=Preprocessing("float", "nhw", (8, 8), divide=16.0,
                                                    source="sklearn.datasets.load_digits().images"))
