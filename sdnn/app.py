"""A built run (``Job``, ``sdnn.build``) to a finished one: the recipe (``sdnn.pipeline``), the trained model
(``model/``, ``sdnn.artifact``), ``results.json``, the summary and the dashboards.

``run.py`` calls :func:`run` with the ``Job`` it built; ``sdnn.study`` and the tests call
``run(cfg, run_dir)``, which builds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.artifact import ModelCard, head_spec, model_weights, save_model
from sdnn.build import build_job, config_snapshot
from sdnn.config import validate_config
from sdnn.errors import DiskError, Interrupted, disk_error
from sdnn.job import Job
from sdnn.lit.progress import PHASE_TITLES
from sdnn.lit.resume import config_fingerprint
from sdnn.recipes import RECIPES
from sdnn.recipes import run as run_recipe
from sdnn.results import Results, format_summary
from sdnn.runfolder import claimed
from sdnn.runlog import quiet


def run(cfg: DictConfig | None, run_dir: str | Path, job: Job | None = None) -> Results:
    """Run the configured method and write ``results.json`` into ``run_dir``; returns the results.
    ``job``: the run already built (``sdnn.build.build_job``); else it is built from ``cfg``. The run holds
    its folder while it runs (``sdnn.runfolder``: another run's folder, or a second process, is refused)."""
    quiet()  # as the CLI: also for sdnn.study and in-process runs
    run_dir = Path(run_dir)
    if job is None:
        settings = validate_config(cfg)
        with claimed(run_dir, config_snapshot(cfg), settings.checkpoint.resume, settings.overwrite):
            return _run(run_dir, build_job(cfg, run_dir, settings))
    with claimed(run_dir, job.config, job.settings.checkpoint.resume, job.settings.overwrite):
        return _run(run_dir, job)


def _run(run_dir: Path, job: Job) -> Results:
    finished = finished_run(job)
    if finished is not None:
        job.say(f"{run_dir}: this run is complete (results.json, written with the same configuration); nothing "
                "to train (checkpoint.resume=false trains it again). Its summary:")
        job.say(format_summary(finished))
        job.say(f"results: {run_dir / 'results.json'}")
        return finished
    for phase in RECIPES[job.method].phases:
        job.training.checkpoints(phase).resume_path()  # another configuration's checkpoint: an error now
    try:
        results = run_recipe(job)
        if rank_zero_only.rank == 0:
            if job.settings.checkpoint.save_model:
                keep_model(job, results)
            path = results.write(run_dir)
    except KeyboardInterrupt:
        raise Interrupted(saved(job)) from None
    except (OSError, DiskError) as exc:  # a full or read-only disk: name the file and what is kept
        disk = disk_error(exc)
        if disk is None:
            raise
        raise disk_stop(job, disk) from None
    if rank_zero_only.rank == 0:
        job.training.loggers.publish_results(results)
        job.say(format_summary(results))
        skipped = results.data_skipped["items"]
        if skipped:
            job.say(f"data: {len(skipped)} damaged file(s) were skipped (dataset.on_corrupt=skip), "
                    f"e.g. {skipped[0]}; all listed in results.json under data_skipped")
        job.say(f"results: {path}")
    return results


def finished_run(job: Job) -> Results | None:
    """The results of this run folder when it finished with the same configuration (its ``results.json`` and
    the run's fingerprint agree: ``sdnn.lit.resume``), unless ``checkpoint.resume=false`` asks to start over."""
    path = job.run_dir / "results.json"
    if job.settings.checkpoint.resume == "false" or not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        same = config_fingerprint(payload.get("config") or {}) == config_fingerprint(job.config)
        return Results.from_json(payload) if same else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # damaged: the run is trained again
        return None


def keep_model(job: Job, results: Results) -> Path:
    """``run_dir/model/``: the network the recipe trained last, its card and preprocessing (any method)."""
    if results.module is None:
        raise RuntimeError(f"method={results.method}: the recipe returned no trained network to keep in model/")
    data, module = job.data, results.module
    head = head_spec(module.head)
    # the loss the network trained with says how its outputs become scores (eq. 11 has no flag: its class loss's)
    sigmoid = head is None and getattr(module.loss_fn, "multilabel", getattr(job.loss, "multilabel", False))
    card = ModelCard(method=results.method, dataset=results.dataset, model=results.model, seed=results.seed,
                     num_classes=data.num_classes, multilabel=data.multilabel, class_names=list(data.names()),
                     subclass_to_class=list(results.subclass_to_class),
                     score="sigmoid" if sigmoid else "softmax", head=head,
                     preprocessing=data.preprocessing(), backbone=job.backbone_config,
                     eval_batch_size=4 * data.batch_size, precision=job.settings.trainer.precision,
                     config=job.config, launch_dir=os.getcwd())
    return save_model(job.run_dir, card, model_weights(module))


def disk_stop(job: Job, disk: DiskError) -> DiskError:
    """The one line for a file the run could not write: the file, the reason, what is on disk to resume
    from (``saved``) and what the same command then does."""
    kept = saved(job).replace(":\n  ", ": ").replace("\n  ", "; ")
    kept = kept if kept.endswith(".") else kept + "."
    again = "resumes from what was saved" if kept.startswith("Saved") else "starts the run over"
    return DiskError(f"cannot write {disk.where or 'a file of the run'} ({disk.reason or 'write failed'}). {kept} "
                     f"Free space or make the folder writable (or choose another hydra.run.dir), then run the same "
                     f"command again: it {again}.")


def saved(job: Job) -> str:
    """What an interrupted run leaves to resume from: phase 1 in the cache, each phase's last checkpoint."""
    parts = []
    for phase in RECIPES[job.method].phases:
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
    if job.training.checkpoint.every_n_epochs == 0:
        return "Nothing was saved (checkpoint.every_n_epochs=0)."
    return "Nothing was saved yet (no epoch had finished)."
