"""The two-phase SDNN strategy (SPEC §5) and the baseline, from a composed config.

phase 1 (θ, cached) → select → augment + split (cached) → phase 2 (fresh network, S units)
→ class-level test metrics → ``results.json``.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.cache import Phase1Cache, atomic_savez, atomic_write_json
from sdnn.data import TensorSplits, load_dataset
from sdnn.data.yt8m import YT8MData
from sdnn.data.batch_augment import BatchAugment, InputPipeline
from sdnn.data.tensors import batch_loader
from sdnn.errors import ConfigError
from sdnn.lit import NeglectCallback, PerClassAccuracyHistory, SDNNModule
from sdnn.lit.publish import publish
from sdnn.lit.progress import PHASE_TITLES, PhaseProgressBar
from sdnn.lit.resume import AtomicCheckpointIO, CheckpointPlan, EpochSeed, FiniteLossGuard
from sdnn.lit.streams import FractionalEpochs, StreamEpochs
from sdnn.losses import SigmoidCrossEntropy, build_loss
from sdnn.models import build_backbone
from sdnn.neglect import last_window_theta
from sdnn.repartition import Repartition, VideoSubclasses, repartition, select_classes, stream_repartition
from sdnn.results import format_summary, nan_to_none, write_results
from sdnn.subclass import build_subclass_to_class, subclass_targets
from sdnn.validate import validate_against_data, validate_config


def _say(message: str) -> None:
    """Progress and summary lines, printed once (by rank 0 under DDP)."""
    if rank_zero_only.rank == 0:
        print(message, flush=True)


def _configured_callbacks(trainer_args: dict) -> list:
    """``trainer.callbacks`` from the config: entries with ``_target_`` are instantiated, e.g.
    ``+trainer.callbacks=[{_target_: pytorch_lightning.callbacks.LearningRateMonitor}]``."""
    return [instantiate(c) if isinstance(c, dict) and "_target_" in c else c for c in trainer_args.get("callbacks") or []]


def _status(cfg: DictConfig, message: str):
    """A rich spinner for work outside Lightning's loops (shown on a terminal, by rank 0)."""
    if rank_zero_only.rank != 0 or not cfg.trainer.get("enable_progress_bar", True):
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def _sweep_group(run_dir: Path) -> str:
    """The W&B group: the sweep folder for a Hydra multirun, else the run folder."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return HydraConfig.get().sweep.dir
    except ImportError:
        pass
    return str(run_dir)


def _logger(cfg: DictConfig, run_dir: Path, phase: str):
    target = cfg.logger.get("_target_") if cfg.get("logger") else None
    if not target:
        return False
    if target.endswith("WandbLogger"):  # one W&B run per phase, grouped by sweep
        group = cfg.logger.get("group") or _sweep_group(run_dir)
        make = instantiate(cfg.logger, save_dir=str(run_dir), name=f"{run_dir.name}/{phase}", group=group,
                           job_type=phase, _partial_=True)  # `config` would clash with instantiate's own argument
        return make(config=OmegaConf.to_container(cfg, resolve=True))
    return instantiate(cfg.logger, save_dir=str(run_dir), name=phase)


def _finish_logger(logger) -> None:
    if logger and type(logger).__name__ == "WandbLogger":
        logger.experiment.finish()


def _loaders(cfg: DictConfig, data, x: torch.Tensor | None = None, targets: torch.Tensor | None = None,
             recipe: VideoSubclasses | None = None) -> tuple[tuple, list, tuple | None]:
    """(train, validation, test) loaders, the callbacks they need, and the test tensors for the
    per-class accuracy history (None for streamed data). ``x``/``targets``: the training set
    (default: the dataset's); ``recipe``: phase 2's subclass recipe of a stream."""
    batch = cfg.dataset.batch_size
    if isinstance(data, YT8MData):
        train, test = data.stream("train", train=True, recipe=recipe), data.stream("validate", train=False,
                                                                                    batch_size=4 * batch)
        return (data.loader(train), None, data.loader(test)), [StreamEpochs([train], [test])], None
    x, targets = (data.x_train, data.y_train) if x is None else (x, targets)
    train = batch_loader(x, targets, batch, shuffle=True, seed=cfg.seed)
    val = batch_loader(data.x_val, data.y_val, 4 * batch, shuffle=False) if data.x_val is not None else None
    test = batch_loader(data.x_test, data.y_test, 4 * batch, shuffle=False)
    return (train, val, test), [], (data.x_test, data.y_test)


def _fit(cfg: DictConfig, data, subclass_to_class, loss: torch.nn.Module, phase: str, run_dir: Path, epochs: float,
         callbacks=(), x: torch.Tensor | None = None, targets: torch.Tensor | None = None,
         recipe: VideoSubclasses | None = None) -> tuple[SDNNModule, float, list[dict]]:
    """Train a fresh network (seeded, so a cached phase 1 leaves phase 2 unchanged); returns it,
    the training seconds and the per-class test accuracy after each epoch (if observed)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build_backbone(cfg.model, data.input_shape)
    perf = cfg.performance
    if perf.compile:
        backbone.compile(backend=perf.compile_backend)  # in place: state_dict keys stay the same
    multilabel = getattr(data, "multilabel", False)
    module = SDNNModule(backbone, loss, subclass_to_class, data.num_classes, cfg.optim, _input_pipeline(cfg, data),
                        channels_last=bool(perf.channels_last) and data.is_image, multilabel=multilabel)
    (train_loader, val_loader, test_loader), data_callbacks, test_tensors = _loaders(cfg, data, x, targets, recipe)
    batch = cfg.dataset.batch_size
    logger = _logger(cfg, run_dir, phase)
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    callbacks = [*data_callbacks, *callbacks]
    accuracy = None
    if cfg.observe.per_class_test_acc and test_tensors is not None:
        accuracy = PerClassAccuracyHistory(*test_tensors, batch_size=4 * batch)
        callbacks = [*callbacks, accuracy]
    if trainer_args.get("enable_progress_bar", True):
        callbacks = [*callbacks, PhaseProgressBar(phase, unit="videos" if multilabel else "samples",
                                                  batch_size=batch)]
    if epochs != int(epochs):
        callbacks = [*callbacks, FractionalEpochs(epochs)]
    trainer_args.update(max_epochs=math.ceil(epochs), max_steps=-1, logger=logger,
                        callbacks=[*_configured_callbacks(trainer_args), *callbacks],
                        default_root_dir=str(run_dir / phase), use_distributed_sampler=False)
    if val_loader is None:
        trainer_args["limit_val_batches"] = 0
    plan = _checkpoint_plan(cfg, run_dir, phase)
    resume_from = plan.resume_path()
    if resume_from is not None:
        _say(f"{phase}: resuming from {resume_from}")
    guard = FiniteLossGuard(PHASE_TITLES.get(phase, phase), int(trainer_args.get("log_every_n_steps") or 50),
                            plan.last if plan.enabled else None)
    trainer_args["callbacks"] = [EpochSeed(cfg.seed), guard, *trainer_args["callbacks"], *plan.callbacks()]
    trainer_args["enable_checkpointing"] = plan.enabled
    trainer_args["plugins"] = [*(trainer_args.get("plugins") or []), AtomicCheckpointIO()]
    trainer = pl.Trainer(**trainer_args)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from, weights_only=False)
    seconds = time.perf_counter() - start
    val = trainer.callback_metrics.get("val/acc")  # the validation split's accuracy after the last epoch
    module.val_results = {"acc": float(val)} if val is not None and val_loader is not None else None
    trainer.test(module, test_loader, verbose=False)
    _finish_logger(logger)
    return module, seconds, accuracy.history if accuracy is not None else []


