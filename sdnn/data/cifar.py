"""CIFAR-10 and CIFAR-100 in the official "python version" format (Krizhevsky,
https://www.cs.toronto.edu/~kriz/cifar.html): ``cifar-10-python.tar.gz`` unpacks to
``cifar-10-batches-py/`` with ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and
``batches.meta``; ``cifar-100-python.tar.gz`` unpacks to ``cifar-100-python/`` with ``train``,
``test`` and ``meta``. Each file is a (Python 2) pickle of a dict: ``data`` is an (N, 3072)
uint8 array, one row per image holding the 32×32 R, G and B planes in turn (row-major), and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) a list of N class indices.

Batches are unpickled with an allow-list (numpy arrays and plain Python values only), so a
tampered file cannot run code. URLs and md5s are those torchvision uses.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdnn.data.download import download_and_verify, extract_tar
from sdnn.errors import DataError, listed

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_TRAIN_FILES = ("train",)
CIFAR100_TEST_FILE = "test"
CIFAR100_META_FILE = "meta"

VARIANTS = ("cifar10", "cifar100")
IMAGE_SHAPE = (3, 32, 32)
IMAGE_BYTES = 3 * 32 * 32

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")

# The superclass of each CIFAR-100 class, as the official files' coarse_labels give it (the loader reads
# the files; this table is for writing files in the official format, write_cifar_batches).
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13)

_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
}


@dataclass(frozen=True)
class _Spec:
    """One variant's official layout (read from the module constants at call time)."""

    variant: str
    url: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: str
    names_key: str
    num_classes: int

    @property
    def archive(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def files(self) -> tuple[str, ...]:
        return (self.meta_file, *self.train_files, self.test_file)


def _spec(variant: str) -> _Spec:
    if variant == "cifar10":
        return _Spec("cifar10", CIFAR10_URL, CIFAR10_MD5, CIFAR10_FOLDER, CIFAR10_TRAIN_FILES,
                     CIFAR10_TEST_FILE, CIFAR10_META_FILE, "labels", "label_names", 10)
    if variant == "cifar100":
        return _Spec("cifar100", CIFAR100_URL, CIFAR100_MD5, CIFAR100_FOLDER, CIFAR100_TRAIN_FILES,
                     CIFAR100_TEST_FILE, CIFAR100_META_FILE, "fine_labels", "fine_label_names", 100)
    raise DataError(f"unknown CIFAR variant {variant!r}; use one of {', '.join(VARIANTS)}")


_COARSE = _Spec("cifar100", CIFAR100_URL, CIFAR100_MD5, CIFAR100_FOLDER, CIFAR100_TRAIN_FILES, CIFAR100_TEST_FILE,
                CIFAR100_META_FILE, "coarse_labels", "coarse_label_names", 20)  # the superclasses' names in meta


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtin values only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")


class CorruptFile(DataError):
    """A batch file that is there but damaged; ``path`` and ``problem`` say where and what."""

    def __init__(self, path: Path, problem: str, hint: str = ""):
        self.path, self.problem = path, problem
        super().__init__(f"{self.where}: delete it and download again (dataset.download=true), or replace it "
                         f"with the official file{hint}")

    @property
    def where(self) -> str:
        return f"{self.path} is corrupt or truncated ({self.problem})"


def _corrupt(path: Path, problem: str) -> CorruptFile:
    return CorruptFile(path, problem)


def _read_pickle(path: Path) -> dict[str, Any]:
    """The file's dict with str keys (official files hold Python 2 str keys; bytes accepted)."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e})") from e
    except Exception as e:
        raise _corrupt(path, f"not a readable pickle: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise _corrupt(path, f"holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _labels(path: Path, batch: dict[str, Any], key: str, n: int | None, num_classes: int) -> np.ndarray:
    """``batch[key]`` as int64 (N,) in 0..num_classes−1 (``n`` of them when given): a list (or array) of
    integers, never floats, strings or bools silently converted (np.asarray(..., dtype=int64) would train on
    int(0.5) = 0, int("3") = 3 and True = 1)."""
    raw = batch[key]
    if isinstance(raw, (list, tuple)):
        odd = [v for v in raw if isinstance(v, bool) or not isinstance(v, (int, np.integer))][:1]
        if odd:
            raise _corrupt(path, f"'{key}' holds {odd[0]!r} ({type(odd[0]).__name__}), expected integer class labels")
        try:
            labels = np.asarray(raw, dtype=np.int64)
        except OverflowError as e:
            raise _corrupt(path, f"'{key}' holds an integer outside int64 ({e})") from e
    elif isinstance(raw, np.ndarray) and raw.dtype.kind in "iu":
        labels = raw.astype(np.int64)
    else:
        kind = f"a {raw.dtype} array" if isinstance(raw, np.ndarray) else f"a {type(raw).__name__}"
        raise _corrupt(path, f"'{key}' is {kind}, expected a list of integer class labels")
    if labels.ndim != 1 or (n is not None and len(labels) != n):
        raise _corrupt(path, f"'{key}' has shape {labels.shape}, expected ({n if n is not None else 'N'},)")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise _corrupt(path, f"{key} span {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}")
    return labels


def _read_batch(path: Path, spec: _Spec, coarse: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Images (N, 3, 32, 32) uint8, labels (N,) int64 and (``coarse``: CIFAR-100's) superclass labels
    (N,) int64 of one batch file."""
    batch = _read_pickle(path)
    missing = [k for k in ("data", spec.labels_key, *(("coarse_labels",) if coarse else ())) if k not in batch]
    if missing:
        raise _corrupt(path, f"keys {listed(sorted(map(str, batch)))} lack {missing}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise _corrupt(path, f"'data' is {kind}, expected a uint8 array")
    labels = _labels(path, batch, spec.labels_key, None, spec.num_classes)
    n = len(labels)
    if data.size != n * IMAGE_BYTES:
        raise _corrupt(path, f"'data' holds {data.size} bytes for {n} labels, "
                             f"expected {n} × {IMAGE_BYTES} = {n * IMAGE_BYTES}")
    superclasses = _labels(path, batch, "coarse_labels", n, len(CIFAR100_SUPERCLASSES)) if coarse else None
    return data.reshape(n, *IMAGE_SHAPE), labels, superclasses


def fine_to_coarse(labels: np.ndarray, superclasses: np.ndarray, path: Path) -> list[int]:
    """The superclass of each of the 100 classes, from the files' (fine, coarse) label pairs: each
    class must have exactly one superclass, and every class must appear."""
    pairs = np.unique(np.stack([labels, superclasses], 1), axis=0)
    fine, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        raise _corrupt(path, f"class(es) {fine[counts > 1][:10].tolist()} carry more than one coarse label")
    if len(fine) != len(CIFAR100_CLASSES):
        absent = sorted(set(range(len(CIFAR100_CLASSES))) - set(fine.tolist()))
        raise _corrupt(path, f"class(es) {absent[:10]} never appear, so their superclass is unknown")
    return pairs[:, 1].tolist()


def _read_class_names(path: Path, spec: _Spec) -> list[str]:
    meta = _read_pickle(path)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != spec.num_classes:
        raise _corrupt(path, f"'{spec.names_key}' should list {spec.num_classes} class names")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _locate(root: Path, spec: _Spec) -> tuple[Path, Path]:
    """(folder with the batch files, folder the archive goes in): root is either one."""
    if root.name == spec.folder:
        return root, root.parent
    if not (root / spec.folder).is_dir() and any((root / name).is_file() for name in spec.files):
        return root, root.parent
    return root / spec.folder, root


def _missing(folder: Path, spec: _Spec) -> list[str]:
    return [name for name in spec.files if not (folder / name).is_file()]


def _download(folder: Path, base: Path, spec: _Spec) -> None:
    """Fetch and md5-check the archive into ``base``, then move the missing files into ``folder``."""
    archive = base / spec.archive
    manual = (f"download {spec.url} on a machine with internet and put it at {archive} "
              f"(md5 {spec.md5}), or unpack it and put the files of {spec.folder}/ in {folder}")
    download_and_verify(spec.url, archive, spec.md5, manual=manual)
    staging = base / f".{spec.folder}.extracting-{os.getpid()}"
    try:
        extract_tar(archive, staging)
        unpacked = staging / spec.folder
        absent = [name for name in _missing(folder, spec) if not (unpacked / name).is_file()]
        if absent:
            raise DataError(f"{archive} lacks {', '.join(absent)} under {spec.folder}/: it is not "
                            f"the official {spec.variant} python-version archive; delete it and "
                            f"download again")
        folder.mkdir(parents=True, exist_ok=True)
        for name in _missing(folder, spec):
            os.replace(unpacked / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_cifar(root: str | Path, variant: str, download: bool = False, on_corrupt: str = "error",
               coarse: bool = False) -> dict[str, Any]:
    """Read the official batches: ``x_train``/``x_test`` uint8 (N, 3, 32, 32), ``y_train``/
    ``y_test`` int64 (N,), ``class_names`` (list of str), ``skipped`` (list of str); with ``coarse``
    (CIFAR-100 only) also ``fine_to_coarse`` (the superclass of each class, from the files'
    ``coarse_labels``) and ``coarse_names`` (``coarse_label_names`` of ``meta``).

    ``root`` is the folder holding ``cifar-10-batches-py/`` (``cifar-100-python/``) or that
    folder itself. Missing files are downloaded (md5-checked) when ``download`` is true.
    A damaged batch raises a ``DataError`` naming the file and the problem; with
    ``on_corrupt="skip"`` a damaged *training* batch file is left out instead and listed in
    ``skipped`` (the test batch and the class names cannot be left out).
    """
    if on_corrupt not in ("error", "skip"):
        raise DataError(f"dataset.on_corrupt={on_corrupt!r}: choose error or skip")
    spec = _spec(variant)
    if coarse and variant != "cifar100":
        raise DataError(f"dataset.coarse_labels=true: {variant} has no superclasses (CIFAR-100 has 20); "
                        "use dataset=cifar100, or dataset.merge=[...] to merge classes yourself")
    folder, base = _locate(Path(root).expanduser(), spec)
    missing = _missing(folder, spec)
    if missing and download:
        _download(folder, base, spec)
    elif missing:
        raise DataError(
            f"{spec.variant}: missing {', '.join(missing)} in {folder}. Either put the official "
            f"python-version batches at {folder}/ (unpack {spec.url}; or put that archive at "
            f"{base / spec.archive} and use dataset.download=true, which then needs no network), "
            f"or add dataset.download=true when online")
    batches, skipped = [], []
    for name in spec.train_files:
        try:
            batches.append(_read_batch(folder / name, spec, coarse))
        except CorruptFile as exc:
            if on_corrupt != "skip":
                raise CorruptFile(exc.path, exc.problem, "; or set dataset.on_corrupt=skip to train without "
                                                         "this batch") from exc
            skipped.append(exc.where)
    if not batches:
        raise DataError(f"{spec.variant}: every training batch in {folder} is damaged ({'; '.join(skipped)}); "
                        "dataset.on_corrupt=skip has nothing left to train on: download the files again")
    x_test, y_test, coarse_test = _read_batch(folder / spec.test_file, spec, coarse)
    arrays = {
        "x_train": np.concatenate([x for x, _, _ in batches]),
        "y_train": np.concatenate([y for _, y, _ in batches]),
        "x_test": np.ascontiguousarray(x_test),
        "y_test": y_test,
        "class_names": _read_class_names(folder / spec.meta_file, spec),
        "skipped": skipped,
    }
    if coarse:
        superclasses = np.concatenate([c for _, _, c in batches] + [coarse_test])
        labels = np.concatenate([arrays["y_train"], y_test])
        arrays["fine_to_coarse"] = fine_to_coarse(labels, superclasses, folder / spec.train_files[0])
        arrays["coarse_names"] = _read_class_names(folder / spec.meta_file, _COARSE)
    return arrays


def _dump(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _batch_dict(spec: _Spec, x: np.ndarray, y: np.ndarray, label: str, start: int) -> dict[str, Any]:
    batch = {"batch_label": label, spec.labels_key: [int(v) for v in y],
             "data": np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), IMAGE_BYTES),
             "filenames": [f"image_{start + i:06d}.png" for i in range(len(x))]}
    if spec.variant == "cifar100":
        batch["coarse_labels"] = [CIFAR100_FINE_TO_COARSE[int(v)] for v in y]
    return batch


def write_cifar_batches(root: str | Path, variant: str, x_train: np.ndarray, y_train: np.ndarray,
                        x_test: np.ndarray, y_test: np.ndarray, batches: int = 5) -> Path:
    """Write data in the official layout under ``root/<folder>/``; for tests and demos.

    Images are uint8 (N, 3, 32, 32). Dicts have the official str keys, pickled with protocol 2,
    so they load like the real files. CIFAR-10 train data is split over ``data_batch_1`` …
    ``data_batch_<batches>`` (officially 5; fewer leaves the rest missing, like a partial copy).
    CIFAR-100 always has one ``train`` file, with the official ``coarse_labels``. Returns the batches folder.
    """
    spec = _spec(variant)
    if not 1 <= batches <= len(CIFAR10_TRAIN_FILES):
        raise ValueError(f"batches must be 1..{len(CIFAR10_TRAIN_FILES)}, got {batches}")
    for name, x, y in (("x_train", x_train, y_train), ("x_test", x_test, y_test)):
        if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or len(x) != len(y):
            raise ValueError(f"{name} must be uint8 (N, 3, 32, 32) with N labels, "
                             f"got {x.dtype} {x.shape} and {len(y)} labels")
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    if spec.variant == "cifar10":
        _dump(folder / spec.meta_file, {"label_names": list(CIFAR10_CLASSES),
                                        "num_cases_per_batch": -(-len(x_train) // batches),
                                        "num_vis": IMAGE_BYTES})
        chunks = np.array_split(np.arange(len(x_train)), batches)
        for i, (name, idx) in enumerate(zip(spec.train_files[:batches], chunks)):
            label = f"training batch {i + 1} of {batches}"
            _dump(folder / name, _batch_dict(spec, x_train[idx], y_train[idx], label,
                                             int(idx[0]) if len(idx) else 0))
    else:
        _dump(folder / spec.meta_file, {"fine_label_names": list(CIFAR100_CLASSES),
                                        "coarse_label_names": list(CIFAR100_SUPERCLASSES)})
        _dump(folder / spec.train_files[0], _batch_dict(spec, x_train, y_train, "training batch 1 of 1", 0))
    _dump(folder / spec.test_file, _batch_dict(spec, x_test, y_test, "testing batch 1 of 1", 0))
    return folder
