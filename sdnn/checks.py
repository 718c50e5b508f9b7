"""The checks that need the data, run after it is loaded and before Lightning is imported (run.py),
so that a configuration that cannot work with this data fails in seconds with one line."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sdnn.config import Method, Settings, instantiate_part, validate_config
from sdnn.data.tensors import TensorSplits
from sdnn.data.yt8m import YT8MData
from sdnn.errors import ConfigError, DataError, listed
from sdnn.losses import LOSSES, SigmoidCrossEntropy, has_subclass_form


@dataclass
class Checked:
    """A configuration checked against its data: the typed settings, the dataset's class and its data,
    and the parts that depend on the data (the loss, the augmenter for it, the backbone factory)."""

    settings: Settings
    source: Any
    loaded: TensorSplits | YT8MData
    loss: Any
    augmenter: Any
    backbone: Callable[..., Any]


def prepare(cfg: DictConfig, run_dir: str | Path, settings: Settings | None = None) -> Checked:
    """``validate_config`` (unless ``settings`` are given), ``check_loss``, the data read, and
    ``check_against_data``."""
    settings = settings or validate_config(cfg)
    loss = check_loss(cfg, settings)  # needs the class (torch) but not the data: fails before it is read
    check_devices(cfg.trainer)
    source, loaded = load_data(cfg, run_dir)
    return Checked(settings, source, loaded, *check_against_data(cfg, settings, loaded, loss))


def load_data(cfg: DictConfig, run_dir: str | Path):
    """The ``dataset`` group's class, and its data read (before Lightning is imported, by run.py)."""
    source = instantiate_part("dataset", cfg.dataset, keep_name=True, seed=cfg.seed)
    return source, source.load(run_dir)


def instantiate_class(target: str) -> type:
    """The class a ``_target_`` names; a one-line error if it cannot be imported."""
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception as exc:  # noqa: BLE001 — any import failure is the user's target
        cause = exc.__cause__ or exc
        raise ConfigError(f"model.backbone._target_={target}: cannot import it ({type(cause).__name__}: {cause}); "
                          "is its package on PYTHONPATH?") from None


def check_loss(cfg: DictConfig, settings: Settings):
    """The ``loss`` group's instance; every method other than baseline needs its subclass form
    (``for_subclasses``), so a loss without one (focal, poly1, ...) is an error naming the fix."""
    loss = instantiate_part("loss", cfg.loss)
    if settings.method == Method.reweight and not hasattr(loss, "reweighted"):
        raise ConfigError(f"method=reweight weights the positive term of eq. 3 (the sigmoid CE): use loss=bce, "
                          f"not loss={cfg.loss.name}")
    if settings.method == Method.class2str and not isinstance(loss, SigmoidCrossEntropy):
        raise ConfigError(f"method=class2str trains stage 1 with eq. 3 (the phase 1 SDNN shares) and stage 2 with "
                          f"the Class2Str loss (class2str.w_*): use loss=bce, not loss={cfg.loss.name}")
    if settings.method != Method.baseline and not has_subclass_form(loss):
        usable = "|".join(name for name, cls in LOSSES.items() if has_subclass_form(cls))
        raise ConfigError(f"loss={cfg.loss.name} is a baseline loss: it has no subclass form (for_subclasses), which "
                          f"method={settings.method} needs, as every method but baseline does (SDNN: phase 1 is eq. 3 "
                          f"on sigmoid outputs, phase 2 the loss's subclass form, eq. 11); use method=baseline "
                          f"loss={cfg.loss.name}, or loss={usable} with method={settings.method}")
    return loss


def check_devices(trainer: DictConfig) -> None:
    """``trainer.accelerator`` and ``trainer.devices`` against the devices this machine has (Lightning would
    refuse them only when the first Trainer is built, after the data is read)."""
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    devices = trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible here{build}; use "
                              "trainer.accelerator=cpu (or auto: a GPU where there is one), or run on a GPU machine")
        count = torch.cuda.device_count()
        wanted = str(devices).strip() if isinstance(devices, (int, str)) else list(devices)
        if isinstance(wanted, str) and "," in wanted:
            wanted = [int(p) for p in wanted.split(",") if p.strip()]
        too_many = (max(wanted) >= count if isinstance(wanted, list) else
                    wanted not in ("auto", "-1") and int(wanted) > count)  # validate_config checked the form
        if too_many:
            raise ConfigError(f"trainer.devices={devices} but {count} GPU(s) are visible here (indices "
                              f"0..{count - 1}); choose fewer, or -1 for every GPU")
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps but the Apple-silicon GPU (MPS) is not available here; use "
                          "trainer.accelerator=cpu or auto")