def _input_pipeline(cfg: DictConfig, data) -> InputPipeline:
    augment = BatchAugment(**cfg.dataset.get("augment", {})) if data.is_image else None
    return InputPipeline(augment, data.norm_mean, data.norm_std)


def _phase1_cache(cfg: DictConfig) -> Phase1Cache:
    key = {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        "phase1": {"epochs": cfg.phase1.epochs, "tau": cfg.phase1.tau},
        "seed": cfg.seed,
        "precision": str(cfg.trainer.get("precision", "32-true")),
        # dataset.batch_size is per process: another world size is another phase 1
        "world": [str(cfg.trainer.get("devices", 1)), int(cfg.trainer.get("num_nodes", 1) or 1)],
        "performance": OmegaConf.to_container(cfg.performance, resolve=True),
    }
    return Phase1Cache(cfg.phase1.cache_dir, key)


def run_phase1(cfg: DictConfig, splits: TensorSplits, run_dir: Path, cache: Phase1Cache) -> dict[str, Any]:
    """θ history and phase-1 weights, from the cache when the same phase 1 was run before."""
    use_cache = cfg.phase1.use_cache
    if use_cache and cache.has_phase1():
        history, state, meta = cache.load_phase1()
        _say(f"phase 1: reusing cached θ and weights from {cache.dir} (skipping phase-1 training)")
        return {"history": history, "state": state, "cached": True, "seconds": meta["seconds"],
                "test": meta.get("test"), "accuracy": meta.get("accuracy", []), "norms": cache.load_arrays("norms")}
    # Only rank 0 locks: under DDP the other ranks start from rank 0's fit and must train with it.
    with cache.lock() if use_cache and rank_zero_only.rank == 0 else contextlib.nullcontext():
        if use_cache and cache.has_phase1():  # another run finished it while we waited
            return run_phase1(cfg, splits, run_dir, cache)
        _say(f"phase 1: neglect scores, {cfg.phase1.epochs} epoch(s) with the sigmoid CE (eq. 3)")
        neglect = NeglectCallback(splits.num_classes, tau=cfg.phase1.tau,
                                  record_norms_every=int(cfg.observe.norms_every or 0))
        identity = torch.arange(splits.num_classes)
        module, seconds, accuracy = _fit(cfg, splits, identity, SigmoidCrossEntropy(), "phase1", run_dir,
                                         cfg.phase1.epochs, callbacks=[neglect])
        state = {k: v.cpu() for k, v in module.state_dict().items()}
        norms = neglect.norm_history() if cfg.observe.norms_every else None
        if use_cache and rank_zero_only.rank == 0:
            if norms is not None:
                cache.save_arrays("norms", norms)
            cache.save_phase1(neglect.history, state, {"seconds": seconds, "test": module.test_results,
                                                       "accuracy": accuracy})
        return {"history": neglect.history, "state": state, "cached": False, "seconds": seconds,
                "test": module.test_results, "accuracy": accuracy, "norms": norms}


