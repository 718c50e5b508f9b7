"""A user's own LightningDataModule as an in-memory dataset: ``dataset=custom dataset._target_=pkg.MyData``.

The protocol (README, "Your own data"): ``num_classes``; ``input_shape``, (C, H, W) for images or (F,) for
vectors; ``train_dataloader()`` and ``test_dataloader()``, optionally ``val_dataloader()``, each yielding
``(x, y)`` batches with integer labels 0..num_classes-1; optionally ``class_names``. ``prepare_data()`` and
``setup(stage)`` are called first where the module has them. No Lightning is imported here: any object with
these members will do.

``DataModuleSource`` reads each split once into tensors (``read_module``) and is from then on an
``InMemoryDataset`` like the built-in ones: ``load()``'s shared steps (validation split, per-class subset,
merge, normalisation) apply, and ``sdnn.data.module.InMemoryData`` serves the tensors. The splits are read
with the global random generators seeded by ``split_seed`` (a shuffling loader, random transforms: the same
tensors in every run), and the training split is then put in a canonical order, by label and then by a hash
of each input's bytes (``content_keys``), so that nothing downstream (the validation split, the per-class
subset, the partition, the batches) depends on the order the loader yields. The validation and test splits
keep the loader's order.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import operator
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sdnn.data.preprocess import Preprocessing
from sdnn.data.sources import InMemoryDataset
from sdnn.data.tensors import TensorSplits
from sdnn.errors import ConfigError, DataError
from sdnn.runlog import PlainProgress, clock, say, terminal

__all__ = ["DataModuleSource", "PROTOCOL", "check_module_class", "content_keys", "is_source", "read_module",
           "split_arguments"]

PROTOCOL = ("num_classes, input_shape, train_dataloader() and test_dataloader() (optionally val_dataloader()) "
            "yielding (x, y) batches (README: \"Your own data\")")
SPLITS = ("train", "val", "test")
_LIGHTNING = ("pytorch_lightning", "lightning")  # whose DataHooks define every hook only to raise or do nothing
QUIET_SECONDS = 3.0  # progress lines only for a pass that takes longer
_PRIME = 2_147_483_647  # 2^31 - 1: products of two residues fit in int64


def is_source(cls: Any) -> bool:
    """Whether a ``dataset._target_`` is one of SDNN's own dataset classes (its ``load()`` gives the data)."""
    from sdnn.data.yt8m import YT8MData

    return isinstance(cls, type) and issubclass(cls, (InMemoryDataset, YT8MData))


def provides(owner: Any, hook: str) -> bool:
    """Whether ``owner`` (a class or an instance) implements ``hook`` itself, not only Lightning's placeholder."""
    method = getattr(owner, hook, None)
    if not callable(method):
        return False
    module = getattr(getattr(method, "__func__", method), "__module__", None) or ""
    return module.split(".")[0] not in _LIGHTNING


def check_module_class(cls: Any, target: str) -> None:
    """A ``dataset._target_`` that is neither SDNN's nor a data module with the two loaders: one line, before it
    is built."""
    missing = [hook for hook in ("train_dataloader", "test_dataloader") if not provides(cls, hook)]
    if missing:
        raise ConfigError(f"dataset._target_={target} is not a data module SDNN can read: it has no {missing[0]}(); "
                          f"give a LightningDataModule with {PROTOCOL}")


def shared_keys() -> frozenset[str]:
    """The ``dataset`` keys that are SDNN's (``InMemoryDataset``'s arguments); ``seed`` is the run's, given by
    SDNN, so a ``dataset.seed`` is the user's own."""
    return frozenset(inspect.signature(InMemoryDataset.__init__).parameters) - {"self", "seed"}


