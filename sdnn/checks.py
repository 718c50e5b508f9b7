"""The checks of built parts against each other and against the data, over typed settings (never a
configuration): ``sdnn.build`` runs them after the data is loaded and before Lightning is imported, so that
a configuration that cannot work with this data fails in seconds with one line."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from sdnn.config import Method, Settings, TrainerSettings
from sdnn.config.names import closest
from sdnn.config.wording import shown
from sdnn.data.tensors import TensorSplits
from sdnn.data.yt8m import YT8MData
from sdnn.errors import ConfigError, DataError, listed
from sdnn.losses import SigmoidCrossEntropy, has_subclass_form

CONF = Path(__file__).resolve().parents[1] / "conf"


def subclass_losses() -> list[str]:
    """The ``loss`` options (conf/loss/*.yaml, the registry) that have a subclass form."""
    from hydra.utils import get_class

    options = {path.stem: yaml.safe_load(path.read_text())["_target_"] for path in sorted(CONF.glob("loss/*.yaml"))}
    return [name for name, target in options.items() if has_subclass_form(get_class(target))]


def check_loss(settings: Settings, loss: Any) -> None:
    """Every method other than baseline needs the loss's subclass form (``for_subclasses``), so a loss without
    one (focal, poly1, ...) is an error naming the fix; reweight and class2str need eq. 3 itself."""
    method, name = settings.method, settings.loss_name
    if method == Method.auto and not (hasattr(loss, "reweighted") and has_subclass_form(loss)):
        raise ConfigError(f"method=auto trains the baseline, reweight and SDNN with eq. 3 / eq. 11 (the sigmoid CE): "
                          f"use loss=bce, not loss={name}")
    if method == Method.reweight and not hasattr(loss, "reweighted"):
        raise ConfigError(f"method=reweight weights the positive term of eq. 3 (the sigmoid CE): use loss=bce, "
                          f"not loss={name}")
    if method == Method.class2str and not isinstance(loss, SigmoidCrossEntropy):
        raise ConfigError(f"method=class2str trains stage 1 with eq. 3 (the phase 1 SDNN shares) and stage 2 with "
                          f"the Class2Str loss (class2str.w_*): use loss=bce, not loss={name}")
    if method != Method.baseline and not has_subclass_form(loss):
        usable = "|".join(subclass_losses())
        raise ConfigError(f"loss={name} is a baseline loss: it has no subclass form (for_subclasses), which "
                          f"method={method} needs, as every method but baseline does (SDNN: phase 1 is eq. 3 "
                          f"on sigmoid outputs, phase 2 the loss's subclass form, eq. 11); use method=baseline "
                          f"loss={name}, or loss={usable} with method={method}")


def check_devices(trainer: TrainerSettings) -> None:
    """``trainer.accelerator`` and ``trainer.devices`` against the devices this machine has, and more than one
    device only with a DDP strategy (Lightning would refuse the first only when the first Trainer is built, after
    the data is read, and start the processes of the second without being asked)."""
    accelerator, devices = trainer.accelerator.lower(), trainer.devices
    wanted = str(devices).strip() if isinstance(devices, (int, str)) else list(devices)
    if isinstance(wanted, str) and "," in wanted:
        wanted = [int(p) for p in wanted.split(",") if p.strip()]
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
        raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible here{build}; use "
                          "trainer.accelerator=cpu (or auto: a GPU where there is one), or run on a GPU machine")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps but the Apple-silicon GPU (MPS) is not available here; use "
                          "trainer.accelerator=cpu or auto")
    if gpu:
        count = torch.cuda.device_count()
        too_many = (max(wanted) >= count if isinstance(wanted, list) else
                    wanted not in ("auto", "-1") and int(wanted) > count)  # validate_config checked the form
        if too_many:
            raise ConfigError(f"trainer.devices={devices} but {count} GPU(s) are visible here (indices "
                              f"0..{count - 1}); choose fewer, or -1 for every GPU")
        processes = len(wanted) if isinstance(wanted, list) else count if wanted in ("auto", "-1") else int(wanted)
    elif accelerator in ("cpu", "auto"):
        cores = cpu_cores()
        if isinstance(wanted, list):
            raise ConfigError(f"trainer.devices={shown(devices)} lists GPU indices, but this run is on the CPU, where "
                              "trainer.devices is a number of processes (e.g. trainer=ddp_cpu trainer.devices=2)")
        processes = 1 if wanted == "auto" else cores if wanted == "-1" else int(wanted)
        if processes > cores:
            raise ConfigError(f"trainer.devices={devices} but this machine has {cores} CPU core(s) for this "
                              f"process, and on the CPU each device is a training process: choose "
                              f"trainer.devices=1..{cores}")
    else:
        processes = 1
    strategy = trainer.arguments.get("strategy")
    if processes > 1 and (strategy is None or str(strategy).lower() == "auto"):
        option = "ddp" if gpu else "ddp_cpu"
        raise ConfigError(f"trainer.devices={devices} starts {processes} training processes, which needs a DDP "
                          f"strategy: use trainer={option} trainer.devices={devices} (conf/trainer/{option}.yaml), "
                          "or trainer.devices=1")


def check_trainer_arguments(trainer_class: type, trainer: TrainerSettings) -> None:
    """Every other key of the ``trainer`` group (``+trainer.gradient_clip_val=1``) is an argument of its class: a
    misspelled one would be a TypeError with a traceback when the first phase starts."""
    parameters = inspect.signature(trainer_class).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(trainer.arguments) - set(parameters))
    if unknown:
        near = closest(unknown[0], list(parameters))
        fix = f"did you mean trainer.{near}?" if near else f"its arguments: {', '.join(parameters)}"
        raise ConfigError(f"trainer.{unknown[0]} is not an argument of {trainer.target}; {fix}")


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_classes(settings: Settings, data: TensorSplits) -> None:
    """In-memory data: at least two classes, every class with a training sample after the validation split and the
    per-class subset, and (SDNN) every class that may be selected large enough for ``subclass.per_class``."""
    c, sub = data.num_classes, settings.subclass
    counts = torch.bincount(data.y_train, minlength=c)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        fraction = settings.dataset.val_fraction
        cause = f"dataset.val_fraction={fraction} holds out so much of train that" if fraction else "in the data,"
        fix = "lower dataset.val_fraction (e.g. 0.1)" if fraction else "every class needs training samples"
        raise ConfigError(f"{cause} class(es) {listed(empty)} have no training sample left ({len(data.y_train)} "
                          f"training samples in all); {fix}")
    if settings.method not in (Method.sdnn, Method.auto) or getattr(data, "streamed", False):
        return
    candidates = sub.classes if sub.classes is not None else range(c)  # eq. 10 may select any class
    smallest = min(candidates, key=lambda k: (int(counts[k]), k))
    n = int(counts[smallest])
    if n < sub.per_class:
        subset = settings.dataset.train_per_class
        fixes = [f"raise dataset.train_per_class (now {subset}) to at least {sub.per_class}"] if subset else []
        fixes += [f"lower subclass.per_class to {n}"] if n >= 2 else []
        fixes.append("fix subclass.classes to larger classes")
        which = "is one of subclass.classes" if sub.classes is not None else "may be selected (any class can be)"
        raise ConfigError(f"subclass.per_class={sub.per_class} but class {smallest} has {n} training sample(s) and "
                          f"{which}, so it cannot be split into {sub.per_class} subclasses; {', or '.join(fixes)}")


def check_against_data(settings: Settings, data: TensorSplits | YT8MData, loss: Any, partitioner: Any,
                       augmenter: Any) -> None:
    """What needs the data: class indices and counts, what streamed or multilabel data allows.
    ``augmenter``: the one resolved for this data."""
    name, online = settings.dataset.name, getattr(data, "streamed", False)
    c, sub = data.num_classes, settings.subclass
    if c < 2:
        raise DataError(f"dataset '{name}' has {c} class: a classifier needs at least 2 classes (labels 0..c-1)")
    if settings.method == Method.auto and getattr(data, "x_val", None) is None:
        raise ConfigError(f"method=auto chooses on a validation split, and dataset '{name}' has none; add "
                          "dataset.val_fraction=0.2 (the test split is never used to choose)")
    if settings.method == Method.auto and sub.classes is not None:
        raise ConfigError(f"method=auto chooses how many classes to split (auto.candidates: sdnn-k<k>); leave "
                          f"subclass.classes={sub.classes} out, or use method=sdnn with it")
    if settings.method in (Method.sdnn, Method.reweight):
        if sub.classes is not None:
            unknown = [k for k in sub.classes if not 0 <= k < c]
            if unknown:
                raise ConfigError(f"subclass.classes: {listed(unknown)} not in dataset '{name}' (classes 0..{c - 1})")
        elif sub.num_classes_to_repartition >= c:
            raise ConfigError(f"subclass.num_classes_to_repartition={sub.num_classes_to_repartition} but dataset "
                              f"'{name}' has {c} classes; choose 1..{c - 1}")
    if settings.method in (Method.sdnn, Method.auto):
        if online and not partitioner.online:
            raise ConfigError(f"partitioner={partitioner.name} needs each class in memory; for "
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
        check_classes(settings, data)
    if getattr(data, "multilabel", False) and not getattr(loss, "multilabel", False):
        raise ConfigError(f"loss={settings.loss_name} takes one class per sample, but dataset {name} is multilabel; "
                          "use loss=bce (eq. 3 / eq. 11)")


def check_backbone(backbone: torch.nn.Module, target: str) -> None:
    """The backbone, built on the meta device for ``input_shape``, says how wide its features are."""
    if not isinstance(getattr(backbone, "out_features", None), int):
        raise ConfigError(f"model.backbone._target_={target}: the backbone has no integer out_features "
                          "attribute (the width of the features its forward returns)")


def check_backbone_class(cls: type, settings: Settings, input_shape: tuple[int, ...]) -> None:
    """A backbone class for images only is not given feature vectors."""
    if getattr(cls, "needs_images", False) and len(input_shape) != 3:
        raise ConfigError(f"model={settings.model_name} needs images, but dataset '{settings.dataset.name}' has "
                          f"feature vectors of shape {input_shape}; use model=mlp, model=lr or model=cnn1d")