def _embedder(cfg: DictConfig, splits: TensorSplits, phase1_state: dict | None):
    """Vectors the partition is computed in: flattened (normalised) inputs or phase-1
    penultimate features."""
    normalize = InputPipeline(None, splits.norm_mean, splits.norm_std).normalize
    if cfg.partitioner.space == "input":
        return lambda x: normalize(x).flatten(1)
    backbone = build_backbone(cfg.model, splits.input_shape)
    backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in phase1_state.items()
                              if k.startswith("backbone.")})
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    backbone.eval().to(device)
    normalize = InputPipeline(None, splits.norm_mean, splits.norm_std).to(device).normalize

    def embed(x):
        with torch.no_grad():
            return backbone(normalize(x.to(device))).cpu()

    return embed


def _augmenter_name(cfg: DictConfig, splits: TensorSplits) -> str:
    name = cfg.augmenter.name
    if name == "auto":
        return "sample_pairing" if splits.is_image else "extrapolation"
    return name


def run(cfg: DictConfig, run_dir: str | Path, splits: TensorSplits | None = None) -> dict[str, Any]:
    """Run ``cfg.method`` and write ``results.json`` into ``run_dir``; returns the results.

    ``splits``: the dataset, if the caller already loaded and checked it against ``cfg``.
    """
    run_dir = Path(run_dir)
    if splits is None:
        validate_config(cfg)
        splits = load_dataset(cfg.dataset, cfg.seed, run_dir)
        validate_against_data(cfg, splits)
    _check_checkpoints(cfg, run_dir)
    c = splits.num_classes
    results: dict[str, Any] = {"method": cfg.method, "dataset": cfg.dataset.name, "model": cfg.model.name,
                               "seed": cfg.seed, "selected_classes": [], "theta": None}

    if cfg.method == "baseline":
        _say(f"baseline: {cfg.trainer.max_epochs} epochs, loss={cfg.loss.name}")
        identity = torch.arange(c)
        module, seconds, accuracy = _fit(cfg, splits, identity, build_loss(cfg.loss.name), "baseline", run_dir,
                                         cfg.trainer.max_epochs)
        results.update(subclass_to_class=identity.tolist(), test=module.test_results, val=module.val_results,
                       train_seconds=seconds,
                       epoch_test_acc={"baseline": accuracy})
    else:
        results.update(_run_sdnn(cfg, splits, run_dir))

    results["class_names"] = splits.names()
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    results["data_skipped"] = {"count": len(splits.skipped), "items": list(splits.skipped)}
    if rank_zero_only.rank == 0:
        path = write_results(run_dir, results)
        _publish_summary(cfg, run_dir, results, splits.names())
        _say(format_summary(results, splits.names()))
        if splits.skipped:
            _say(f"data: {len(splits.skipped)} damaged file(s) were skipped (dataset.on_corrupt=skip), "
                 f"e.g. {splits.skipped[0]}; all listed in results.json under data_skipped")
        _say(f"results: {path}")
    return results


