"""Bring your own data: one ``.npz`` with ``x_train, y_train, x_test, y_test`` (optional
``x_val, y_val``). Images as (N, H, W, C), (N, C, H, W) or (N, H, W); vectors as (N, F);
labels as integers 0..c−1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sdnn.data.arrays import NpzArrays
from sdnn.data.preprocess import Preprocessing
from sdnn.data.tensors import TensorSplits
from sdnn.errors import DataError, listed

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
_CHANNELS = (1, 3, 4)


def raw_layout(x: np.ndarray, layout: str, key: str, path: Path) -> str:
    """The layout of ``x``: nf (vectors), nhw (gray images), nhwc or nchw."""
    if x.ndim == 2:
        return "nf"
    if x.ndim == 3:
        return "nhw"
    if x.ndim != 4:
        raise DataError(f"{path}: '{key}' has shape {x.shape}; expected (N, F), (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if layout == "auto":
        channels_last, channels_first = x.shape[3] in _CHANNELS, x.shape[1] in _CHANNELS
        if channels_last == channels_first:
            raise DataError(f"{path}: cannot tell the channel axis of '{key}' with shape {x.shape}; "
                            "set dataset.layout=nhwc or dataset.layout=nchw")
        layout = "nhwc" if channels_last else "nchw"
    return layout


def _to_nchw(x: np.ndarray, layout: str, key: str, path: Path) -> np.ndarray:
    layout = raw_layout(x, layout, key, path)
    if layout == "nhw":
        return x[:, None]
    return x.transpose(0, 3, 1, 2) if layout == "nhwc" else x


def load_npz_splits(path: str | None, layout: str = "auto") -> TensorSplits:
    """Read and check the arrays; uint8 images are scaled to [0, 1]. ``preprocessing`` records the
    raw form (x_train's dtype kind, layout and shape) and the scaling, for ``model/``."""
    if not path:
        raise DataError("dataset=npz needs a file: add dataset.path=/path/to/data.npz")
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise DataError(f"dataset.path={path}: no such file")
    with NpzArrays(file) as archive:  # only the arrays used are read, each header checked before it is
        missing = [k for k in REQUIRED if k not in archive]
        if missing:
            raise DataError(f"{file}: missing array(s) {', '.join(missing)}; found "
                            f"{', '.join(sorted(archive.names)) or 'none'}")
        if ("x_val" in archive) != ("y_val" in archive):
            raise DataError(f"{file}: give both x_val and y_val, or neither")
        arrays = {k: archive.read(k) for k in (*REQUIRED, "x_val", "y_val") if k in archive}
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arrays]
    tensors = {}
    for s in splits:
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if y.ndim != 1 or y.dtype.kind not in "iu":  # not bool, float, complex, timedelta or strings
            raise DataError(f"{file}: y_{s} must be a 1-D array of integer class labels, got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{file}: x_{s} has {len(x)} rows but y_{s} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{file}: x_{s} is empty")
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        if x.dtype.kind not in "iuf":  # complex would lose its imaginary part; bool, timedelta, strings are no inputs
            raise DataError(f"{file}: x_{s} must be integer or real numbers (int, uint8, float), got {x.dtype}; "
                            "convert it first (complex values: split them into real features)")
        x = _to_nchw(x, layout, f"x_{s}", file).astype(np.float32) / scale
        if not np.isfinite(x).all():
            raise DataError(f"{file}: x_{s} contains NaN or Inf values; clean or impute them first")
        tensors[s] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))
    shapes = {s: tuple(tensors[s][0].shape[1:]) for s in splits}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{file}: splits have different sample shapes {shapes}")
    labels = torch.cat([tensors[s][1] for s in splits])
    if int(labels.min()) < 0:
        raise DataError(f"{file}: negative class label {int(labels.min())}; labels must be 0..c-1")
    num_classes = int(labels.max()) + 1
    present = np.unique(tensors["train"][1].numpy())  # no array of num_classes: a label of 10^9 is one typo
    if len(present) < num_classes:  # the first 10 absent classes lie below len(present) + 10
        empty = np.setdiff1d(np.arange(min(num_classes, len(present) + 10)), present)[:10].tolist()
        raise DataError(f"{file}: labels go up to {num_classes - 1}, but class(es) "
                        f"{listed(empty, total=num_classes - len(present))} have no training sample; labels must be "
                        "0..c-1 with every class present")
    val = tensors.get("val", (None, None))
    x_train = arrays["x_train"]
    raw = Preprocessing("uint8" if x_train.dtype == np.uint8 else "float", raw_layout(x_train, layout, "x_train", file),
                        x_train.shape[1:], divide=255.0 if x_train.dtype == np.uint8 else 1.0,
                        source=f"{file.name}'s x_train")
    return TensorSplits(*tensors["train"], *tensors["test"], num_classes=num_classes, x_val=val[0], y_val=val[1],
                        preprocessing=raw)