def check_classes(cfg: DictConfig, settings: Settings, data: TensorSplits) -> None:
    """In-memory data: at least two classes, every class with a training sample after the validation split and the
    per-class subset, and (SDNN) every class that may be selected large enough for ``subclass.per_class``."""
    c, sub = data.num_classes, settings.subclass
    counts = torch.bincount(data.y_train, minlength=c)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        fraction = cfg.dataset.get("val_fraction")
        cause = f"dataset.val_fraction={fraction} holds out so much of train that" if fraction else "in the data,"
        fix = "lower dataset.val_fraction (e.g. 0.1)" if fraction else "every class needs training samples"
        raise ConfigError(f"{cause} class(es) {listed(empty)} have no training sample left ({len(data.y_train)} "
                          f"training samples in all); {fix}")
    if settings.method != Method.sdnn or getattr(data, "streamed", False):
        return
    candidates = sub.classes if sub.classes is not None else range(c)  # eq. 10 may select any class
    smallest = min(candidates, key=lambda k: (int(counts[k]), k))
    n = int(counts[smallest])
    if n < sub.per_class:
        subset = cfg.dataset.get("train_per_class")
        fixes = [f"raise dataset.train_per_class (now {subset}) to at least {sub.per_class}"] if subset else []
        fixes += [f"lower subclass.per_class to {n}"] if n >= 2 else []
        fixes.append("fix subclass.classes to larger classes")
        which = "is one of subclass.classes" if sub.classes is not None else "may be selected (any class can be)"
        raise ConfigError(f"subclass.per_class={sub.per_class} but class {smallest} has {n} training sample(s) and "
                          f"{which}, so it cannot be split into {sub.per_class} subclasses; {', or '.join(fixes)}")


def check_against_data(cfg: DictConfig, settings: Settings, data: TensorSplits | YT8MData, loss: Any = None):
    """What needs the data: class indices and counts, what streamed or multilabel data allows, the
    backbone against the input shape (built on the meta device: no memory, no compute). Returns the
    loss (``loss``, or :func:`check_loss`'s), the augmenter for this data and the backbone factory
    (``input_shape`` → module)."""
    loss = loss if loss is not None else check_loss(cfg, settings)
    augmenter = settings.augmenter.resolve(data.is_image)
    name, online = cfg.dataset.name, getattr(data, "streamed", False)
    c, sub = data.num_classes, settings.subclass
    if c < 2:
        raise DataError(f"dataset '{name}' has {c} class: a classifier needs at least 2 classes (labels 0..c-1)")
    if settings.method in (Method.sdnn, Method.reweight):
        if sub.classes is not None:
            unknown = [k for k in sub.classes if not 0 <= k < c]
            if unknown:
                raise ConfigError(f"subclass.classes: {listed(unknown)} not in dataset '{name}' (classes 0..{c - 1})")
        elif sub.num_classes_to_repartition >= c:
            raise ConfigError(f"subclass.num_classes_to_repartition={sub.num_classes_to_repartition} but dataset "
                              f"'{name}' has {c} classes; choose 1..{c - 1}")
    if settings.method == Method.sdnn:
        if online and not settings.partitioner.online:
            raise ConfigError(f"partitioner={settings.partitioner.name} needs each class in memory; for "
                              f"dataset={name} use partitioner=median_split (Algorithm 1, on-line over the "
                              "shards) or random")
        if online and not augmenter.online:
            raise ConfigError(f"augmenter={augmenter.name} is for images; for dataset={name} use "
                              "augmenter=extrapolation (eq. 12) or none")
    if settings.method == Method.class2str:
        if online or getattr(data, "multilabel", False):
            raise ConfigError(f"method=class2str gives each class one string: it needs multiclass data held in "
                              f"memory, and dataset {name} is {'streamed' if online else 'multilabel'}")
        settings.class2str.code_length_for(c)
    if isinstance(data, TensorSplits):
        check_classes(cfg, settings, data)
    if getattr(data, "multilabel", False) and not getattr(loss, "multilabel", False):
        raise ConfigError(f"loss={cfg.loss.name} takes one class per sample, but dataset {name} is multilabel; "
                          "use loss=bce (eq. 3 / eq. 11)")
    return loss, augmenter, check_backbone(cfg.model, name, tuple(data.input_shape))


def check_backbone(model: DictConfig, dataset: str, input_shape: tuple[int, ...]) -> Callable[..., Any]:
    """``model.backbone``'s class takes these arguments and builds for ``input_shape``; returns its factory."""
    name, node = model.name, model.backbone
    cls = instantiate_class(node._target_)
    if getattr(cls, "needs_images", False) and len(input_shape) != 3:
        raise ConfigError(f"model={name} needs images, but dataset '{dataset}' has feature vectors of shape "
                          f"{input_shape}; use model=mlp, model=lr or model=cnn1d")
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        allowed = set(parameters) - {"input_shape"}
        unknown = sorted(k for k in node if not k.startswith("_") and k not in allowed)
        if unknown:
            raise ConfigError(f"model.backbone.{unknown[0]} is not an option of model={name}; its options: "
                              f"{', '.join(sorted(allowed)) or 'none'}")
    build = instantiate_part("model.backbone", node, keep_name=True, _partial_=True)
    try:
        with torch.device("meta"):
            backbone = build(input_shape=input_shape)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith("model") else f"model={name}: {text}") from None
    if not isinstance(getattr(backbone, "out_features", None), int):
        raise ConfigError(f"model.backbone._target_={node._target_}: the backbone has no integer out_features "
                          "attribute (the width of the features its forward returns)")
    return build
