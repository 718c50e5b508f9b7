"""``build_job(cfg, run_dir) -> Job``: the one place a composed configuration becomes objects, one group a line
in the order of ``conf/config.yaml``'s defaults. Everything after it (``sdnn.pipeline``, ``sdnn.app``) works on
typed parts; the resolved configuration travels only as an opaque snapshot (results.json, fingerprints, the
model card)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sdnn.config import Settings, TrainerSettings, one_line, validate_config
from sdnn.config.schema import check_label
from sdnn.errors import ConfigError

if TYPE_CHECKING:
    from sdnn.cache import Phase1Cache
    from sdnn.job import Job


def build_job(cfg: DictConfig, run_dir: str | Path, settings: Settings | None = None) -> Job:
    """The typed parts of one run, each checked before the next is built (bad values before torch is imported,
    a bad combination with the data before Lightning is).

    Reads, besides the typed settings (``method``, ``seed``, ``phase1.*``, ``subclass.*``, ``observe.*``,
    ``checkpoint.*``, ``performance.*``, ``class2str.*``, the shared keys of ``dataset``, ``optim``,
    ``scheduler`` and every key of ``trainer``: ``sdnn.config.validate_config``):
    ``partitioner`` and ``augmenter`` (``_target_`` + arguments), ``loss`` (``_target_`` + arguments),
    ``dataset`` (``_target_`` + arguments, given ``seed``: ``dataset_source``), ``model.backbone`` (``_target_`` +
    arguments, given ``input_shape``), ``optim`` and ``scheduler`` (``_target_`` + arguments, ``_partial_``),
    ``logger`` (``_target_`` + arguments), and the whole resolved configuration as the snapshot.
    """
    from sdnn import checks  # torch: after the values are checked

    settings = settings or validate_config(cfg)                              # plain keys, group keys: typed
    run_dir = Path(run_dir)
    partitioner = instantiate_group("partitioner", cfg.partitioner)           # torch-free
    augmenter = instantiate_group("augmenter", cfg.augmenter)
    loss = instantiate_group("loss", cfg.loss)                                # a loss class, checked first
    check_label("loss", cfg.loss)                                             # then its label
    checks.check_loss(settings, loss)            # needs the class but not the data: fails before it is read
    checks.check_devices(settings.trainer)
    source = dataset_source(cfg.dataset, settings.seed, progress=settings.trainer.enable_progress_bar)
    loaded = source.load(run_dir)
    augmenter = augmenter.resolve(loaded.is_image)
    checks.check_against_data(settings, loaded, loss, partitioner, augmenter)
    backbone = build_backbone(cfg.model.backbone, settings, tuple(loaded.input_shape))
    optimizer = instantiate_group("optim", cfg.optim)
    scheduler = instantiate_group("scheduler", cfg.scheduler)
    trainer = import_target("trainer._target_", settings.trainer.target), callback_factories(settings.trainer)
    checks.check_trainer_arguments(trainer[0], settings.trainer)
    logger = logger_factory(cfg.get("logger"))
    snapshot = config_snapshot(cfg)
    return assemble(settings, run_dir, source, loaded, backbone, loss, partitioner, augmenter, optimizer, scheduler,
                    trainer, logger, snapshot)


def assemble(settings: Settings, run_dir: Path, source: Any, loaded: Any, backbone: Callable[..., Any], loss: Any,
             partitioner: Any, augmenter: Any, optimizer: Any, scheduler: Any,
             trainer: tuple[Callable[..., Any], list[Callable[[], Any]]], logger: Callable[..., Any] | None,
             snapshot: dict[str, Any]) -> Job:
    """The ``Job`` of built parts (Lightning is imported from here on)."""
    from sdnn.data.module import data_module
    from sdnn.job import Job
    from sdnn.lit.loggers import LoggerFactory
    from sdnn.lit.module import ModelSpec
    from sdnn.lit.progress import Console
    from sdnn.lit.trainer import Training

    (make_trainer, callbacks), perf, bars = trainer, settings.performance, settings.trainer.enable_progress_bar
    data = data_module(source, loaded, progress=bars)
    model = ModelSpec(backbone=backbone, optimizer=optimizer, scheduler=scheduler, channels_last=perf.channels_last,
                      compile=perf.compile, compile_backend=perf.compile_backend)
    training = Training(run_dir=run_dir, seed=settings.seed, trainer=settings.trainer, make_trainer=make_trainer,
                        callbacks=callbacks, loggers=LoggerFactory(logger, run_dir, snapshot), config=snapshot,
                        checkpoint=settings.checkpoint, per_class_test_acc=settings.observe.per_class_test_acc,
                        console=Console(bars))
    return Job(settings=settings, run_dir=run_dir, data=data, model=model, loss=loss, partitioner=partitioner,
               augmenter=augmenter, training=training, config=snapshot, backbone_config=snapshot["model"]["backbone"],
               cache=phase1_cache(snapshot, settings, getattr(loaded, "fingerprint", None)))


def config_snapshot(cfg: DictConfig) -> dict[str, Any]:
    """The resolved configuration as plain values; an interpolation that cannot be resolved (``${oc.env:X}``
    of an unset variable) is a one-line ``ConfigError`` naming the key."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(one_line(exc)) from None


