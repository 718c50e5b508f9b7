"""``python -m sdnn.predict RUN_DIR``: use a finished run's model (its ``model/`` folder, ``sdnn.artifact``)
without training data or training code.

    python -m sdnn.predict RUN_DIR --input FILE.npz [--key x] --output OUT.csv
    python -m sdnn.predict RUN_DIR --input IMAGES/ --output OUT.csv     # a class-per-folder or flat folder
    python -m sdnn.predict RUN_DIR --input 'shards*.tfrecord' --output OUT.csv   # YouTube-8M runs
    python -m sdnn.predict RUN_DIR --split test                         # re-evaluates results.json's test

``--input`` takes raw inputs in the form the run was trained on (the run's own preprocessing is
applied: ``model/model.json`` ``preprocessing``): an ``.npz`` (``--key`` names the array; a YouTube-8M
run also takes ``mean_rgb`` and ``mean_audio``) or ``.npy`` file, a folder of images, or YouTube-8M
TFRecord shards. OUT.csv has one row per input: ``index,class,score`` (+ ``name`` where the run knows
class names; ``file`` or ``id`` for image folders and shards), or, for multilabel runs and
``--top-k K``, the K best classes: ``index,class_1,score_1,...``. ``class`` is the class of the
arg-max output unit (the run's own evaluation); ``score`` is that class's score: the sigmoid of the
max over its subclasses' logits (sigmoid-loss runs, the default), or the softmax probability of its
units, summed (softmax losses such as ``loss=ce``). Labels (``--labels KEY``, the folders of a
class-per-folder tree, or the shards' own) add the accuracy, or YouTube-8M's four metrics.

``--split test|val`` reloads the run's dataset from its stored configuration (no training) and
prints the metric ``results.json`` reports for that split, computed as the run computed it.

Every error a user can fix is one line on stderr with exit status 2, and nothing is written then
(the CSV is written to a temporary file and renamed at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import json
import math
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sdnn.artifact import LoadedModel, ModelCard, launch_dir_of, load_model
from sdnn.data.image_folder import IMAGE_SUFFIXES, decode_image
from sdnn.data.preprocess import Preprocessing
from sdnn.errors import DataError, user_message
from sdnn.runlog import PlainProgress
from sdnn.subclass import class_predictions, class_scores

DEFAULT_TOP_K = 20  # multilabel runs


# ----------------------------------------------------------------------------- command line plumbing

class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``error: ...``, exit status 2), like the rest of sdnn."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False); "
                        "use --device cpu or auto")
    return torch.device(name)


@contextlib.contextmanager
def atomic_output(path: Path | None, what: str = "--output"):
    """A temporary file beside ``path`` (created now, so an unwritable place fails before any work),
    renamed to ``path`` when the block succeeds and removed when it fails. ``None``: no file."""
    if path is None:
        yield None
        return
    if path.is_dir():
        raise DataError(f"{what} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise DataError(f"{what} {path}: cannot write it (folder {path.parent} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot write it ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 → what a plain open() would give
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Progress:
    """A rich bar on a terminal; elsewhere ``runlog.PlainProgress``'s lines on stderr (only for inputs of
    4 batches or more)."""

    def __init__(self, total: int | None, description: str, unit: str, enabled: bool = True, batches: int = 1):
        self.total, self.description, self.unit = total, description, unit
        self.enabled = enabled and batches >= 4  # large inputs only
        self._bar = self._task = self._lines = None

    def __enter__(self):
        if self.enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeRemainingColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        elif self.enabled:
            self._lines = PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), self.description,
                                        self.total or 0, self.unit)
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self._lines is not None:
            self._lines.advance(n)

    def __exit__(self, kind, *exc):
        if self._bar is not None:
            self._bar.__exit__(kind, *exc)
        elif self._lines is not None and kind is None:
            self._lines.finish()
        return False


# ----------------------------------------------------------------------------- inputs

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
    if spec.kind == "uint8":
        if x.dtype != np.uint8:
            raise DataError(f"{where}: dtype {x.dtype}; expected uint8 images like {spec.source or 'the training data'}")
        return x
    if x.dtype.kind not in "iuf" or x.dtype == np.uint8:  # uint8 would have been scaled by 1/255 in training
        raise DataError(f"{where}: dtype {x.dtype}; expected numbers like {spec.source or 'the training data'} "
                        "(float32; integers other than uint8 are converted, as in training)")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: contains NaN or Inf values")
    return x


def array_batches(x: np.ndarray, batch_size: int, labels: np.ndarray | None = None) -> Callable[[], Iterator[Batch]]:
    def batches():
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
            y = None if labels is None else torch.from_numpy(labels[start:start + batch_size])
            yield Batch(chunk, labels=y)
    return batches


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` or ``.npy`` file, without unpickling anything."""
    try:
        if path.suffix.lower() == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz/.npy file ({exc})") from None


