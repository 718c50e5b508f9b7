"""Schemas of the configuration: types at composition (Hydra's ConfigStore), ranges when the typed
settings are built (``__post_init__``), every error one line that names the key and the fix.

The plain groups (``phase1``, ``subclass``, ``observe``, ``checkpoint``, ``performance`` and the
top-level ``method`` and ``seed``) are typed by :class:`RunConfig`, the first entry of
``conf/config.yaml``'s defaults. The keys shared by every dataset, the optimiser's and the
trainer's are checked by the same kind of dataclass when :func:`validate_config` runs. No torch
here: a wrong value is reported before it is imported.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sdnn.config.names import closest
from sdnn.config.wording import CONF, one_line, require, shown, unknown_key
from sdnn.errors import ConfigError, listed

SEED_LIMIT = 2**32  # numpy's seed range


class Method(str, enum.Enum):
    """``method=``: what a run trains (the recipes of ``sdnn.pipeline``)."""

    sdnn = "sdnn"
    baseline = "baseline"
    reweight = "reweight"   # control: SDNN's selection, no split, the selected classes' positive term × H
    class2str = "class2str"  # the latent-hierarchy classifier of Class2Str (Saha et al., ICPR 2018)
    auto = "auto"           # the best of baseline, reweight and SDNN on the validation split (sdnn.auto)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass
class Phase1Config:
    """Phase 1: the plain network with eq. 3, θ measured (SPEC §2, §5)."""

    epochs: float = 5.0
    tau: Optional[int] = None
    cache_dir: str = ".cache/sdnn"
    use_cache: bool = True

    def __post_init__(self):
        require(math.isfinite(self.epochs) and self.epochs > 0, "phase1.epochs", self.epochs,
                "must be a positive number (fractions allowed, e.g. 0.333)")
        require(self.tau is None or self.tau >= 1, "phase1.tau", self.tau,
                "must be an integer number of steps >= 1, or null for one epoch")


@dataclass
class SubclassConfig:
    """Selection (eq. 10) and split of the neglected classes (SPEC §3, §4)."""

    num_classes_to_repartition: int = 2
    classes: Optional[list[int]] = None
    per_class: int = 2
    sibling_weight: float = 1.0

    def __post_init__(self):
        require(self.per_class >= 2, "subclass.per_class", self.per_class,
                "must be an integer >= 2 (subclasses per selected class)")
        require(0 <= self.sibling_weight <= 1, "subclass.sibling_weight", self.sibling_weight,
                "must be in [0, 1] (1 = eq. 11, 0 = plain BCE over subclasses)")
        if self.classes is not None:
            classes = list(self.classes)
            require(bool(classes) and min(classes) >= 0, "subclass.classes", classes,
                    "must be a non-empty list of class indices, e.g. [3,5]")
            repeated = sorted(c for c, times in collections.Counter(classes).items() if times > 1)
            if repeated:
                raise ConfigError(f"subclass.classes lists class(es) {listed(repeated)} more than once")
            self.classes = sorted(classes)
        else:
            require(self.num_classes_to_repartition >= 1, "subclass.num_classes_to_repartition",
                    self.num_classes_to_repartition, "must be an integer >= 1")


@dataclass
class ObserveConfig:
    """Figures and dashboards; the test split is used for plots only, never to choose."""

    figures: bool = True
    norms_every: int = 10
    per_class_test_acc: bool = True
    split_indicators: bool = True

    def __post_init__(self):
        require(self.norms_every >= 0, "observe.norms_every", self.norms_every, "must be an integer >= 0 (0 = off)")


@dataclass
class CheckpointConfig:
    """Per-epoch checkpoints of each phase and resuming a killed run (``sdnn.lit.resume``)."""

    every_n_epochs: int = 1
    resume: str = "true"
    save_model: bool = True

    def __post_init__(self):
        require(self.every_n_epochs >= 0, "checkpoint.every_n_epochs", self.every_n_epochs,
                "must be an integer >= 0 (0 = no checkpoints)")
        self.resume = str(self.resume).lower()
        require(self.resume in ("true", "false", "force"), "checkpoint.resume", self.resume,
                "is not an option; choose true (continue a killed run in the same hydra.run.dir), false (start "
                "over) or force (continue even if the configuration changed)")


@dataclass
class PerformanceConfig:
    """GPU-path switches (bf16 autocast is ``trainer.precision=bf16-mixed``)."""

    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"


def shortest_code_length(num_classes: int) -> int:
    """⌈log2 c⌉: the fewest bits that give c classes distinct strings (at least 1)."""
    return max(1, (int(num_classes) - 1).bit_length())


@dataclass
class Class2StrConfig:
    """``method=class2str``: the latent-hierarchy classifier and its loss (sdnn/class2str.py)."""

    w_c: float = 4.0
    w_i: float = 100.0
    w_l2: float = 0.1
    code_length: Optional[int] = None
    rnn_hidden: list[int] = field(default_factory=lambda: [100, 20, 100])
    mapping_hidden: int = 500
    end_to_end: bool = True
    optimizer: str = "adam"
    lr: float = 1e-3

    def __post_init__(self):
        for key in ("w_c", "w_i", "w_l2"):
            value = getattr(self, key)
            require(math.isfinite(value) and value >= 0, f"class2str.{key}", value,
                    "must be a finite number >= 0 (a weight of the Class2Str loss)")
        require(self.code_length is None or self.code_length >= 1, "class2str.code_length", self.code_length,
                "must be null (⌈log2 c⌉) or an integer >= 1")
        require(bool(self.rnn_hidden) and min(self.rnn_hidden) >= 1, "class2str.rnn_hidden", list(self.rnn_hidden),
                "must be a non-empty list of LSTM sizes >= 1, e.g. [100,20,100]")
        require(self.mapping_hidden >= 1, "class2str.mapping_hidden", self.mapping_hidden, "must be an integer >= 1")
        require(self.optimizer in ("adam", "run"), "class2str.optimizer", self.optimizer,
                "is not an option; choose adam (stage 2 with Adam at class2str.lr, as the authors) or run (the "
                "run's optim group)")
        require(math.isfinite(self.lr) and self.lr > 0, "class2str.lr", self.lr, "must be a positive number")

    def code_length_for(self, num_classes: int) -> int:
        """The code length for ``num_classes`` classes; a ``ConfigError`` if too short for them."""
        shortest = shortest_code_length(num_classes)
        if self.code_length is None:
            return shortest
        require(self.code_length >= shortest, "class2str.code_length", self.code_length,
                f"is too short for {num_classes} classes (2^{self.code_length} = {2 ** self.code_length} strings); "
                f"use >= {shortest} or null (⌈log2 c⌉)")
        return self.code_length


@dataclass
class AutoConfig:
    """``method=auto`` (sdnn.auto): the candidates, each trained from one phase 1 and compared on validation only."""

    candidates: list[str] = field(default_factory=lambda: ["baseline", "reweight", "sdnn-k1", "sdnn-k2", "sdnn-k3"])
    confidence: float = 0.95   # a candidate beats the baseline when its one-sided lower bound is above 0
    prior: bool = True         # combine the validation gain with the indicators' expectation (sdnn.advise)
    skip_hopeless: bool = True  # skip a candidate whose expected Δ (sdnn.advise's 80% interval) lies below 0
    calibration: Optional[str] = None  # the indicators' calibration; null: conf/advise/calibration.yaml
    folds: Any = "auto"        # held-out parts the candidates are compared on: auto (sdnn.auto.fold_count) or n >= 1

    def __post_init__(self):
        require(self.folds == "auto" or (isinstance(self.folds, int) and not isinstance(self.folds, bool)
                                         and self.folds >= 1), "auto.folds", self.folds,
                "must be auto (enough folds for about 1000 held-out observations, at most 5) or an integer >= 1 "
                "(1: the validation split only)")
        names = list(self.candidates)
        bad = [n for n in names if not (n in ("baseline", "reweight") or re.fullmatch(r"sdnn-k[1-9]\d*", n))]
        require(bool(names) and not bad, "auto.candidates", names,
                "must list baseline, reweight and sdnn-k<k> (SDNN splitting the k most neglected classes), e.g. "
                "[baseline,reweight,sdnn-k1,sdnn-k2,sdnn-k3]")
        require(len(set(names)) == len(names), "auto.candidates", names, "names a candidate twice")
        require("baseline" in names, "auto.candidates", names,
                "must include baseline (the reference every other candidate has to beat on validation)")
        require(self.calibration is None or os.path.isfile(self.calibration), "auto.calibration", self.calibration,
                "is not a file; give a calibration written by python -m sdnn.study payoff, or null for "
                "conf/advise/calibration.yaml")
        require(0.5 <= self.confidence < 1, "auto.confidence", self.confidence,
                "must be in [0.5, 1) (one-sided confidence that a candidate's validation gain is above 0)")


@dataclass
class RunConfig:
    """The whole configuration: the plain keys typed, the picked groups (``_target_`` nodes) as they are."""

    method: Method = Method.sdnn
    seed: int = 0
    overwrite: bool = False
    phase1: Phase1Config = field(default_factory=Phase1Config)
    subclass: SubclassConfig = field(default_factory=SubclassConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    class2str: Class2StrConfig = field(default_factory=Class2StrConfig)
    auto: AutoConfig = field(default_factory=AutoConfig)
    dataset: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    partitioner: Any = MISSING
    augmenter: Any = MISSING
    optim: Any = MISSING
    scheduler: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None


# ---------------------------------------------------------------- keys of the picked groups

@dataclass
class AugmentKeys:
    """``dataset.augment``: the training images' device-side augmentation (paper §3.2)."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    def __post_init__(self):
        for key in ("crop_padding", "cutout"):
            value = getattr(self, key)
            require(value >= 0, f"dataset.augment.{key}", value, "must be an integer >= 0 (0 turns it off)")


