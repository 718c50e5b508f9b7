"""A run's inputs for ``sdnn.predict``: ``Batch`` and ``Source``, the checks of the raw layout and dtype, and
the readers: ``.npz``/``.npy`` arrays, folders of images, YouTube-8M TFRecord shards (``input_source``), and
the run's own ``--split`` reloaded from its stored configuration (``split_source``)."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sdnn.artifact import LoadedModel, ModelCard
from sdnn.data.arrays import NpzArrays, read_npy
from sdnn.data.image_folder import IMAGE_SUFFIXES, MAX_IMAGE_MB, decode_image
from sdnn.data.preprocess import Preprocessing
from sdnn.errors import DataError
from sdnn.targets import build, check_tree, resolve


@dataclass
class Batch:
    """Inputs for the network: ``raw`` (the user's form; the card's preprocessing applies) or already
    ``prepared`` (the run's own data path made them); optional labels and per-row names (file, id)."""

    x: Tensor
    prepared: bool = False
    labels: Tensor | None = None
    tags: list[str] | None = None


@dataclass
class Source:
    """Batches of one input, its size, what its rows are called in the CSV (``file``, ``id``), the
    metrics its labels allow ("acc" or "yt8m"; None without labels) and, for the run's own data, the
    run's device-side input step (``InputPipeline``: applied on the device, as in training)."""

    batches: Callable[[], Iterator[Batch]]
    total: int | None
    description: str
    tag_column: str | None = None
    labels: str | None = None
    on_device: torch.nn.Module | None = None


def to_raw_layout(x: np.ndarray, spec: Preprocessing, where: str) -> np.ndarray:
    """``x`` (N, ...) in the raw layout of ``spec``: the same shape as the training data's, or, for
    images, the same images in the other channel order (N, C, H, W) ⇄ (N, H, W, C) or without the
    channel axis (one channel). Anything else is a one-line error naming ``where``."""
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"{where}: no inputs (shape {x.shape}); expected {spec.describe()}")
    shape, want = tuple(x.shape[1:]), spec.shape
    if shape == want:
        return x
    if spec.is_image:
        c, h, w = spec.input_shape
        as_chw = {(c, h, w): lambda a: a, (h, w, c): lambda a: a.transpose(0, 3, 1, 2)}
        if c == 1:
            as_chw[(h, w)] = lambda a: a[:, None]
        if shape in as_chw:
            chw = as_chw[shape](x)
            return {"nchw": chw, "nhwc": chw.transpose(0, 2, 3, 1), "nhw": chw[:, 0]}[spec.layout]
    raise DataError(f"{where}: inputs of shape {shape}; expected {spec.describe()} (like {spec.source or 'the training data'})")


def check_dtype(x: np.ndarray, spec: Preprocessing, where: str) -> np.ndarray:
    """``x`` as the model takes it: uint8 images as they are, numbers as float32 (the model's cast), finite
    after that cast (a float64 of 1e300 is infinite in float32)."""
    if spec.kind == "uint8":
        if x.dtype != np.uint8:
            raise DataError(f"{where}: dtype {x.dtype}; expected uint8 images like {spec.source or 'the training data'}")
        return x
    if x.dtype.kind not in "iuf" or x.dtype == np.uint8:  # uint8 would have been scaled by 1/255 in training
        raise DataError(f"{where}: dtype {x.dtype}; expected numbers like {spec.source or 'the training data'} "
                        "(float32; integers other than uint8 are converted, as in training)")
    with np.errstate(over="ignore", invalid="ignore"):
        x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise DataError(f"{where}: contains NaN or Inf values (as float32, the model's type: values beyond "
                        "±3.4e38 are infinite)")
    return x


def array_batches(x: np.ndarray, batch_size: int, labels: np.ndarray | None = None) -> Callable[[], Iterator[Batch]]:
    def batches():
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
            y = None if labels is None else torch.from_numpy(labels[start:start + batch_size])
            yield Batch(chunk, labels=y)
    return batches


