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

A run folder may come from anyone: its card is data (``sdnn.artifact``, ``sdnn.targets``): its
``_target_``s are allow-listed before anything is imported (sdnn and torch.nn; ``--trust PACKAGE`` for
your own backbone or dataset), never interpolated, and its sizes bounded by its weights. Only the
arrays used are read from an ``.npz``; an image over ``--max-image-mb`` is not read. ``--output -``
writes the CSV to standard output; an existing ``--output`` must be a regular file (a FIFO or device
is refused). CSV cells that a spreadsheet would take for a formula (``= + - @``) get a leading ``'``.

Every error a user can fix is one line on stderr with exit status 2, and nothing is written then
(the CSV is written to a temporary file and renamed, or copied to standard output, at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import torch

from sdnn.artifact import launch_dir_of, load_model
from sdnn.data.image_folder import MAX_IMAGE_MB
from sdnn.errors import DataError, OneLineParser, user_message
from sdnn.predict.features import write_features
from sdnn.predict.infer import CsvWriter, compare_with_results, format_metrics, predict
from sdnn.predict.sources import input_source, split_dataset, split_source, working_directory
from sdnn.runlog import PlainProgress

DEFAULT_TOP_K = 20  # multilabel runs


# ----------------------------------------------------------------------------- command line plumbing

def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False); "
                        "use --device cpu or auto")
    return torch.device(name)


STDOUT = "-"


def output_path(text: str | None, what: str = "--output") -> Path | None:
    """``--output`` as given: None (no file), ``-`` (standard output) or a path; a path that exists must be a
    regular file (it is replaced): a folder, FIFO, device or socket is a one-line error, never replaced."""
    if text is None or text == STDOUT:
        return None if text is None else Path(STDOUT)
    path = Path(text).expanduser().absolute()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot write it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{what} {path}: is a folder; give a file name")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{what} {path}: exists and is not a regular file (a FIFO, device or socket), so it is not "
                        f"replaced; give a file name, or {STDOUT} for standard output")
    return path


@contextlib.contextmanager
def atomic_output(path: Path | None, what: str = "--output"):
    """A temporary file beside ``path`` (created now, so an unwritable place fails before any work),
    renamed to ``path`` when the block succeeds and removed when it fails. ``None``: no file; ``-``: the
    temporary file is copied to standard output at the end (nothing is written there on an error)."""
    if path is None:
        yield None
        return
    to_stdout = str(path) == STDOUT
    if not to_stdout:
        path = output_path(str(path), what)
        if not path.parent.is_dir():
            raise DataError(f"{what} {path}: cannot write it (folder {path.parent} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(dir=None if to_stdout else path.parent,
                                   prefix=".sdnn-output." if to_stdout else f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot write it ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        if to_stdout:
            sys.stdout.flush()
            with open(tmp, "rb") as handle:
                shutil.copyfileobj(handle, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            os.unlink(tmp)
            return
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



# ----------------------------------------------------------------------------- entry point

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m sdnn.predict", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (it holds model/)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", metavar="PATH", help="an .npz/.npy file, a folder of images, or TFRecord shards")
    what.add_argument("--split", choices=["test", "val"], help="re-evaluate the run's own split")
    what.add_argument("--features", metavar="OUT.npz", help="write the backbone's features of the run's own "
                      "validation split (as x_train) and test split (as x_test) for dataset=npz: a shallow head on "
                      "frozen features")
    parser.add_argument("--key", help="the array of the .npz to predict (default: x, or the only array)")
    parser.add_argument("--labels", metavar="KEY", help="an array of the .npz with the inputs' class labels: "
                        "prints the accuracy")
    parser.add_argument("--output", metavar="OUT.csv", help="the predictions (required with --input); - for "
                        "standard output")
    parser.add_argument("--top-k", type=int, default=None, help=f"classes per row (default: 1; multilabel runs "
                        f"{DEFAULT_TOP_K})")
    parser.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default: the run's "
                        "evaluation batch, 4 × dataset.batch_size)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    parser.add_argument("--max-image-mb", type=float, default=MAX_IMAGE_MB, help="an image file larger than this "
                        f"is an error before it is read (default {MAX_IMAGE_MB:g}, as dataset.max_image_mb)")
    add_trust(parser)
    args = parser.parse_args(argv)
    if args.input is not None and args.output is None:
        parser.error("--input needs --output OUT.csv")
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top-k {args.top_k}: must be >= 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: must be >= 1")
    if args.split and (args.key or args.labels):
        parser.error("--key and --labels go with --input, not --split")
    if not args.max_image_mb > 0:
        parser.error(f"--max-image-mb {args.max_image_mb:g}: must be > 0")
    return args


def add_trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust", metavar="PACKAGE", action="append", default=[],
                        help="a package (installed or on PYTHONPATH) whose classes the run's model card may name "
                             "besides sdnn and torch.nn: your own backbone or dataset; only for run folders you "
                             "trust (repeatable)")


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).expanduser().absolute()
    output = output_path(args.output)  # a FIFO or device is refused before any work
    model = load_model(run_dir, args.trust)
    card = model.card
    device = pick_device(args.device)
    top_k = min(args.top_k or (DEFAULT_TOP_K if card.multilabel else 1), card.num_classes)
    batch_size = args.batch_size or card.eval_batch_size
    if args.features:
        out = output_path(args.features, "--features")
        if out is None or str(out) == STDOUT:
            parser_error = "--features writes an .npz file; give its name, not -"
            raise DataError(parser_error)
        with working_directory(launch_dir_of(card)):  # the run's relative data paths
            rows = write_features(model, out, batch_size, device, args.trust)
        print(f"features of the run's splits ({', '.join(f'{k} {v}' for k, v in rows.items())} rows, "
              f"{card.model} backbone): {out}")
        return 0
    with contextlib.ExitStack() as stack:
        if args.split:
            dataset = split_dataset(model, args.trust)  # its targets checked before anything runs
            stack.enter_context(working_directory(launch_dir_of(card)))  # the run's relative data paths
            source = split_source(model, args.split, batch_size, dataset, args.trust)
        else:
            source = input_source(args.input, args.key, args.labels, card, batch_size, args.max_image_mb)
        out = stack.enter_context(atomic_output(output))
        handle = stack.enter_context(open(out, "w", newline="", encoding="utf-8")) if out else None
        batches = math.ceil(source.total / batch_size) if source.total else 10
        bar = stack.enter_context(Progress(source.total, source.description, "inputs", not args.quiet, batches))
        values = predict(model, source, device, top_k, CsvWriter(handle) if handle else None, advance=bar.advance)
    where = f"{args.split} split ({source.total} inputs)" if args.split else f"{args.input} ({source.total} inputs)"
    said = sys.stderr if str(output) == STDOUT else sys.stdout  # standard output holds the CSV
    if values is not None:
        line = f"{where}: {format_metrics(values)}"
        if args.split:
            line += f"; {compare_with_results(run_dir, args.split, values)}"
        print(line, file=said)
    if output is not None and str(output) != STDOUT:
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

