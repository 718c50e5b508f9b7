"""Checks of the composed config, before any data is read or any training starts.

Each error names the key, the value and the fix (SPEC; issue: bad input fails in seconds).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sdnn.choices import AUGMENTERS, BACKBONE_NAMES, IMAGE_BACKBONES, LOSSES, METHODS, PARTITIONERS, SPACES
from sdnn.errors import ConfigError

if TYPE_CHECKING:
    from sdnn.data.tensors import TensorSplits


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not an option; choose one of: {', '.join(allowed)}")


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Everything that can be checked without the data."""
    _choice("method", cfg["method"], METHODS)
    if not _is_int(cfg["seed"]):
        raise ConfigError(f"seed={cfg['seed']!r} must be an integer")
    _choice("loss (loss.name)", cfg["loss"]["name"], LOSSES)
    _choice("model (model.name)", cfg["model"]["name"], BACKBONE_NAMES)
    _choice("partitioner (partitioner.name)", cfg["partitioner"]["name"], PARTITIONERS)
    _choice("partitioner.space", cfg["partitioner"]["space"], SPACES)
    _choice("augmenter (augmenter.name)", cfg["augmenter"]["name"], ("auto", *AUGMENTERS))
    lam = cfg["augmenter"].get("lam", 0.5)
    if not _is_number(lam) or not 0 <= lam <= 1:
        raise ConfigError(f"augmenter.lam={lam!r} must be a number in [0, 1] (the paper uses 0.5)")
    max_epochs = cfg["trainer"].get("max_epochs")
    if not _is_int(max_epochs) or max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs={max_epochs!r} must be an integer >= 1")
    batch_size = cfg["dataset"].get("batch_size")
    if not _is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"dataset.batch_size={batch_size!r} must be an integer >= 1")
    fraction = cfg["dataset"].get("val_fraction", 0.0) or 0.0
    if not _is_number(fraction) or not 0 <= fraction < 1:
        raise ConfigError(f"dataset.val_fraction={fraction!r} must be in [0, 1): the share of train held out "
                          "for validation (e.g. 0.1)")
    per_class = cfg["dataset"].get("train_per_class")
    if per_class is not None and (not _is_int(per_class) or per_class < 1):
        raise ConfigError(f"dataset.train_per_class={per_class!r} must be null (all) or an integer >= 1: the "
                          "training samples kept per class (a seeded subset, for quick runs)")
    for key, value in (cfg["dataset"].get("augment") or {}).items():
        if key not in ("crop_padding", "flip", "cutout"):
            raise ConfigError(f"dataset.augment.{key} is not an option; choose crop_padding, flip or cutout")
        if key != "flip" and (not _is_int(value) or value < 0):
            raise ConfigError(f"dataset.augment.{key}={value!r} must be an integer >= 0 (0 turns it off)")
    checkpoint = cfg.get("checkpoint") or {}
    every = checkpoint.get("every_n_epochs", 1)
    if not _is_int(every) or every < 0:
        raise ConfigError(f"checkpoint.every_n_epochs={every!r} must be an integer >= 0 (0 = no checkpoints)")
    if str(checkpoint.get("resume", True)).lower() not in ("true", "false", "force"):
        raise ConfigError(f"checkpoint.resume={checkpoint.get('resume')!r}: choose true (continue a killed run "
                          "in the same hydra.run.dir), false (start over) or force (continue even if the "
                          "configuration changed)")
    lr = cfg["optim"].get("lr")
    if not _is_number(lr) or lr <= 0:
        raise ConfigError(f"optim.lr={lr!r} must be a positive number")
    if cfg["dataset"]["name"] == "yt8m":
        _validate_yt8m(cfg)
    phase1, sub = cfg["phase1"], cfg["subclass"]
    if not _is_number(phase1["epochs"]) or phase1["epochs"] <= 0:
        raise ConfigError(f"phase1.epochs={phase1['epochs']!r} must be a positive number (fractions allowed, e.g. 0.333)")
    tau = phase1.get("tau")
    if tau is not None and (not _is_int(tau) or tau < 1):
        raise ConfigError(f"phase1.tau={tau!r} must be an integer number of steps >= 1, or null for one epoch")
    if not _is_int(sub["per_class"]) or sub["per_class"] < 2:
        raise ConfigError(f"subclass.per_class={sub['per_class']!r} must be an integer >= 2 (subclasses per selected class)")
    w = sub["sibling_weight"]
    if not _is_number(w) or not 0 <= w <= 1:
        raise ConfigError(f"subclass.sibling_weight={w!r} must be in [0, 1] (1 = eq. 11, 0 = plain BCE over subclasses)")
    classes = sub.get("classes")
    if classes is not None:
        classes = list(classes)
        if not classes or not all(_is_int(c) for c in classes):
            raise ConfigError(f"subclass.classes={classes!r} must be a non-empty list of class indices, e.g. [3,5]")
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise ConfigError(f"subclass.classes lists class(es) {repeated} more than once")
    else:
        k = sub["num_classes_to_repartition"]
        if not _is_int(k) or k < 1:
            raise ConfigError(f"subclass.num_classes_to_repartition={k!r} must be an integer >= 1")