def split_arguments(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``dataset=custom`` node's keys as (the user's class's own: ``_target_`` and every key SDNN does not
    share, SDNN's shared keys)."""
    shared = shared_keys()
    own = {key: value for key, value in arguments.items() if key not in shared}
    return own, {key: value for key, value in arguments.items() if key in shared}


class DataModuleSource(InMemoryDataset):
    """A user's data module (``module``, built from ``target`` with its own arguments) read into tensors, with
    the shared keys of every in-memory dataset (``InMemoryDataset``)."""

    def __init__(self, module: Any, target: str, progress: bool = True, **shared):
        super().__init__(**shared)
        self.module, self.target, self.progress = module, target, progress

    def read(self) -> TensorSplits:
        return read_module(self.module, self.target, self.split_seed, self.progress)


def read_module(module: Any, target: str, seed: int = 0, progress: bool = True) -> TensorSplits:
    """Every split of ``module`` as tensors, each batch checked against the protocol; the training split in its
    canonical order; ``fingerprint``: a hash of every split's content (the phase-1 cache's key)."""
    who = f"dataset._target_={target}"
    with seeded(seed):
        prepare(module)
        num_classes, input_shape = protocol_attributes(module, who)
        splits = {}
        for split in SPLITS:
            loader = loader_of(module, split, who)
            if loader is not None:
                splits[split] = read_loader(loader, f"{who}: {split}_dataloader()", num_classes, input_shape,
                                            progress)
    kinds = ", ".join(f"{split}: {x.dtype}" for split, (x, _) in splits.items())
    if len({x.dtype for x, _ in splits.values()}) > 1:
        raise DataError(f"{who}: the splits' inputs have different dtypes ({kinds}); give every split the same kind "
                        "(uint8 images, or floats)")
    keys = {split: content_keys(x) for split, (x, _) in splits.items()}
    x, y = splits["train"]
    order = canonical_order(y, keys["train"])
    splits["train"], keys["train"] = (x[order], y[order]), keys["train"][order]
    val = splits.get("val", (None, None))
    raw = replace(Preprocessing.of_tensor(splits["train"][0]), source=f"the x that {target}'s loaders yield")
    return TensorSplits(*splits["train"], *splits["test"], num_classes=num_classes, x_val=val[0], y_val=val[1],
                        class_names=class_names(module, num_classes, who), preprocessing=raw,
                        fingerprint=fingerprint(num_classes, splits, keys))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's, numpy's and Python's global generators seeded with ``seed``, and restored afterwards."""
    state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state[0])
            random.setstate(state[1])


def prepare(module: Any) -> None:
    """``prepare_data()``, then ``setup("fit")`` and ``setup("test")``, where the module has them (as a Trainer
    would call them for fitting and testing)."""
    if provides(module, "prepare_data"):
        module.prepare_data()
    if provides(module, "setup"):
        if inspect.signature(module.setup).parameters:
            module.setup("fit")
            module.setup("test")
        else:
            module.setup()


def protocol_attributes(module: Any, who: str) -> tuple[int, tuple[int, ...]]:
    """``num_classes`` and ``input_shape``, checked."""
    for name, what in (("num_classes", "the number of classes"), ("input_shape", "one input's shape")):
        if getattr(module, name, None) is None:
            raise ConfigError(f"{who} has no {name} ({what}); a data module SDNN reads has {PROTOCOL}")
    value = module.num_classes
    try:
        num_classes = operator.index(value)
    except TypeError:
        num_classes = None
    if num_classes is None or isinstance(value, bool) or num_classes < 2:
        raise DataError(f"{who}: num_classes={value!r} must be an integer >= 2 (labels are 0..num_classes-1)")
    value = module.input_shape
    try:
        shape = tuple(operator.index(v) for v in value)
    except TypeError:
        shape = ()
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise DataError(f"{who}: input_shape={value!r} must be (C, H, W) for images or (F,) for vectors, positive "
                        "integers (a gray image is (1, H, W))")
    return num_classes, shape