def array_source(path: Path, key: str | None, labels_key: str | None, card: ModelCard, batch_size: int) -> Source:
    """An ``.npy`` file, or the arrays of an ``.npz`` that are used (opened lazily: ``NpzArrays``)."""
    spec = card.preprocessing
    if path.suffix.lower() == ".npy":
        if key or labels_key:
            raise DataError(f"--key/--labels: {path} is an .npy file with one array; leave them out")
        x = read_npy(path)
        return Source(array_batches(to_raw_layout(check_dtype(x, spec, str(path)), spec, str(path)), batch_size),
                      len(x), f"predicting {path.name}")
    with NpzArrays(path) as arrays:
        return _npz_source(arrays, path, key, labels_key, card, batch_size)


def _npz_source(arrays: NpzArrays, path: Path, key: str | None, labels_key: str | None, card: ModelCard,
                batch_size: int) -> Source:
    spec = card.preprocessing
    found = ", ".join(sorted(arrays.names)) or "none"
    if key is not None:
        if key not in arrays:
            raise DataError(f"{path}: no array '{key}' (--key); found {found}")
        x, where = arrays.read(key), f"{path}['{key}']"
    elif card.preprocessing.l2_normalize and "mean_rgb" in arrays:  # YouTube-8M features, by their record names
        names = ["mean_rgb", "mean_audio"] if spec.shape[0] == 1152 else ["mean_rgb"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise DataError(f"{path}: no array '{missing[0]}' (this run's features are {' ⊕ '.join(names)}); "
                            f"found {found}")
        parts = [arrays.read(n) for n in names]
        if len({len(p) for p in parts}) > 1 or any(p.ndim != 2 for p in parts):
            raise DataError(f"{path}: {' and '.join(names)} must be 2-D arrays with one row per video")
        where = f"{path}[{' ⊕ '.join(names)}]"
        x = np.concatenate([check_dtype(p, spec, where) for p in parts], axis=1)
    elif "x" in arrays:
        x, where = arrays.read("x"), f"{path}['x']"
    elif len(arrays.names) == 1:
        name = arrays.names[0]
        x, where = arrays.read(name), f"{path}['{name}']"
    else:
        raise DataError(f"{path}: no array 'x'; choose one with --key (found {found})")
    x = to_raw_layout(check_dtype(x, spec, where), spec, where)
    y = None
    if labels_key is not None:
        if card.multilabel:
            raise DataError(f"--labels {labels_key}: labels of a multilabel run are not supported in an .npz; "
                            "give its TFRecord shards as --input to get the four metrics")
        if labels_key not in arrays:
            raise DataError(f"{path}: no array '{labels_key}' (--labels); found {found}")
        y = arrays.read(labels_key)
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise DataError(f"{path}['{labels_key}']: expected {len(x)} integer class labels (1-D), got "
                            f"{y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= card.num_classes):
            raise DataError(f"{path}['{labels_key}']: labels must be 0..{card.num_classes - 1}; found "
                            f"{int(y.min())}..{int(y.max())}")
        y = y.astype(np.int64)
    return Source(array_batches(x, batch_size, y), len(x), f"predicting {path.name}",
                  labels="acc" if y is not None else None)


def read_image(path: Path, max_image_mb: float) -> bytes:
    """An image file's bytes: a regular file of at most ``max_image_mb`` (checked before it is read)."""
    limit = int(max_image_mb * 2**20)
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DataError(f"{path}: not a regular file")
            data = handle.read(limit + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise DataError(f"{path}: {max(info.st_size, len(data)) / 2**20:.1f} MB, more than --max-image-mb="
                        f"{max_image_mb:g} for one image file; remove it, or raise --max-image-mb if your images "
                        "are that large")
    return data


def image_source(folder: Path, card: ModelCard, batch_size: int, max_image_mb: float = MAX_IMAGE_MB) -> Source:
    """A folder of images: ``folder/<class>/*.png`` (labels when the folder names are class names) and/or
    ``folder/*.png``; each decoded as the run's images (RGB or gray, resized to its size)."""
    spec = card.preprocessing
    if not spec.is_image or spec.kind != "uint8":
        raise DataError(f"--input {folder}: a folder of images needs a run trained on uint8 images; this run takes "
                        f"{spec.describe()}")
    c, h, w = spec.input_shape
    if c not in (1, 3):
        raise DataError(f"--input {folder}: the run's images have {c} channels; image files give 1 (gray) or 3 (RGB)")
    is_image = lambda p: p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)  # noqa: E731
    files = [(p, None) for p in sorted(folder.iterdir()) if is_image(p)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files += [(p, sub.name) for p in sorted(sub.iterdir()) if is_image(p)]
    if not files:
        raise DataError(f"--input {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or in its subfolders")
    index = {name: i for i, name in enumerate(card.class_names)}
    folders = {label for _, label in files if label is not None}
    labelled = bool(folders) and folders <= set(index) and all(label is not None for _, label in files)

    def batches():
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            images = []
            for path, _ in chunk:
                try:
                    data = read_image(path, max_image_mb)
                    images.append(decode_image(data, (w, h), "L" if c == 1 else "RGB"))
                except DataError:
                    raise
                except Exception as exc:  # Pillow raises many types for damaged files
                    raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
            x = to_raw_layout(np.stack(images), spec, str(folder))
            y = torch.tensor([index[label] for _, label in chunk]) if labelled else None
            yield Batch(torch.from_numpy(np.ascontiguousarray(x)), labels=y,
                        tags=[str(p.relative_to(folder)) for p, _ in chunk])

    return Source(batches, len(files), f"predicting {folder.name}/", tag_column="file",
                  labels="acc" if labelled else None)


def shard_source(pattern: str, card: ModelCard, batch_size: int) -> Source:
    """YouTube-8M TFRecord shards: features made as in training (L2-normalised), labels, video ids."""
    from sdnn.data.yt8m import FEATURE_SETS, YT8MStream, find_shards

    if not card.multilabel or not card.preprocessing.l2_normalize:
        raise DataError(f"--input {pattern}: TFRecord shards are YouTube-8M's; this run takes "
                        f"{card.preprocessing.describe()}")
    features = str(card.config.get("dataset", {}).get("features", "rgb"))
    if features not in FEATURE_SETS:
        features = "rgb_audio" if card.input_shape[0] == 1152 else "rgb"
    stream = YT8MStream(find_shards(pattern), batch_size, features, train=False, num_classes=card.num_classes,
                        with_ids=True)

    def batches():
        for x, y, ids in stream:
            yield Batch(x, prepared=True, labels=y, tags=list(ids))

    return Source(batches, stream.total, f"predicting {pattern}", tag_column="id", labels="yt8m")


def input_source(path_text: str, key: str | None, labels_key: str | None, card: ModelCard,
                 batch_size: int, max_image_mb: float = MAX_IMAGE_MB) -> Source:
    path = Path(path_text).expanduser()
    if path.is_dir():
        if key or labels_key:
            raise DataError(f"--input {path} is a folder of images; --key and --labels are for .npz files")
        return image_source(path, card, batch_size, max_image_mb)
    if path_text.lower().endswith((".tfrecord", ".tfrecords")) or (glob.has_magic(path_text) and not path.exists()):
        return shard_source(path_text, card, batch_size)
    if not path.is_file():
        raise DataError(f"--input {path}: no such file or folder")
    if path.suffix.lower() not in (".npz", ".npy"):
        raise DataError(f"--input {path}: expected an .npz or .npy file, a folder of images, or TFRecord shards")
    return array_source(path, key, labels_key, card, batch_size)


@contextlib.contextmanager
def working_directory(path: Path):
    """The block runs in ``path`` (the run's relative data paths), with no relative entry ('' or '.') on the
    import path meanwhile: a module is never found in that folder."""
    previous, paths = Path.cwd(), list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.isabs(p)]
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
        sys.path[:] = paths


def split_dataset(model: LoadedModel, trust: Sequence[str] = ()) -> tuple[type, dict[str, Any], int]:
    """The class of the run's ``config.dataset`` (from its card: data) and its entry and seed, every
    ``_target_`` in it allow-listed (``sdnn.targets``) before anything is imported, nothing called yet."""
    node, seed = model.card.config.get("dataset"), model.card.config.get("seed", 0)
    if not isinstance(node, dict) or "_target_" not in node:
        raise DataError(f"{model.run_dir}: the model card has no dataset configuration to reload --split from")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"{model.run_dir}: the model card's config.seed={seed!r} is not an integer")
    cls = resolve(node["_target_"], "dataset", None, trust, model.run_dir,
                  must=lambda c: callable(getattr(c, "load", None)) or _is_data_module(c),
                  needs="a dataset class (one with load(), such as sdnn.data.sources.Npz, or a data module with "
                        "train_dataloader() and test_dataloader(): dataset=custom)")
    check_tree(node, "dataset", None, trust, model.run_dir)
    return cls, node, seed


def _is_data_module(cls: Any) -> bool:
    """A user's data module (``dataset=custom``): not SDNN's own dataset class, but one with both loaders."""
    from sdnn.data.custom import is_source, provides

    return not is_source(cls) and all(provides(cls, hook) for hook in ("train_dataloader", "test_dataloader"))


def split_source(model: LoadedModel, split: str, batch_size: int, dataset: tuple[type, dict[str, Any], int],
                 trust: Sequence[str] = ()) -> Source:
    """The run's own ``split`` reloaded through the run's data path from ``dataset`` (``split_dataset``),
    built from the card's values as they are (call inside ``working_directory(launch_dir_of(card))``:
    relative data paths are the run's)."""
    card = model.card
    cls, node, seed = dataset
    try:
        if _is_data_module(cls):  # dataset=custom: the user's module (trusted by name), read as training read it
            from sdnn.data.custom import DataModuleSource, split_arguments

            own, shared = split_arguments(node)
            module = build(own, "dataset", None, trust, model.run_dir, top=cls)
            source = DataModuleSource(module, str(node["_target_"]), progress=False, seed=seed, **shared)
        else:
            source = build(node, "dataset", None, trust, model.run_dir, top=cls, seed=seed)
    except (TypeError, ValueError) as exc:  # the card's values do not fit the class
        raise DataError(f"dataset ({node['_target_']}) in the model card: {type(exc).__name__}: {exc}") from None
    loaded = source.load(None)
    if getattr(loaded, "streamed", False):  # YouTube-8M: the validate shards are the run's test split
        if split != "test":
            raise DataError(f"--split {split}: YouTube-8M runs have no validation split; use --split test "
                            "(the validate shards)")
        stream = loaded.stream("validate", train=False, batch_size=batch_size, with_ids=True)

        def stream_batches():
            for x, y, ids in loaded.loader(stream):
                yield Batch(x, prepared=True, labels=y, tags=list(ids))

        return Source(stream_batches, stream.total, f"{split} split of {card.dataset}", tag_column="id",
                      labels="yt8m")
    if loaded.preprocessing != card.preprocessing:
        print(f"note: the data's preprocessing ({loaded.preprocessing.to_json()}) differs from the model card's: the "
              "files changed since the run, so the metric will differ", file=sys.stderr)
    x, y = (loaded.x_test, loaded.y_test) if split == "test" else (loaded.x_val, loaded.y_val)
    if x is None:
        raise DataError(f"--split val: the run has no validation split (dataset.val_fraction was 0 and the data "
                        "has none)")
    from sdnn.data.batch_augment import InputPipeline

    def batches():
        for start in range(0, len(x), batch_size):
            yield Batch(x[start:start + batch_size], prepared=True, labels=y[start:start + batch_size])

    return Source(batches, len(x), f"{split} split of {card.dataset}", labels="acc",
                  on_device=InputPipeline(None, loaded.norm_mean, loaded.norm_std))