def _phase1_figures(run_dir: Path, phase1: dict, theta, selected: list[int], names: list[str]) -> dict[str, Any]:
    """Fig. 1 (θ_i and test CCR_i per epoch), Fig. 2 (the three norms over steps) and final θ
    against the phase-1 network's per-class test error, with Spearman's ρ."""
    from sdnn.plots import plot_gradient_norms, plot_neglect_and_accuracy, plot_neglect_vs_error, theta_from_history

    figures = {}
    epochs, theta_per_window = theta_from_history(phase1["history"])
    accuracy = np.array([a["per_class_acc"] for a in phase1["accuracy"]], dtype=float) if phase1["accuracy"] else None
    if accuracy is not None and len(accuracy) != len(theta_per_window):
        accuracy = None  # windows are not epochs (phase1.tau set): plot θ alone
    figures["fig1_neglect_and_accuracy"] = plot_neglect_and_accuracy(
        theta_per_window, accuracy, names, run_dir / "fig1_neglect_and_accuracy.png", epochs=epochs)
    norms = phase1.get("norms")
    if norms is not None and len(norms["steps"]):
        atomic_savez(run_dir / "gradient_norms.npz", norms)
        figures["fig2_gradient_norms"] = plot_gradient_norms(
            norms["steps"], {k: norms[k] for k in ("delta", "delta_hat", "delta_tilde")}, names,
            run_dir / "fig2_gradient_norms.png")
    out: dict[str, Any] = {"figures": {k: v.name for k, v in figures.items()}}
    if (phase1.get("test") or {}).get("per_class_acc"):  # multiclass: θ against the per-class test error
        error = 1.0 - np.asarray(phase1["test"]["per_class_acc"], dtype=float)
        path, rho = plot_neglect_vs_error(np.asarray(theta, dtype=float), error, names,
                                          run_dir / "neglect_vs_error.png", selected=selected)
        out["figures"]["neglect_vs_error"] = path.name
        out["neglect_vs_error"] = {"spearman": None if math.isnan(rho) else rho,
                                   "error_of": "phase-1 network, test split"}
    return out


def _publish_summary(cfg: DictConfig, run_dir: Path, results: dict[str, Any], names: list[str]) -> None:
    """Figures, the subclass table and the artifacts to W&B or TensorBoard (CSV: files only)."""
    target = cfg.logger.get("_target_") if cfg.get("logger") else None
    if not target or not (target.endswith("WandbLogger") or target.endswith("TensorBoardLogger")):
        return
    figures = {k: run_dir / v for k, v in (results.get("figures") or {}).items()}
    sizes = results.get("subclass_sizes") or {}
    theta = results.get("theta") or [None] * len(names)
    per_class = results["test"].get("per_class_acc")
    rows = [[i, names[i], theta[i], "/".join(map(str, sizes.get(str(i), [])))] + ([per_class[i]] if per_class else [])
            for i in results.get("selected_classes") or []]
    header = ["class", "name", "theta", "subclass sizes"] + (["test acc"] if per_class else [])
    table = (header, rows) if rows else None
    artifacts = {}
    if results.get("method") == "sdnn":
        artifacts["subclass-map"] = ("subclass_map", [run_dir / "subclasses.json", run_dir / "partition.npz"])
        cache_dir = (results.get("phase1") or {}).get("cache_dir")
        if cache_dir:
            artifacts[f"phase1-{Path(cache_dir).name}"] = ("phase1", [Path(cache_dir) / f for f in
                                                                     ("theta.json", "meta.json", "norms.npz")])
    publish(_logger(cfg, run_dir, "summary"), figures, table, artifacts)


def _checkpoint_plan(cfg: DictConfig, run_dir: Path, phase: str) -> CheckpointPlan:
    checkpoint = cfg.get("checkpoint") or {}
    return CheckpointPlan(run_dir, phase, OmegaConf.to_container(cfg, resolve=True),
                          checkpoint.get("every_n_epochs", 1), checkpoint.get("resume", True))


def _check_checkpoints(cfg: DictConfig, run_dir: Path) -> None:
    """Before any work: a checkpoint of another configuration in this run folder is an error now,
    not after phase 1."""
    for phase in ("baseline",) if cfg.method == "baseline" else ("phase1", "phase2"):
        _checkpoint_plan(cfg, run_dir, phase).resume_path()


