"""``python -m sdnn.predict RUN_DIR --features OUT.npz``: a finished run's backbone, frozen, as a feature
extractor — the penultimate features of the run's own validation and test splits, as a dataset file that
``dataset=npz`` reads (``x_train``/``y_train``: the validation split, which the run never trained on;
``x_test``/``y_test``: the test split; ``class_names``). The regime map's "shallow head on fixed features"
cells are made this way (docs/reproduction.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sdnn.artifact import LoadedModel
from sdnn.cache import atomic_savez
from sdnn.errors import DataError
from sdnn.predict.sources import Source, split_dataset, split_source

SPLITS = {"val": "train", "test": "test"}  # the run's split → the key of the features file


def embed(model: LoadedModel, source: Source, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The backbone's features (n, f) of a split's prepared inputs, and their labels."""
    net = model.net.to(device)
    on_device = source.on_device.to(device) if source.on_device is not None else None
    features, labels = [], []
    with torch.inference_mode():
        for batch in source.batches():
            x = batch.x.to(device)
            if on_device is not None:
                x = on_device(x, train=False)
            features.append(net.backbone(x).float().cpu())
            labels.append(batch.labels.cpu())
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def write_features(model: LoadedModel, out: Path, batch_size: int, device: torch.device,
                   trust: Sequence[str] = ()) -> dict[str, int]:
    """``out``: the features of the run's validation split as the training set, of its test split as the test
    set; returns the number of rows of each."""
    if model.card.multilabel:
        raise DataError("--features: multilabel runs (YouTube-8M) are streamed; their features are not written as "
                        "one file")
    dataset = split_dataset(model, trust)
    arrays: dict[str, np.ndarray] = {"class_names": np.asarray(model.card.class_names)}
    for split, key in SPLITS.items():
        try:
            source = split_source(model, split, batch_size, dataset, trust)
        except DataError as exc:
            if split != "val" or "no validation split" not in str(exc):
                raise
            raise DataError("--features: the run's validation split becomes the features' training set (data its "
                            "backbone never trained on), and this run has none; train it with dataset.val_fraction "
                            "> 0") from None
        arrays[f"x_{key}"], arrays[f"y_{key}"] = embed(model, source, device)
    atomic_savez(out, arrays)
    return {key: len(arrays[f"y_{key}"]) for key in SPLITS.values()}