def loader_of(module: Any, split: str, who: str) -> Iterable | None:
    """The loader of ``split`` (None: no validation loader)."""
    hook = f"{split}_dataloader"
    if not provides(module, hook):
        if split == "val":
            return None
        raise ConfigError(f"{who} has no {hook}(); a data module SDNN reads has {PROTOCOL}")
    loader = getattr(module, hook)()
    if split == "val" and (loader is None or (isinstance(loader, (list, tuple)) and not loader)):
        return None
    if loader is None or isinstance(loader, (list, tuple, Mapping)) or not isinstance(loader, Iterable):
        raise DataError(f"{who}: {hook}() returned {describe(loader)}; return one DataLoader (an iterable of (x, y) "
                        "batches)")
    return loader


def read_loader(loader: Iterable, what: str, num_classes: int, input_shape: tuple[int, ...],
                progress: bool) -> tuple[Tensor, Tensor]:
    """One pass over ``loader``: its batches checked and concatenated (uint8 inputs stay uint8, others become
    float32; labels int64)."""
    try:
        total = len(loader)
    except TypeError:
        total = None
    xs, ys, start = [], [], time.perf_counter()
    for batch in counted(loader, what, total, progress):
        x, y = checked_batch(batch, what, num_classes, input_shape)
        if not xs:
            check_memory(x, total, what)
        xs.append(x)
        ys.append(y)
    n = sum(len(y) for y in ys)
    if n == 0:
        raise DataError(f"{what} yielded no samples; each split needs at least one (x, y) batch")
    kinds = {x.dtype for x in xs}
    if len(kinds) > 1:
        raise DataError(f"{what} yielded inputs of several dtypes ({', '.join(sorted(map(str, kinds)))}); give them "
                        "one dtype (uint8 images, or floats)")
    x, y = torch.cat(xs), torch.cat(ys)
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{what} yielded inputs with NaN or Inf values; clean or impute them first")
    say(f"data: {what}: {n:,} samples in {len(ys):,} batches ({clock(time.perf_counter() - start)})")
    return x, y


def counted(batches: Iterable, what: str, total: int | None, progress: bool) -> Iterator[Any]:
    """``batches`` with progress: a bar on a terminal, else a line at every tenth of ``total`` once the pass has
    taken a few seconds (a quick one prints only ``read_loader``'s summary line)."""
    if not progress:
        yield from batches
        return
    description = f"reading {what}"
    if terminal(sys.stderr):
        from tqdm import tqdm

        yield from tqdm(batches, desc=description, total=total, unit=" batches", mininterval=1.0, leave=False)
        return
    lines, pending, start = PlainProgress(say, description, total or 0, "batches"), 0, time.perf_counter()
    for batch in batches:
        yield batch
        pending += 1
        if time.perf_counter() - start >= QUIET_SECONDS:
            lines.advance(pending)
            pending = 0


def checked_batch(batch: Any, what: str, num_classes: int, input_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """One batch as (inputs, int64 labels), or a one-line ``DataError`` saying what breaks the protocol."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"{what} yielded {describe(batch)}; each batch must be a pair (x, y): the inputs and their "
                        "integer labels")
    x, y = tensor(batch[0], what, "x"), tensor(batch[1], what, "y")
    if y.dim() == 2 and y.shape[1] > 1:
        raise DataError(f"{what} yielded labels of shape {tuple(y.shape)} (one-hot or multi-hot); SDNN reads one "
                        "integer class per sample, y of shape (n,) (one-hot: y.argmax(1)); multilabel data is not "
                        "supported for your own data modules")
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{what} yielded labels of dtype {y.dtype} and shape {tuple(y.shape)}; labels must be "
                        f"integer class indices 0..{num_classes - 1} of shape (n,) (e.g. y.long())")
    if x.dim() == 0 or len(x) != len(y):
        raise DataError(f"{what} yielded {len(x) if x.dim() else 'no'} input row(s) but {len(y)} labels in one batch")
    if tuple(x.shape[1:]) != input_shape:
        raise DataError(f"{what} yielded inputs of shape {tuple(x.shape[1:])} (a batch of {tuple(x.shape)}), but "
                        f"input_shape is {input_shape}; make them agree")
    if x.is_complex():
        raise DataError(f"{what} yielded complex inputs; split them into real features first")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{what} yielded label {bad}, outside 0..{num_classes - 1} (num_classes={num_classes})")
    return (x if x.dtype == torch.uint8 else x.float()), y.long()


def tensor(value: Any, what: str, name: str) -> Tensor:
    """A batch's ``x`` or ``y`` as a CPU tensor (from a tensor, a numpy array or a list of numbers)."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{what} yielded a {name} of type {type(value).__name__}, which is not a tensor or an array "
                        "of numbers") from None


