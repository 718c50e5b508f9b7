"""Class-per-folder image trees: ``root/train/<class>/*.jpg``, ``root/test/<class>/...`` and
optionally ``root/val/<class>/...``; ``root`` may also be a ``.tar``/``.tar.gz`` of such a tree.

Images are decoded once (Pillow), stored as one uint8 tensor per split and cached as a
``.pt`` file next to the data (or under ``~/.cache/sdnn/image_folder`` when that folder is
read-only); later runs load the tensor file in a fraction of a second. Class indices follow
the sorted folder names (for CIFAR-10 that is CIFAR-10's own order).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from sdnn.data.tensors import TensorSplits
from sdnn.errors import DataError, listed
from sdnn.runlog import say, terminal

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
CACHE_VERSION = 1
MAX_IMAGE_MB = 64.0  # one image file larger than this is refused before it is read (dataset.max_image_mb)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _entry(parts: list[str]) -> tuple[str, str, str] | None:
    """(split, class, file name) of a path whose last three parts are split/class/image."""
    parts = [p for p in parts if p not in ("", ".")]
    if len(parts) >= 3 and parts[-3] in SPLITS and parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return parts[-3], parts[-2], parts[-1]
    return None


def _list_folder(root: Path) -> list[tuple[str, str, str]]:
    """(split, class, path) of every image under root/<split>/<class>/."""
    found = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for file in sorted(class_dir.iterdir()):
                if file.name.lower().endswith(IMAGE_SUFFIXES):
                    found.append((split, class_dir.name, str(file)))
    return found


def _fingerprint(root: Path) -> str:
    """Changes when the data does: the archive's size and time, or every image's name, size and time."""
    if _is_archive(root):
        stat = root.stat()
        text = f"{root.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    else:
        rows = []
        for split, cls, file in _list_folder(root):
            stat = os.stat(file)
            rows.append(f"{split}/{cls}/{Path(file).name}|{stat.st_size}|{stat.st_mtime_ns}")
        text = "\n".join(rows)
    return hashlib.sha1(text.encode()).hexdigest()


def _too_large(name: str, size: int, limit_mb: float) -> DataError:
    return DataError(f"{name}: {size / 2**20:.1f} MB, more than dataset.max_image_mb={limit_mb:g} for one image "
                     "file; remove it, or raise dataset.max_image_mb if your images are that large")


def _iter_images(root: Path, max_image_mb: float = MAX_IMAGE_MB) -> Iterator[tuple[str, str, str, bytes]]:
    """(split, class, name, encoded bytes) of one image at a time, from a folder (sorted order) or an archive
    (archive order: one sequential pass, as gzip cannot seek back cheaply; ``decode_image_tree`` sorts). A file
    larger than ``max_image_mb`` is an error before it is read."""
    limit = max_image_mb * 2**20
    if _is_archive(root):
        try:
            with tarfile.open(root, "r|*") as archive:
                for member in archive:
                    entry = _entry(member.name.split("/")) if member.isfile() else None
                    if entry is None:
                        continue
                    if member.size > limit:  # the header's size: nothing of it has been read yet
                        raise _too_large(f"{root}: member {member.name}", member.size, max_image_mb)
                    yield entry[0], entry[1], member.name, archive.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DataError(f"dataset.root={root}: cannot read the archive ({exc}); it is corrupt or truncated: "
                            "get it again, or unpack it and point dataset.root at the folder") from exc
        return
    for split, cls, file in _list_folder(root):
        try:
            size = os.stat(file).st_size
            if size > limit:
                raise _too_large(file, size, max_image_mb)
            yield split, cls, file, Path(file).read_bytes()
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc})") from exc


def _decode(data: bytes, size: int | tuple[int, int] | None, mode: str = "RGB") -> np.ndarray:
    """One encoded image as uint8 (C, H, W): converted to ``mode`` ("RGB", or "L" for gray) and, given
    ``size`` (a side, or (width, height)), resized (bilinear) unless it already has that size."""
    from PIL import Image

    with warnings.catch_warnings():
        # more pixels than Pillow's limit (89 M): an error, not a warning and gigabytes of memory
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert(mode)
            target = (size, size) if isinstance(size, int) else size
            if target is not None and image.size != tuple(target):
                image = image.resize(tuple(target), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
            return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


decode_image = _decode


def decode_image_tree(root: Path, image_size: int | None = None, on_corrupt: str = "error",
                      progress: bool = True, max_image_mb: float = MAX_IMAGE_MB) -> dict:
    """Decode every image of the tree into uint8 arrays (N, 3, H, W) per split, one file at a time (an
    archive is never held in memory: only the decoded images are)."""
    images: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    labels: dict[str, list[str]] = {s: [] for s in SPLITS}
    skipped: list = []
    shape = None
    stream = _iter_images(root, max_image_mb)
    description = f"decoding images in {root.name} (once; cached afterwards)"
    if progress and terminal(sys.stderr):
        from tqdm import tqdm

        stream = tqdm(stream, desc=description, unit=" images", mininterval=1.0)
    elif progress:  # a file or a pipe: one line, not a redrawn counter
        say(f"{description} …")
    decoded = []
    for split, cls, name, data in stream:
        try:
            array = _decode(data, image_size)
        except Exception as exc:  # Pillow raises many types for damaged files
            if on_corrupt == "skip":
                skipped.append(((split, cls, name.rsplit("/", 1)[-1]), name))
                continue
            raise DataError(f"{name}: not a readable image ({type(exc).__name__}: {exc}); remove or replace it, "
                            "or set dataset.on_corrupt=skip to skip damaged files") from exc
        decoded.append(((split, cls, name.rsplit("/", 1)[-1]), name, array))
    if _is_archive(root):  # archive order → the folder's sorted order
        decoded.sort(key=lambda item: item[0])
        skipped.sort(key=lambda item: item[0])
    skipped = [name for _, name in skipped]
    for (split, cls, _), name, array in decoded:
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise DataError(f"{name}: image size {array.shape[2]}×{array.shape[1]} differs from the first image's "
                            f"{shape[2]}×{shape[1]}; set dataset.image_size=<side> to resize every image to a square")
        images[split].append(array)
        labels[split].append(cls)
    if not images["train"]:
        raise DataError(f"dataset.root={root}: no images found under train/<class>/; expected root/train/<class>/*.jpg "
                        "and root/test/<class>/*.jpg (a folder, or a .tar/.tar.gz of it)")
    if not images["test"]:
        raise DataError(f"dataset.root={root}: no test images; expected root/test/<class>/*.jpg beside root/train/")
    class_names = sorted(set(labels["train"]))
    index = {name: i for i, name in enumerate(class_names)}
    out: dict = {"class_names": class_names, "skipped": skipped}
    for split in SPLITS:
        if not images[split]:
            continue
        unknown = sorted(set(labels[split]) - set(index))
        if unknown:
            raise DataError(f"dataset.root={root}: {split}/ has class folder(s) {listed(unknown)} that train/ "
                            "does not have")
        out[f"x_{split}"] = np.stack(images[split])
        out[f"y_{split}"] = np.asarray([index[c] for c in labels[split]], dtype=np.int64)
    return out


def _cache_path(root: Path, image_size: int | None, cache_file: str | None) -> Path:
    if cache_file:
        return Path(cache_file).expanduser()
    tag = f"sdnn-images-{image_size or 'native'}.pt"
    beside = root / f".{tag}" if root.is_dir() else root.with_name(f"{root.name}.{tag}")
    if os.access(beside.parent, os.W_OK) and beside.parent.stat().st_mode & 0o222:  # root ignores r-x modes
        return beside
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "sdnn" / "image_folder" / f"{digest}-{tag}"


def load_image_folder(root: str | None, image_size: int | None = None, cache_file: str | None = None,
                      on_corrupt: str = "error", max_image_mb: float = MAX_IMAGE_MB) -> TensorSplits:
    """The tree under ``root`` as uint8 tensors, decoded once and cached (see module docstring)."""
    if not root:
        raise DataError("dataset=image_folder needs its location: add dataset.root=/path/to/tree "
                        "(root/train/<class>/*.jpg, root/test/<class>/*.jpg; a .tar.gz of it also works)")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"dataset.root={root}: no such folder or archive")
    if not (path.is_dir() or _is_archive(path)):
        raise DataError(f"dataset.root={root}: expected a folder or a {'/'.join(ARCHIVE_SUFFIXES)} archive")
    if on_corrupt not in ("error", "skip"):
        raise DataError(f"dataset.on_corrupt={on_corrupt!r}: choose error or skip")
    cache = _cache_path(path, image_size, cache_file)
    fingerprint = _fingerprint(path)
    arrays = None
    if cache.is_file():
        try:
            stored = torch.load(cache, weights_only=True)
            if stored.get("version") == CACHE_VERSION and stored.get("fingerprint") == fingerprint:
                arrays = stored
        except Exception:  # a damaged or foreign cache file is rebuilt, never trusted
            arrays = None
    if arrays is None:
        decoded = decode_image_tree(path, image_size, on_corrupt, max_image_mb=max_image_mb)
        arrays = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in decoded.items()}
        arrays.update(version=CACHE_VERSION, fingerprint=fingerprint)
        partial = cache.with_name(cache.name + f".{os.getpid()}.part")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(arrays, partial)
            os.replace(partial, cache)
        except OSError as exc:  # a cache: the decoded images are used all the same
            partial.unlink(missing_ok=True)
            say(f"warning: cannot write the decoded-image cache {cache} ({exc.strerror or exc}); the images are "
                "decoded again in the next run (set dataset.cache_file to a writable place to keep them)")
    return TensorSplits(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                        num_classes=len(arrays["class_names"]), x_val=arrays.get("x_val"), y_val=arrays.get("y_val"),
                        class_names=list(arrays["class_names"]), skipped=list(arrays.get("skipped", [])))