@dataclass
class DatasetKeys:
    """The keys every dataset shares (conf/base/in_memory.yaml; YouTube-8M has its own)."""

    name: str = MISSING
    batch_size: int = 128
    val_fraction: float = 0.0
    train_per_class: Optional[int] = None
    on_corrupt: str = "error"
    merge: Optional[list[int]] = None

    def __post_init__(self):
        if self.merge is not None:
            merge = list(self.merge)
            used = sorted(set(merge))
            require(len(used) >= 2 and used == list(range(len(used))), "dataset.merge", merge,
                    "must give each original class its new class, numbered 0..c'-1 (c' >= 2) with none skipped "
                    "(e.g. [0,0,1,1,2,2] merges six classes into three)")
        require(self.batch_size >= 1, "dataset.batch_size", self.batch_size, "must be an integer >= 1")
        require(0 <= self.val_fraction < 1, "dataset.val_fraction", self.val_fraction,
                "must be in [0, 1): the share of train held out for validation (e.g. 0.1)")
        require(self.train_per_class is None or self.train_per_class >= 1, "dataset.train_per_class",
                self.train_per_class, "must be null (all) or an integer >= 1: the training samples kept per class "
                "(a seeded subset, for quick runs)")
        require(self.on_corrupt in ("error", "skip"), "dataset.on_corrupt", self.on_corrupt,
                "is not an option; choose error (stop at a damaged file) or skip (leave it out and report it)")