def describe(value: Any) -> str:
    """What a loader returned or yielded, in a few words, for messages."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {sorted(map(str, value))[:5]}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return "None" if value is None else f"a {type(value).__name__}"


def check_memory(first: Tensor, total: int | None, what: str) -> None:
    """A split that cannot fit in this machine's free memory (estimated from its first batch and the loader's
    number of batches, where it has one): one line now, not an out-of-memory kill later."""
    n, free = (total or 0) * len(first), available_memory()
    if not n or free is None:
        return
    needed = 2 * n * first[0].numel() * first.element_size()  # the batches, then the one tensor they become
    if needed > free:
        raise DataError(f"{what}: reading about {n:,} inputs of shape {tuple(first.shape[1:])} ({first.dtype}) needs "
                        f"about {mebibytes(needed)} but {mebibytes(free)} of memory is free; own data modules "
                        "are held in memory (README: \"Your own data\"): yield uint8 images rather than floats, or "
                        "fewer samples")


def mebibytes(size: int) -> str:
    """``size`` bytes as "1,234.5 MiB", for messages."""
    return f"{size / 2**20:,.1f} MiB"


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def content_keys(x: Tensor, chunk_bytes: int = 2**25) -> Tensor:
    """One int64 per sample from the bytes of its input: two seeded linear hashes modulo 2^31 − 1, combined. Exact
    integer arithmetic, so the same on every machine; distinct inputs share a key with probability about 2^-62."""
    flat = x.reshape(len(x), -1).contiguous()
    words = flat.view(torch.int32) if flat.dtype == torch.float32 else flat
    weights = torch.randint(1, _PRIME, (words.shape[1], 2), generator=torch.Generator().manual_seed(0),
                            dtype=torch.int64)
    keys = torch.empty(len(x), dtype=torch.int64)
    rows = max(1, chunk_bytes // (8 * max(words.shape[1], 1)))
    for start in range(0, len(x), rows):
        residues = words[start:start + rows].long().remainder(_PRIME)
        hashes = (residues.unsqueeze(2) * weights).remainder(_PRIME).sum(1).remainder(_PRIME)  # (rows, 2)
        keys[start:start + rows] = hashes[:, 0] * _PRIME + hashes[:, 1]
    return keys


def canonical_order(y: Tensor, keys: Tensor) -> Tensor:
    """The permutation that sorts samples by label, then by content key."""
    order = torch.argsort(keys, stable=True)
    return order[torch.argsort(y[order], stable=True)]


def fingerprint(num_classes: int, splits: Mapping[str, tuple[Tensor, Tensor]], keys: Mapping[str, Tensor]) -> str:
    """A hash of every split's content (labels and content keys, in order), shapes and dtype."""
    digest = hashlib.sha256(f"{num_classes}".encode())
    for split in SPLITS:
        if split in splits:
            x, y = splits[split]
            digest.update(f"{split}:{tuple(x.shape)}:{x.dtype}".encode())
            digest.update(y.numpy().tobytes())
            digest.update(keys[split].numpy().tobytes())
    return digest.hexdigest()[:16]


def class_names(module: Any, num_classes: int, who: str) -> list[str]:
    """The module's optional ``class_names`` (one per class), or none."""
    names = getattr(module, "class_names", None)
    if names is None:
        return []
    names = [str(name) for name in names]
    if len(names) != num_classes:
        raise DataError(f"{who}: class_names has {len(names)} names but num_classes is {num_classes}; give one "
                        "name per class, or none")
    return names