def phase1_cache(snapshot: dict[str, Any], settings: Settings, data: str | None = None) -> Phase1Cache:
    """The phase-1 entry: keyed by everything that changes phase 1 (SPEC §5); ``data``: a hash of the data's
    content where no file names it (a user's data module, whose code may change under the same configuration)."""
    from sdnn.cache import Phase1Cache

    trainer = settings.trainer
    key = {
        **{group: snapshot[group] for group in ("dataset", "model", "optim", "scheduler")},
        "phase1": {"epochs": settings.phase1.epochs, "tau": settings.phase1.tau},
        "seed": settings.seed,
        "precision": trainer.precision,
        # dataset.batch_size is per process: another world size is another phase 1
        "world": [str(trainer.devices), int(trainer.num_nodes or 1)],
        "performance": snapshot["performance"],
        **({"data": data} if data else {}),
    }
    return Phase1Cache(settings.phase1.cache_dir, key)


def dataset_source(node: Mapping[str, Any], seed: int, progress: bool = True) -> Any:
    """The ``dataset`` node as the object whose ``load(run_dir)`` gives the data (``TensorSplits``, or YouTube-8M's
    ``YT8MData``): SDNN's own class as it is; any other class is a user's data module (``dataset=custom``), built
    with its own keys and read through ``DataModuleSource`` with the shared ones (README, "Your own data")."""
    from sdnn.data.custom import DataModuleSource, check_module_class, is_source, split_arguments

    arguments = node_arguments("dataset", node)
    target = str(arguments["_target_"])
    cls = import_target("dataset._target_", target)
    if is_source(cls):
        return instantiate_group("dataset", node, keep_name=True, seed=seed)
    check_module_class(cls, target)
    own, shared = split_arguments(arguments)
    module = instantiate_group("dataset", own)
    return DataModuleSource(module, target, progress=progress, seed=seed, **shared)


def build_backbone(node: DictConfig, settings: Settings, input_shape: tuple[int, ...]) -> Callable[..., Any]:
    """``model.backbone``'s factory (``input_shape`` → module): its class takes these arguments and builds for
    ``input_shape`` (on the meta device: no memory, no compute)."""
    import inspect

    import torch

    from sdnn.checks import check_backbone, check_backbone_class

    name, target = settings.model_name, str(node._target_)
    cls = import_class(target)
    check_backbone_class(cls, settings, input_shape)
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        allowed = set(parameters) - {"input_shape"}
        unknown = sorted(k for k in node if not k.startswith("_") and k not in allowed)
        if unknown:
            raise ConfigError(f"model.backbone.{unknown[0]} is not an option of model={name}; its options: "
                              f"{', '.join(sorted(allowed)) or 'none'}")
    build = instantiate_group("model.backbone", node, keep_name=True, _partial_=True)
    try:
        with torch.device("meta"):
            backbone = build(input_shape=input_shape)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith("model") else f"model={name}: {text}") from None
    check_backbone(backbone, target)
    return build


def callback_factories(trainer: TrainerSettings) -> list[Callable[[], Any]]:
    """``trainer.callbacks``: each ``_target_`` entry as a factory (every phase gets fresh callbacks)."""
    return [instantiate_group("trainer.callbacks", node, keep_name=True, _partial_=True)
            if isinstance(node, Mapping) and "_target_" in node else (lambda node=node: node)
            for node in trainer.callbacks or []]