@dataclass
class YT8MKeys:
    """``dataset=yt8m``: streamed multilabel shards (sdnn/data/yt8m.py)."""

    train: Optional[str] = None
    validate: Optional[str] = None
    features: str = "rgb"
    num_classes: int = 3862
    max_videos: Optional[int] = None
    max_eval_videos: Optional[int] = None
    shuffle_buffer: int = 4096
    num_workers: int = 2

    def __post_init__(self):
        for key in ("train", "validate"):
            if not getattr(self, key):
                raise ConfigError(f"dataset.{key} is not set: give a glob of the {key}*.tfrecord shards, e.g. "
                                  f"dataset.{key}='/data/yt8m/video/{key}*.tfrecord' (README, YouTube-8M)")
        require(self.features in ("rgb", "rgb_audio"), "dataset.features", self.features,
                "is not an option; choose one of: rgb, rgb_audio")
        require(self.num_classes >= 2, "dataset.num_classes", self.num_classes,
                "must be an integer >= 2 (YouTube-8M: 3862)")
        for key in ("max_videos", "max_eval_videos"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"dataset.{key}", value,
                    "must be null (all videos) or an integer >= 1")
        for key in ("shuffle_buffer", "num_workers"):
            require(getattr(self, key) >= 0, f"dataset.{key}", getattr(self, key), "must be an integer >= 0")


