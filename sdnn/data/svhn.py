"""SVHN cropped digits in the official format (Netzer et al., http://ufldl.stanford.edu/housenumbers/):
``train_32x32.mat`` (73,257 images), ``extra_32x32.mat`` (531,131) and ``test_32x32.mat``
(26,032), MATLAB v5 files holding ``X``, uint8 of shape (32, 32, 3, N) (height, width, RGB,
image), and ``y``, shape (N, 1), the digit with 0 stored as 10.

``load_svhn`` returns images as uint8 (N, 3, 32, 32) and labels 0..9; training uses
train + extra by default, as the paper does. URLs and md5s are those torchvision uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from sdnn.data.download import download_and_verify
from sdnn.errors import DataError

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
}
CLASS_NAMES = tuple(str(d) for d in range(10))
MAT_IMAGE_SHAPE = (32, 32, 3)


def _url(name: str) -> str:
    return f"{SVHN_URL.rstrip('/')}/{name}"


def _corrupt(path: Path, problem: str) -> DataError:
    return DataError(f"{path} is corrupt or truncated ({problem}): delete it and download again "
                     f"(dataset.download=true), or replace it with the official file from {_url(path.name)}")


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and digits (N,) int64 of one official .mat file."""
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except Exception as e:
        raise _corrupt(path, f"not a readable MATLAB v5 file: {type(e).__name__}: {e}") from e
    images, labels = mat.pop("X", None), mat.pop("y", None)
    del mat
    if images is None or labels is None:
        raise _corrupt(path, "it lacks the variables 'X' and 'y'")
    if images.ndim != 4 or images.shape[:3] != MAT_IMAGE_SHAPE or images.dtype != np.uint8:
        raise _corrupt(path, f"'X' is {images.dtype} {images.shape}, expected uint8 (32, 32, 3, N)")
    n = images.shape[3]
    if labels.size != n or labels.ndim > 2 or labels.dtype.kind not in "iuf":  # not complex, bool or text
        raise _corrupt(path, f"'y' is {labels.dtype} {labels.shape}, expected ({n}, 1) for {n} images")
    labels = labels.reshape(n)
    if n and (labels.min() < 1 or labels.max() > 10 or np.any(labels != np.round(labels))):
        raise _corrupt(path, f"labels span {labels.min()}..{labels.max()}, expected integers 1..10")
    x = np.ascontiguousarray(images.transpose(3, 2, 0, 1))
    del images
    y = labels.astype(np.int64)
    y[y == 10] = 0
    return x, y


def load_svhn(root: str | Path, use_extra: bool = True, download: bool = False) -> dict[str, Any]:
    """Read the official .mat files in ``root``: ``x_train``/``x_test`` uint8 (N, 3, 32, 32),
    ``y_train``/``y_test`` int64 digits 0..9, ``class_names`` "0".."9".

    Train is train + extra (in that order) when ``use_extra``. Missing files are downloaded
    (md5-checked) when ``download`` is true.
    """
    root = Path(root).expanduser()
    train_parts = ("train", "extra") if use_extra else ("train",)
    missing = [part for part in (*train_parts, "test") if not (root / SVHN_FILES[part][0]).is_file()]
    if missing and download:
        for part in missing:
            name, md5 = SVHN_FILES[part]
            download_and_verify(_url(name), root / name, md5,
                                manual=f"download {_url(name)} on a machine with internet and put it "
                                       f"at {root / name} (md5 {md5})")
    elif missing:
        names = [SVHN_FILES[part][0] for part in missing]
        hint = "; or set dataset.use_extra=false to train on train_32x32.mat alone" if "extra" in missing else ""
        raise DataError(f"svhn: missing {', '.join(names)} in {root}. Either download "
                        f"{', '.join(_url(n) for n in names)} and put them in {root}/, "
                        f"or add dataset.download=true when online (extra_32x32.mat is 1.3 GB){hint}")
    pieces = [_read_mat(root / SVHN_FILES[part][0]) for part in train_parts]
    x_train = pieces[0][0] if len(pieces) == 1 else np.concatenate([x for x, _ in pieces])
    y_train = pieces[0][1] if len(pieces) == 1 else np.concatenate([y for _, y in pieces])
    del pieces
    x_test, y_test = _read_mat(root / SVHN_FILES["test"][0])
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": list(CLASS_NAMES)}


def write_svhn_mat(path: str | Path, x_nchw_uint8: np.ndarray, y_digits: np.ndarray) -> Path:
    """Write images (N, 3, 32, 32) uint8 and digits 0..9 as an official-layout .mat file
    (``X`` (32, 32, 3, N) uint8, ``y`` (N, 1) uint8 with 0 stored as 10); for tests and demos."""
    x = np.asarray(x_nchw_uint8)
    y = np.asarray(y_digits).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or len(x) != len(y):
        raise ValueError(f"expected uint8 (N, 3, 32, 32) images and N digits, got {x.dtype} {x.shape} "
                         f"and {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"digits must be 0..9, got {y.min()}..{y.max()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": x.transpose(2, 3, 1, 0), "y": labels}, format="5", do_compression=False)
    return path
