"""From a composed configuration to a finished run: the typed parts (``Job``), the checks that need
the data, the recipe (``sdnn.pipeline``), the trained model (``model/``, ``sdnn.artifact``),
``results.json``, the summary and the dashboards.

``run.py`` calls :func:`run` with what ``sdnn.checks.prepare`` checked before Lightning was
imported; ``sdnn.study`` and the tests call ``run(cfg, run_dir)``, which prepares itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.artifact import ModelCard, head_spec, model_weights, save_model
from sdnn.cache import Phase1Cache
from sdnn.checks import Checked, prepare
from sdnn.config import Settings, instantiate_part
from sdnn.data.module import data_module
from sdnn.errors import Interrupted
from sdnn.lit.loggers import LoggerFactory
from sdnn.lit.module import ModelSpec
from sdnn.lit.progress import PHASE_TITLES, Console
from sdnn.lit.trainer import Training
from sdnn.job import Job
from sdnn.pipeline import PHASES
from sdnn.pipeline import run as run_recipe
from sdnn.results import Results, format_summary
from sdnn.runlog import quiet


def run(cfg: DictConfig, run_dir: str | Path, checked: Checked | None = None) -> Results:
    """Run ``cfg.method`` and write ``results.json`` into ``run_dir``; returns the results.
    ``checked``: the configuration already checked against its data (``sdnn.checks.prepare``)."""
    quiet()  # as the CLI: also for sdnn.study and in-process runs
    run_dir = Path(run_dir)
    job = assemble(cfg, checked or prepare(cfg, run_dir), run_dir)
    for phase in PHASES[job.method]:
        job.training.checkpoints(phase).resume_path()  # another configuration's checkpoint: an error now
    try:
        results = run_recipe(job)
    except KeyboardInterrupt:
        raise Interrupted(saved(job)) from None
    if rank_zero_only.rank == 0:
        keep_model(job, results)
        path = results.write(run_dir)
        job.training.loggers.publish_results(results)
        job.say(format_summary(results))
        skipped = results.data_skipped["items"]
        if skipped:
            job.say(f"data: {len(skipped)} damaged file(s) were skipped (dataset.on_corrupt=skip), "
                    f"e.g. {skipped[0]}; all listed in results.json under data_skipped")
        job.say(f"results: {path}")
    return results


def keep_model(job: Job, results: Results) -> Path:
    """``run_dir/model/``: the network the recipe trained last, its card and preprocessing (any method)."""
    if results.module is None:
        raise RuntimeError(f"method={results.method}: the recipe returned no trained network to keep in model/")
    data, config, module = job.data, job.config, results.module
    head = head_spec(module.head)
    # the loss the network trained with says how its outputs become scores (eq. 11 has no flag: its class loss's)
    sigmoid = head is None and getattr(module.loss_fn, "multilabel", getattr(job.loss, "multilabel", False))
    card = ModelCard(method=results.method, dataset=results.dataset, model=results.model, seed=results.seed,
                     num_classes=data.num_classes, multilabel=data.multilabel, class_names=list(data.names()),
                     subclass_to_class=list(results.subclass_to_class),
                     score="sigmoid" if sigmoid else "softmax", head=head,
                     preprocessing=data.preprocessing(), backbone=config["model"]["backbone"],
                     eval_batch_size=4 * data.batch_size,
                     precision=str(config["trainer"].get("precision", "32-true")), config=config,
                     launch_dir=os.getcwd())
    return save_model(job.run_dir, card, model_weights(module))


def assemble(cfg: DictConfig, checked: Checked, run_dir: Path) -> Job:
    """The typed parts of one run."""
    settings = checked.settings
    bars = bool(cfg.trainer.get("enable_progress_bar", True))
    data = data_module(checked.source, checked.loaded, progress=bars)
    perf = settings.performance
    model = ModelSpec(backbone=checked.backbone, optimizer=instantiate_part("optim", cfg.optim),
                      scheduler=instantiate_part("scheduler", cfg.scheduler), channels_last=perf.channels_last, compile=perf.compile, compile_backend=perf.compile_backend)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    training = Training(run_dir=run_dir, seed=settings.seed, trainer=config["trainer"],
                        loggers=LoggerFactory(config.get("logger"), run_dir, config), config=config,
                        checkpoint_every=settings.checkpoint.every_n_epochs, resume=settings.checkpoint.resume,
                        per_class_test_acc=settings.observe.per_class_test_acc, console=Console(bars))
    return Job(method=settings.method, seed=settings.seed, run_dir=run_dir, data=data, model=model, loss=checked.loss,
               partitioner=settings.partitioner, augmenter=checked.augmenter, phase1=settings.phase1,
               subclass=settings.subclass, observe=settings.observe, training=training,
               cache=phase1_cache(config, settings), labels={"model": str(cfg.model.name), "loss": str(cfg.loss.name)},
               config=config, class2str=settings.class2str)


def saved(job: Job) -> str:
    """What an interrupted run leaves to resume from: phase 1 in the cache, each phase's last checkpoint."""
    parts = []
    for phase in PHASES[job.method]:
        title = PHASE_TITLES.get(phase, phase)
        if phase == "phase1" and job.phase1.use_cache and job.cache.has_phase1():
            parts.append(f"{title} — complete, in the phase-1 cache {job.cache.dir}")
            continue
        plan = job.training.checkpoints(phase)
        if not (plan.enabled and plan.last.is_file()):
            continue
        epochs = f"{job.phase1.epochs:g}" if phase == "phase1" else job.training.max_epochs
        try:  # mmap: reads the epoch, not the weights
            epoch = int(torch.load(plan.last, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
            parts.append(f"{title} — epoch {epoch} of {epochs}, in {plan.last}")
        except Exception:  # noqa: BLE001 — a damaged file is named, not trusted; resuming says what is wrong
            parts.append(f"{title} — {plan.last} (unreadable)")
    if parts:
        return "Saved:\n" + "\n".join(f"  {part}" for part in parts)
    if job.training.checkpoint_every == 0:
        return "Nothing was saved (checkpoint.every_n_epochs=0)."
    return "Nothing was saved yet (no epoch had finished)."


def phase1_cache(config: dict[str, Any], settings: Settings) -> Phase1Cache:
    """The phase-1 entry: keyed by everything that changes phase 1 (SPEC §5)."""
    trainer = config["trainer"]
    key = {
        "dataset": config["dataset"], "model": config["model"], "optim": config["optim"],
        "scheduler": config["scheduler"],
        "phase1": {"epochs": settings.phase1.epochs, "tau": settings.phase1.tau},
        "seed": settings.seed,
        "precision": str(trainer.get("precision", "32-true")),
        # dataset.batch_size is per process: another world size is another phase 1
        "world": [str(trainer.get("devices", 1)), int(trainer.get("num_nodes", 1) or 1)],
        "performance": config["performance"],
    }
    return Phase1Cache(settings.phase1.cache_dir, key)