@dataclass
class OptimizerKeys:
    """The optimiser's keys that every ``optim`` option shares."""

    lr: float = MISSING
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        require(self.lr > 0, "optim.lr", self.lr, "must be a positive number")
        require(self.momentum >= 0, "optim.momentum", self.momentum, "must be >= 0")
        require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")


@dataclass
class SchedulerKeys:
    """The keys of the built-in schedulers (``scheduler=multistep``, ``scheduler=exponential``), where present."""

    milestones: Optional[list[int]] = None
    gamma: Optional[float] = None

    def __post_init__(self):
        if self.milestones is not None:
            require(all(m >= 1 for m in self.milestones), "scheduler.milestones", self.milestones,
                    "must be a list of epochs >= 1, e.g. [60,120,160]")
        require(self.gamma is None or self.gamma > 0, "scheduler.gamma", self.gamma,
                "must be a positive factor, e.g. 0.1")


# Lightning 2.x's values of Trainer(precision=...) (lightning_fabric/plugins/precision/precision.py)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def devices_ok(value: Any) -> bool:
    """``trainer.devices``: a count >= 1, -1 (every GPU), ``auto``, or GPU indices (a list, or "0,2")."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "-1"):
            return True
        if "," in text:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            return bool(parts) and all(p.isdigit() for p in parts) and len(set(parts)) == len(parts)
        return text.isdigit() and int(text) >= 1
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1 or value == -1
    if isinstance(value, (list, tuple)):
        return (bool(value) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
                and len(set(value)) == len(value))
    return False


@dataclass
class TrainerSettings:
    """The ``trainer`` group: the Trainer's class (``_target_``) and the arguments the recipe relies on, typed
    (the GPUs there are checked by ``sdnn.checks``, with torch); every other key is passed to the class as
    given (``arguments``). ``max_epochs``: phase 2 and the baseline (phase 1 has ``phase1.epochs``)."""

    target: str = "pytorch_lightning.Trainer"
    max_epochs: int = MISSING
    devices: Any = 1
    num_nodes: int = 1
    precision: Any = "32-true"
    accelerator: Any = "auto"
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True
    callbacks: Optional[list[Any]] = None   # the user's callbacks, ``_target_`` entries
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        require(self.max_epochs >= 1, "trainer.max_epochs", self.max_epochs, "must be an integer >= 1")
        require(devices_ok(self.devices), "trainer.devices", self.devices,
                "must be a number of devices >= 1 (processes on a CPU), -1 (every GPU), auto, or a list of GPU "
                "indices such as [0,2]")
        require(self.num_nodes >= 1, "trainer.num_nodes", self.num_nodes, "must be an integer >= 1")
        require(str(self.precision) in PRECISIONS, "trainer.precision", self.precision,
                f"is not a precision; choose one of: {', '.join(PRECISIONS[:8])}")
        require(isinstance(self.accelerator, str) and self.accelerator.lower() in ACCELERATORS,
                "trainer.accelerator", self.accelerator,
                f"is not an accelerator; choose one of: {', '.join(ACCELERATORS)}")
        require(self.log_every_n_steps >= 1, "trainer.log_every_n_steps", self.log_every_n_steps,
                "must be an integer >= 1")
        self.precision = str(self.precision)


def trainer_settings(node: Mapping[str, Any]) -> TrainerSettings:
    """The ``trainer`` group as :class:`TrainerSettings`: its typed keys checked, the rest kept as arguments."""
    try:
        items = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    except OmegaConfBaseException as exc:
        raise ConfigError(one_line(exc, "trainer")) from None
    target = items.pop("_target_", None) or TrainerSettings.target
    items.pop("_partial_", None)
    names = {f.name for f in dataclasses.fields(TrainerSettings)} - {"target", "arguments"}
    known = {key: items.pop(key) for key in list(items) if key in names}
    settings = typed(TrainerSettings, known, "trainer")
    settings.target, settings.arguments = str(target), items
    return settings


# Datasets with keys of their own, by their `_target_`.
DATASET_SCHEMAS = {"sdnn.data.yt8m.YT8MData": YT8MKeys}

# ---------------------------------------------------------------- checking

def typed(schema: type, node: Mapping[str, Any] | None, prefix: str, closed: bool = False):
    """``node``'s keys that ``schema`` lists, type-checked and converted to a ``schema`` instance
    (whose ``__post_init__`` checks the ranges). ``closed``: a key the schema lacks is an error."""
    names = [f.name for f in dataclasses.fields(schema)]
    items = dict(node.items()) if node is not None else {}
    unknown = sorted(set(items) - set(names))
    if closed and unknown:
        near = closest(unknown[0], names)
        guess = f"did you mean {prefix}.{near}? " if near else ""
        raise ConfigError(f"{prefix}.{unknown[0]} is not an option; {guess}choose {', '.join(names)}")
    values = {k: v for k, v in items.items() if k in names}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        given = OmegaConf.to_container(OmegaConf.create(values)) if values else {}
        raise ConfigError(one_line(exc, prefix, given)) from None


@dataclass
class Settings:
    """Every group's typed settings, checked; the picked groups' own arguments stay in their nodes, which only
    ``sdnn.build`` turns into objects."""

    method: Method
    seed: int
    phase1: Phase1Config
    subclass: SubclassConfig
    observe: ObserveConfig
    checkpoint: CheckpointConfig
    performance: PerformanceConfig
    class2str: Class2StrConfig
    auto: AutoConfig
    dataset: DatasetKeys
    optim: OptimizerKeys
    scheduler: SchedulerKeys
    trainer: TrainerSettings
    model_name: str            # labels in results.json and in messages (``model.name``, ``loss.name``)
    loss_name: str
    partitioner_name: str
    overwrite: bool = False    # a run folder holding another run may be replaced (sdnn.runfolder)


def check_label(group: str, node: Mapping[str, Any], own: bool = True) -> None:
    """A group option's ``name`` is its label only: setting it to another option's name (``loss.name=ce``,
    which picked the loss in an earlier layout) would mislabel the run, so it is an error naming the fix; so
    is a class of your own left with an option's label (``own``: checked here; the loss is checked once its
    class is known to be a loss, ``sdnn.build``)."""
    label = node.get("name")
    option = CONF / group / f"{label}.yaml"
    if not isinstance(label, str) or not option.is_file():
        return
    import yaml

    def target_of(declared: Mapping[str, Any]) -> Any:
        return (declared.get("backbone") or {}).get("_target_") if group == "model" else declared.get("_target_")

    target = target_of(yaml.safe_load(option.read_text()) or {})
    actual = (node.get("backbone") or {}).get("_target_") if group == "model" else node.get("_target_")
    if not target or target == MISSING or not actual or target == actual:  # model=custom: the target is the user's
        return
    options = {target_of(yaml.safe_load(path.read_text()) or {}) for path in (CONF / group).glob("*.yaml")}
    if actual in options:
        raise ConfigError(f"{group}.name={label} only relabels the run (the class is still {actual}); "
                          f"to use {label}, choose the option: {group}={label}")
    if own:
        raise ConfigError(f"{group}._target_={actual} is your own class, but {group}.name={label} labels the option "
                          f"{group}={label} ({target}); give yours a label of its own, e.g. {group}.name=mine")


def validate_config(cfg: DictConfig) -> Settings:
    """Everything that can be checked without the data and without torch: the typed settings."""
    try:
        method, seed = cfg.method, cfg.seed
        OmegaConf.to_container(cfg, resolve=True)  # an interpolation that cannot be resolved (${oc.env:UNSET})
    except OmegaConfBaseException as exc:
        raise ConfigError(one_line(exc)) from None
    require(0 <= seed < SEED_LIMIT, "seed", seed, f"must be an integer in 0..{SEED_LIMIT - 1} (numpy's seed range)")
    added = sorted(set(cfg) - {item.name for item in dataclasses.fields(RunConfig)})
    if added:  # +key=value at the top level: nothing reads it
        raise ConfigError(unknown_key(added[0], shown(cfg[added[0]]), added=True))
    plain = {name: typed(schema, cfg.get(name), name, closed=True)
             for name, schema in (("phase1", Phase1Config), ("subclass", SubclassConfig), ("observe", ObserveConfig),
                                  ("checkpoint", CheckpointConfig), ("performance", PerformanceConfig),
                                  ("class2str", Class2StrConfig), ("auto", AutoConfig))}
    dataset = cfg.dataset
    if isinstance(dataset, DictConfig) and OmegaConf.is_missing(dataset, "_target_"):
        raise ConfigError(f"dataset={dataset.get('name')} needs dataset._target_: your LightningDataModule, e.g. "
                          "dataset._target_=mypackage.MyData (it has num_classes, input_shape, train_dataloader() and "
                          "test_dataloader(); README: \"Your own data\")")
    dataset_keys = typed(DatasetKeys, dataset, "dataset")
    if "augment" in dataset:
        typed(AugmentKeys, dataset.augment, "dataset.augment", closed=True)
    extra = DATASET_SCHEMAS.get(str(dataset.get("_target_")))
    if extra is not None:
        typed(extra, dataset, "dataset")
    backbone = cfg.model.get("backbone")
    if not isinstance(backbone, Mapping) or OmegaConf.is_missing(backbone, "_target_"):
        raise ConfigError(f"model={cfg.model.get('name')} needs model.backbone._target_: your class, e.g. "
                          "model.backbone._target_=mypackage.MyNet (built with input_shape=(C, H, W) or (F,); "
                          "it has out_features and its forward returns the (n, out_features) features)")
    for group in ("model", "loss", "partitioner", "augmenter"):  # a loss class of your own: in sdnn.build
        check_label(group, cfg[group], own=group != "loss")
    optim = typed(OptimizerKeys, cfg.optim, "optim")
    scheduler = typed(SchedulerKeys, cfg.scheduler, "scheduler")
    for group in ("optim", "scheduler"):  # their options have no name: one added (+optim.name=adam) picks nothing
        if isinstance(cfg[group], Mapping) and "name" in cfg[group]:
            options = ", ".join(sorted(p.stem for p in (CONF / group).glob("*.yaml")))
            what = {"optim": "optimiser", "scheduler": "learning-rate schedule"}[group]
            raise ConfigError(f"{group}.name={cfg[group].name} does not choose the {what}: choose the option, "
                              f"{group}=<{options.replace(', ', '|')}>, or give your class as {group}._target_")
    trainer = trainer_settings(cfg.trainer)
    return Settings(method=Method(method), seed=int(seed), **plain, dataset=dataset_keys, optim=optim,
                    scheduler=scheduler, trainer=trainer, model_name=str(cfg.model.get("name")),
                    loss_name=str(cfg.loss.get("name")), partitioner_name=str(cfg.partitioner.get("name")),
                    overwrite=bool(cfg.get("overwrite", False)))


def register() -> None:
    """Put :class:`RunConfig` into Hydra's ConfigStore as ``sdnn_schema`` (conf/config.yaml's first default)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="sdnn_schema", node=RunConfig)