def _short(items, limit: int = 12) -> str:
    """A list or dict for a progress line, cut after ``limit`` entries (YT8M selects 386 classes)."""
    if isinstance(items, dict):
        parts = [f"{k}: {v}" for k, v in items.items()]
        opening, closing = "{", "}"
    else:
        parts = [str(v) for v in items]
        opening, closing = "[", "]"
    more = f", … ({len(parts)} in all)" if len(parts) > limit else ""
    return opening + ", ".join(parts[:limit]) + more + closing


def _partition_once(cfg: DictConfig, cache: Phase1Cache, settings: dict, cacheable: bool, recipe_type, compute,
                    classes: list[int]):
    """The partition recipe: from the phase-1 cache, or computed by rank 0 and broadcast to the others."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    use_cache = cfg.phase1.use_cache and cacheable
    rep = None
    if not distributed or torch.distributed.get_rank() == 0:
        arrays = cache.load_partition(settings) if use_cache else None
        if arrays is not None:
            rep = recipe_type.from_arrays(arrays)
            _say(f"partition: reusing cached subclasses of classes {_short(classes)}")
        else:
            rep = compute()
            if use_cache:
                cache.save_partition(settings, rep.to_arrays())
    if distributed:
        shared = [rep.to_arrays() if torch.distributed.get_rank() == 0 else None]
        torch.distributed.broadcast_object_list(shared, src=0)
        rep = recipe_type.from_arrays(shared[0])
    return rep


def _training_videos(cfg: DictConfig, data: YT8MData):
    """Every training video once, in a fixed order, as ``(x, multi-hot y, ids)`` batches (the two
    passes of Algorithm 1 read this; run by one process, with the DataLoader's workers)."""
    stream = data.stream("train", train=False, batch_size=4 * cfg.dataset.batch_size, with_ids=True)
    stream.place(0, 1)
    yield from _progress(cfg, data.loader(stream), stream.total, "partition: reading training videos")


def _progress(cfg: DictConfig, batches, total: int, description: str):
    """Batches with a rich progress bar in videos and videos/s (rank 0, on a terminal)."""
    if rank_zero_only.rank != 0 or not cfg.trainer.get("enable_progress_bar", True):
        yield from batches
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class VideosPerSecond(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.0f} videos/s" if task.speed else "")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), VideosPerSecond(),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for batch in batches:
            yield batch
            progress.advance(task, len(batch[0]))


def _run_sdnn(cfg: DictConfig, splits: TensorSplits, run_dir: Path) -> dict[str, Any]:
    c = splits.num_classes
    sub = cfg.subclass
    cache = _phase1_cache(cfg)
    fixed = sub.classes is not None
    phase1 = None
    if not fixed or cfg.partitioner.space == "features":
        phase1 = run_phase1(cfg, splits, run_dir, cache)
    out: dict[str, Any] = {}
    if phase1 is not None:
        theta, complete = last_window_theta(phase1["history"])
        if not complete:
            _say(f"note: phase 1 ({cfg.phase1.epochs} epochs) is shorter than one window of τ steps; "
                 "selecting from the partial window")
        out["theta"] = nan_to_none(theta)
        out["theta_history"] = [{**w, "theta": nan_to_none(w["theta"])} for w in phase1["history"]]
        if phase1["cached"]:
            origin = f"cached in {cache.dir}"
        else:
            origin = f"trained, cached in {cache.dir}" if cfg.phase1.use_cache else "trained (phase1.use_cache=false)"
        out["phase1"] = {"cached": phase1["cached"], "seconds": phase1["seconds"], "cache_dir": str(cache.dir),
                         "origin": origin, "selected_from_complete_window": complete}
    else:
        out["phase1"] = {"cached": False, "seconds": 0.0, "origin": "skipped (fixed subclass.classes)"}
    if fixed:
        classes = sorted(int(k) for k in sub.classes)
    else:
        k = sub.num_classes_to_repartition
        try:
            classes = select_classes(theta, k)
        except ValueError as exc:
            raise ConfigError(f"subclass.num_classes_to_repartition={k}: {exc} (phase 1 saw too few classes; "
                              "raise phase1.epochs)") from exc
    streamed = isinstance(splits, YT8MData)
    if not streamed:
        too_small = [cls for cls in classes if int((splits.y_train == cls).sum()) < sub.per_class]
        if too_small:
            raise ConfigError(f"subclass.per_class={sub.per_class}: class(es) {too_small} have fewer training samples")

    augmenter = _augmenter_name(cfg, splits)
    lam = cfg.augmenter.get("lam", 0.5)
    settings = {"classes": classes, "per_class": sub.per_class, "partitioner": cfg.partitioner.name,
                "space": cfg.partitioner.space, "augmenter": augmenter, "lam": lam, "seed": cfg.seed,
                "n_train": splits.stream("train", train=False).total if streamed else len(splits.x_train)}
    if streamed:  # a copy of a video takes the anchor of its most neglected selected class
        priority = classes if fixed else sorted(classes, key=lambda i: -theta[i])
        settings["priority"] = list(priority)

    def compute():
        _say(f"partition: {augmenter} + {cfg.partitioner.name} ({cfg.partitioner.space} space) "
             f"into {sub.per_class} subclasses for {len(classes)} class(es) {_short(classes)}")
        embed = _embedder(cfg, splits, phase1["state"] if phase1 else None)
        if streamed:
            try:
                return stream_repartition(lambda: _training_videos(cfg, splits), classes, sub.per_class,
                                          cfg.partitioner.name, augmenter, embed, seed=cfg.seed, lam=lam,
                                          num_classes=c, priority=priority)
            except ValueError as exc:  # a selected class without training videos
                raise ConfigError(f"subclass selection: {exc}; choose other classes (subclass.classes)") from exc
        with _status(cfg, f"partitioning: {cfg.partitioner.name} on classes {classes}"):
            return repartition(splits.x_train, splits.y_train, classes, sub.per_class, cfg.partitioner.name,
                               augmenter, embed, seed=cfg.seed, lam=lam)

    start = time.perf_counter()
    recipe_type = VideoSubclasses if streamed else Repartition
    rep = _partition_once(cfg, cache, settings, phase1 is not None, recipe_type, compute, classes)
    partition_seconds = time.perf_counter() - start
    sizes = rep.subclass_sizes() if streamed else rep.subclass_sizes(splits.y_train)
    _say(f"partition: {partition_seconds:.1f} s; subclass sizes {_short(sizes)}")
    too_small = [cls for cls, counts in sizes.items() if min(counts) == 0]
    if too_small:
        raise ConfigError(f"subclass.per_class={sub.per_class}: class(es) {_short(too_small)} have fewer training "
                          "videos than subclasses; lower subclass.per_class or choose other classes")
    if rank_zero_only.rank == 0:
        atomic_write_json(run_dir / "subclasses.json", {"settings": settings, "subclass_sizes": sizes})

    s2c = build_subclass_to_class(c, rep.subclasses_per_class())
    loss = build_loss(cfg.loss.name, s2c, sub.sibling_weight)
    if streamed:
        _say(f"phase 2: subclass training, {cfg.trainer.max_epochs} epochs, S={len(s2c)} output units "
             f"({augmenter}: one added copy per training video of a selected class, sibling weight "
             f"{sub.sibling_weight})")
        module, seconds, accuracy = _fit(cfg, splits, s2c, loss, "phase2", run_dir, cfg.trainer.max_epochs,
                                         recipe=rep.prepare())
    else:
        x2, y2, numbers = rep.apply(splits.x_train, splits.y_train)
        targets = subclass_targets(y2, numbers, s2c)
        _say(f"phase 2: subclass training, {cfg.trainer.max_epochs} epochs, S={len(s2c)} output units "
             f"({len(x2)} training samples, sibling weight {sub.sibling_weight})")
        module, seconds, accuracy = _fit(cfg, splits, s2c, loss, "phase2", run_dir, cfg.trainer.max_epochs,
                                         x=x2, targets=targets)
    out["epoch_test_acc"] = {"phase1": phase1["accuracy"] if phase1 else [], "phase2": accuracy}
    if rank_zero_only.rank == 0:
        atomic_savez(run_dir / "partition.npz", rep.to_arrays())  # for a stream: the subclass of each video id
        if phase1 is not None and cfg.observe.figures:
            out.update(_phase1_figures(run_dir, phase1, theta, classes, splits.names()))
    out.update(selected_classes=classes, subclass_to_class=s2c.tolist(), test=module.test_results,
               val=module.val_results,
               train_seconds=seconds, subclass_sizes={str(k): v for k, v in sizes.items()},
               partition_seconds=partition_seconds, augmenter=augmenter)
    return out