def _validate_yt8m(cfg: Mapping[str, Any]) -> None:
    """dataset=yt8m: streamed multilabel data (sdnn/data/yt8m.py)."""
    ds = cfg["dataset"]
    for key in ("train", "validate"):
        if not ds.get(key):
            raise ConfigError(f"dataset.{key} is not set: give a glob of the {key}*.tfrecord shards, e.g. "
                              f"dataset.{key}='/data/yt8m/video/{key}*.tfrecord' (README, YouTube-8M)")
    _choice("dataset.features", ds.get("features"), ("rgb", "rgb_audio"))
    _choice("dataset.on_corrupt", ds.get("on_corrupt", "error"), ("error", "skip"))
    for key in ("max_videos", "max_eval_videos"):
        value = ds.get(key)
        if value is not None and (not _is_int(value) or value < 1):
            raise ConfigError(f"dataset.{key}={value!r} must be null (all videos) or an integer >= 1")
    for key in ("shuffle_buffer", "num_workers"):
        value = ds.get(key, 0)
        if not _is_int(value) or value < 0:
            raise ConfigError(f"dataset.{key}={value!r} must be an integer >= 0")
    if not _is_int(ds.get("num_classes")) or ds["num_classes"] < 2:
        raise ConfigError(f"dataset.num_classes={ds.get('num_classes')!r} must be an integer >= 2 (YouTube-8M: 3862)")
    if cfg["loss"]["name"] != "bce":
        raise ConfigError(f"loss={cfg['loss']['name']}: YouTube-8M is multilabel; use loss=bce (eq. 3 / eq. 11)")
    if cfg["method"] == "sdnn":
        if cfg["partitioner"]["name"] not in ("median_split", "random"):
            raise ConfigError(f"partitioner={cfg['partitioner']['name']} needs each class in memory; for dataset=yt8m "
                              "use partitioner=median_split (Algorithm 1, on-line over the shards) or random")
        if cfg["augmenter"]["name"] not in ("auto", "extrapolation", "none"):
            raise ConfigError(f"augmenter={cfg['augmenter']['name']} is for images; for dataset=yt8m use "
                              "augmenter=extrapolation (eq. 12) or none")


def validate_against_data(cfg: Mapping[str, Any], splits: TensorSplits) -> None:
    """What needs the data: class counts, class indices, model vs input shape."""
    c = splits.num_classes
    name = cfg["dataset"]["name"]
    sub = cfg["subclass"]
    classes = sub.get("classes")
    if cfg["method"] == "sdnn":
        if classes is not None:
            unknown = sorted(int(k) for k in classes if not 0 <= k < c)
            if unknown:
                raise ConfigError(f"subclass.classes: {unknown} not in dataset '{name}' (classes 0..{c - 1})")
        else:
            k = sub["num_classes_to_repartition"]
            if k >= c:
                raise ConfigError(f"subclass.num_classes_to_repartition={k} but dataset '{name}' has {c} classes; "
                                  f"choose 1..{c - 1}")
    model = cfg["model"]["name"]
    if model in IMAGE_BACKBONES and not splits.is_image:
        raise ConfigError(f"model={model} needs images, but dataset '{name}' has feature vectors of shape "
                          f"{splits.input_shape}; use model=mlp, model=lr or model=cnn1d")
    _check_backbone(cfg["model"], splits.input_shape)


def _check_backbone(model_cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> None:
    """Build the backbone on the meta device (no memory, no compute) so that a bad option
    fails now, not after phase 1."""
    import inspect

    import torch

    from sdnn.models import BACKBONES, build_backbone

    name = model_cfg["name"]
    allowed = set(inspect.signature(BACKBONES[name]).parameters) - {"input_shape"}
    unknown = sorted(set(model_cfg) - allowed - {"name"})
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not an option of model={name}; its options: {', '.join(sorted(allowed))}")
    try:
        with torch.device("meta"):
            build_backbone(model_cfg, input_shape)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model={name}: {exc}") from exc