def array_source(path: Path, key: str | None, labels_key: str | None, card: ModelCard, batch_size: int) -> Source:
    arrays = read_arrays(path)
    spec = card.preprocessing
    found = ", ".join(sorted(k for k in arrays if k)) or "none"
    if "" in arrays:  # .npy
        if key:
            raise DataError(f"--key {key}: {path} is an .npy file with one array; leave --key out")
        x, where = arrays[""], str(path)
    elif key is not None:
        if key not in arrays:
            raise DataError(f"{path}: no array '{key}' (--key); found {found}")
        x, where = arrays[key], f"{path}['{key}']"
    elif card.preprocessing.l2_normalize and "mean_rgb" in arrays:  # YouTube-8M features, by their record names
        names = ["mean_rgb", "mean_audio"] if spec.shape[0] == 1152 else ["mean_rgb"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise DataError(f"{path}: no array '{missing[0]}' (this run's features are {' ⊕ '.join(names)}); "
                            f"found {found}")
        parts = [arrays[n] for n in names]
        if len({len(p) for p in parts}) > 1 or any(p.ndim != 2 for p in parts):
            raise DataError(f"{path}: {' and '.join(names)} must be 2-D arrays with one row per video")
        x, where = np.concatenate([p.astype(np.float32) for p in parts], axis=1), f"{path}[{' ⊕ '.join(names)}]"
    elif "x" in arrays:
        x, where = arrays["x"], f"{path}['x']"
    elif len(arrays) == 1:
        (name, x), = arrays.items()
        where = f"{path}['{name}']"
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
        y = arrays[labels_key]
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise DataError(f"{path}['{labels_key}']: expected {len(x)} integer class labels (1-D), got "
                            f"{y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= card.num_classes):
            raise DataError(f"{path}['{labels_key}']: labels must be 0..{card.num_classes - 1}; found "
                            f"{int(y.min())}..{int(y.max())}")
        y = y.astype(np.int64)
    return Source(array_batches(x, batch_size, y), len(x), f"predicting {path.name}",
                  labels="acc" if y is not None else None)


def image_source(folder: Path, card: ModelCard, batch_size: int) -> Source:
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
                    images.append(decode_image(path.read_bytes(), (w, h), "L" if c == 1 else "RGB"))
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
                 batch_size: int) -> Source:
    path = Path(path_text).expanduser()
    if path.is_dir():
        if key or labels_key:
            raise DataError(f"--input {path} is a folder of images; --key and --labels are for .npz files")
        return image_source(path, card, batch_size)
    if path_text.lower().endswith((".tfrecord", ".tfrecords")) or (glob.has_magic(path_text) and not path.exists()):
        return shard_source(path_text, card, batch_size)
    if not path.is_file():
        raise DataError(f"--input {path}: no such file or folder")
    if path.suffix.lower() not in (".npz", ".npy"):
        raise DataError(f"--input {path}: expected an .npz or .npy file, a folder of images, or TFRecord shards")
    return array_source(path, key, labels_key, card, batch_size)


@contextlib.contextmanager
def working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def split_source(model: LoadedModel, split: str, batch_size: int) -> Source:
    """The run's own ``split`` reloaded from its stored configuration, through the run's data path
    (call inside ``working_directory(launch_dir_of(card))``: relative data paths are the run's)."""
    from omegaconf import OmegaConf

    from sdnn.build import instantiate_group

    card = model.card
    if "dataset" not in card.config:
        raise DataError(f"{model.run_dir}: the model card has no dataset configuration to reload --split from")
    cfg = OmegaConf.create(card.config)
    source = instantiate_group("dataset", cfg.dataset, keep_name=True, seed=cfg.get("seed", 0))
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


# ----------------------------------------------------------------------------- the model over a source

class Metrics:
    """Accuracy (multiclass) or YouTube-8M's four metrics, computed as ``SDNNModule`` computes them."""

    def __init__(self, kind: str, num_classes: int):
        self.kind, self.num_classes = kind, num_classes
        if kind == "acc":
            from torchmetrics.classification import MulticlassAccuracy

            self.acc = MulticlassAccuracy(num_classes, average="micro")
        else:
            from sdnn.metrics import PERR, HitAtOne, MeanAPAndGAP

            self.hit, self.perr, self.pairs = HitAtOne(), PERR(), MeanAPAndGAP(num_classes)

    def update(self, units: Tensor, s2c: Tensor, labels: Tensor) -> None:
        labels = labels.to(units.device)
        if self.kind == "acc":
            self.acc = self.acc.to(units.device)
            self.acc.update(class_predictions(units, s2c), labels)
            return
        scores = class_scores(torch.sigmoid(units.float()), s2c, self.num_classes)
        for metric in (self.hit, self.perr, self.pairs):
            metric.to(units.device).update(scores, labels)

    def compute(self) -> dict[str, float]:
        if self.kind == "acc":
            return {"acc": float(self.acc.compute())}
        pairs = self.pairs.compute()
        return {"hit_at_1": float(self.hit.compute()), "perr": float(self.perr.compute()), "map": float(pairs["map"]),
                "gap": float(pairs["gap"]), "videos": int(pairs["videos"])}


def autocast(card: ModelCard, device: torch.device):
    """The run's evaluation precision: bf16/fp16 autocast where it trained with mixed precision."""
    if card.precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if card.precision.startswith("16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def header(card: ModelCard, top_k: int, tag_column: str | None) -> list[str]:
    first = ["index"] + ([tag_column] if tag_column else [])
    if top_k == 1:
        return first + ["class", "score"] + (["name"] if card.named else [])
    columns = []
    for r in range(1, top_k + 1):
        columns += [f"class_{r}", f"score_{r}"] + ([f"name_{r}"] if card.named else [])
    return first + columns


def predict(model: LoadedModel, source: Source, device: torch.device, top_k: int, writer=None,
            progress: bool = True, batch_size: int | None = None) -> dict[str, float] | None:
    """Run the model over ``source``; rows to ``writer`` (a csv.writer) and the metrics its labels allow."""
    card, net = model.card, model.net.to(device)
    s2c = net.subclass_to_class
    on_device = source.on_device.to(device) if source.on_device is not None else None
    metrics = Metrics(source.labels, card.num_classes) if source.labels else None
    if writer is not None:
        writer.writerow(header(card, top_k, source.tag_column))
    index = 0
    batches = math.ceil(source.total / (batch_size or card.eval_batch_size)) if source.total else 10
    with torch.inference_mode(), Progress(source.total, source.description, "inputs", progress, batches) as bar:
        for batch in source.batches():
            x = batch.x.to(device)
            if on_device is not None:
                x = on_device(x, train=False)  # the run's own normalisation step, on the device
            with autocast(card, device):
                units = net.network(x) if batch.prepared else net.unit_logits(x)
            units = units.float()
            if metrics is not None and batch.labels is not None:
                metrics.update(units, s2c, batch.labels)
            if writer is not None:
                logits = net.class_logits(units)
                scores = net.scores(units, logits).cpu()
                if top_k == 1:
                    classes = class_predictions(units, s2c).cpu()[:, None]
                else:
                    # ties: the lower class first (a stable sort)
                    classes = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top_k]
                chosen = scores.gather(1, classes)
                for row in range(len(x)):
                    cells = [index + row] + ([batch.tags[row]] if source.tag_column else [])
                    for k in range(classes.shape[1]):
                        cls = int(classes[row, k])
                        cells += [cls, f"{float(chosen[row, k]):.8g}"] + ([card.class_names[cls]] if card.named else [])
                    writer.writerow(cells)
            index += len(x)
            bar.advance(len(x))
    return metrics.compute() if metrics is not None else None


def format_metrics(values: dict[str, float]) -> str:
    if "acc" in values:
        return f"acc {values['acc']!r} ({100 * values['acc']:.2f}%)"
    return "   ".join(f"{k} {values[k]!r}" for k in ("hit_at_1", "perr", "map", "gap")) + f"   videos {values['videos']}"


def compare_with_results(run_dir: Path, split: str, values: dict[str, float]) -> str:
    """How the values compare with ``results.json``'s for the split."""
    try:
        stored = json.loads((run_dir / "results.json").read_text()).get(split) or {}
    except (OSError, ValueError):
        return "(no results.json to compare with)"
    keys = [k for k in ("acc", "hit_at_1", "perr", "map", "gap") if k in values and k in stored]
    if not keys:
        return f"(results.json has no {split} metrics to compare with)"
    same = all(values[k] == stored[k] for k in keys)
    listed = ", ".join(f"{split}.{k} {stored[k]!r}" for k in keys)
    return f"results.json {listed}: {'the same' if same else 'DIFFERENT'}"


# ----------------------------------------------------------------------------- entry point

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m sdnn.predict", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (it holds model/)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", metavar="PATH", help="an .npz/.npy file, a folder of images, or TFRecord shards")
    what.add_argument("--split", choices=["test", "val"], help="re-evaluate the run's own split")
    parser.add_argument("--key", help="the array of the .npz to predict (default: x, or the only array)")
    parser.add_argument("--labels", metavar="KEY", help="an array of the .npz with the inputs' class labels: "
                        "prints the accuracy")
    parser.add_argument("--output", metavar="OUT.csv", help="the predictions (required with --input)")
    parser.add_argument("--top-k", type=int, default=None, help=f"classes per row (default: 1; multilabel runs "
                        f"{DEFAULT_TOP_K})")
    parser.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default: the run's "
                        "evaluation batch, 4 × dataset.batch_size)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    args = parser.parse_args(argv)
    if args.input is not None and args.output is None:
        parser.error("--input needs --output OUT.csv")
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top-k {args.top_k}: must be >= 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: must be >= 1")
    if args.split and (args.key or args.labels):
        parser.error("--key and --labels go with --input, not --split")
    return args


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).expanduser().resolve()
    output = Path(args.output).expanduser().resolve() if args.output else None
    model = load_model(run_dir)
    card = model.card
    device = pick_device(args.device)
    top_k = min(args.top_k or (DEFAULT_TOP_K if card.multilabel else 1), card.num_classes)
    batch_size = args.batch_size or card.eval_batch_size
    with contextlib.ExitStack() as stack:
        if args.split:
            stack.enter_context(working_directory(launch_dir_of(card)))  # the run's relative data paths
            source = split_source(model, args.split, batch_size)
        else:
            source = input_source(args.input, args.key, args.labels, card, batch_size)
        out = stack.enter_context(atomic_output(output))
        handle = stack.enter_context(open(out, "w", newline="", encoding="utf-8")) if out else None
        values = predict(model, source, device, top_k, csv.writer(handle) if handle else None,
                         progress=not args.quiet, batch_size=batch_size)
    where = f"{args.split} split ({source.total} inputs)" if args.split else f"{args.input} ({source.total} inputs)"
    if values is not None:
        line = f"{where}: {format_metrics(values)}"
        if args.split:
            line += f"; {compare_with_results(run_dir, args.split, values)}"
        print(line)
    if output is not None:
        print(f"predictions: {output}")
    return 0


def with_one_line_errors(action) -> int:
    """``action()``'s exit status; an error a user can fix (``user_message``) is one line on stderr, status 2."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 — only ours and unwritable files become one line
        message = user_message(exc, disk_fix="nothing was written")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return with_one_line_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