def logger_factory(node: Mapping[str, Any] | None) -> Callable[..., Any] | None:
    """The ``logger`` group's class with its arguments (each phase's logger is made from it); None: no logger."""
    if not node or node.get("_target_") is None:
        return None
    return instantiate_group("logger", node, keep_name=True, _partial_=True)


def import_class(target: str) -> type:
    """The class a backbone's ``_target_`` names; a one-line error if it cannot be imported."""
    return import_target("model.backbone._target_", target)


def import_target(key: str, target: str) -> Any:
    """What a ``_target_`` names; a one-line error naming ``key`` if it cannot be imported."""
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception as exc:  # noqa: BLE001 — any import failure is the user's target
        cause = exc.__cause__ or exc
        raise ConfigError(f"{key}={target}: cannot import it ({type(cause).__name__}: {cause}); "
                          "is its package on PYTHONPATH?") from None


def node_arguments(group: str, node: Mapping[str, Any]) -> dict[str, Any]:
    """A picked group's node as a plain dict, resolved; a one-line ``ConfigError`` if its ``_target_`` is not set."""
    missing = isinstance(node, DictConfig) and "_target_" in node and OmegaConf.is_missing(node, "_target_")
    if not isinstance(node, Mapping) or "_target_" not in node or missing:
        raise ConfigError(f"{group}._target_ is not set: give the class, e.g. {group}._target_=mypackage.MyClass")
    try:
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    except OmegaConfBaseException as exc:  # resolved while the node still has its root
        raise ConfigError(one_line(exc, group)) from None


# what a group's _target_ must build (checked before anything is called): base classes, and the words for it
GROUP_KINDS = {
    "optim": (("torch.optim.Optimizer",), "an optimiser: a torch.optim.Optimizer class such as torch.optim.SGD"),
    "scheduler": (("torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
                  ("a learning-rate schedule: a torch.optim.lr_scheduler.LRScheduler class such as "
                   "torch.optim.lr_scheduler.MultiStepLR")),
    "loss": (("torch.nn.Module",), ("a loss: a torch.nn.Module class whose forward(logits, targets) returns the loss, "
                                    "such as sdnn.losses.SigmoidCrossEntropy (loss=bce)")),
    "logger": (("pytorch_lightning.loggers.Logger",), ("a logger: a pytorch_lightning.loggers.Logger class such as "
                                                       "pytorch_lightning.loggers.CSVLogger (logger=csv)")),
}


def check_kind(group: str, target: Any) -> None:
    """``<group>._target_`` names a class of the kind the group needs (``GROUP_KINDS``); a one-line error
    otherwise, before it is called."""
    from hydra.utils import get_class, get_object

    bases, what = GROUP_KINDS[group]
    try:
        found = get_object(str(target))
    except Exception as exc:  # noqa: BLE001 — any import failure is the user's target
        cause = exc.__cause__ or exc
        raise ConfigError(f"{group}._target_={target}: cannot import it ({type(cause).__name__}: {cause}); "
                          "is its package on PYTHONPATH?") from None
    if not (isinstance(found, type) and issubclass(found, tuple(get_class(base) for base in bases))):
        raise ConfigError(f"{group}._target_={target} is not {what}")


def instantiate_group(group: str, node: Mapping[str, Any], keep_name: bool = False, **kwargs):
    """Instantiate a picked group's ``_target_`` (its ``name`` is a label, not an argument, unless
    ``keep_name``); a bad argument is a one-line ``ConfigError`` naming ``<group>.<argument>``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    arguments = node_arguments(group, node)
    if not keep_name:
        arguments.pop("name", None)
    target = arguments["_target_"]
    if group in GROUP_KINDS:
        check_kind(group, target)
    try:
        return instantiate(arguments, **{"_convert_": "all", **kwargs})
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
        if unexpected:
            raise ConfigError(f"{group}.{unexpected.group(1)} is not an argument of {target}") from None
        if isinstance(cause, (ValueError, TypeError)) and "=" in text.split(" ", 1)[0]:
            raise ConfigError(f"{group}.{text}") from None  # "<argument>=<value> ..." from the class
        raise ConfigError(f"{group} ({target}): {text}") from None
