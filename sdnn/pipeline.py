"""The paper's recipe (SPEC §5) over a typed ``Job`` (``sdnn.build``): phase 1 (θ, cached) → select (eq. 10) →
augment and split (cached) → phase 2 (a fresh network with S units, eq. 11) → class-level test metrics; the
baseline (the same network, its loss, the full schedule); the controls and Class2Str."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from sdnn.assess import assess
from sdnn.cache import atomic_savez, atomic_write_json
from sdnn.class2str import from_settings
from sdnn.errors import ConfigError
from sdnn.figures import hierarchy_keys, phase1_keys
from sdnn.job import Job
from sdnn.lit import NeglectCallback
from sdnn.lit.module import embedder
from sdnn.lit.progress import short
from sdnn.lit.trainer import train_phase
from sdnn.losses import SigmoidCrossEntropy
from sdnn.neglect import last_window_theta
from sdnn.repartition import Partition, select_classes
from sdnn.results import Phase1Result, Results, Selection, nan_to_none


def baseline(job: Job) -> Results:
    """The plain network, its loss, the full schedule."""
    job.say(f"baseline: {job.training.max_epochs} epochs, loss={job.settings.loss_name}")
    identity = torch.arange(job.data.num_classes)
    result = train_phase("baseline", job.data, lambda: job.model.build(job.data, identity, job.loss),
                         job.training.max_epochs, job.training)
    return job.results(identity, result, {"baseline": result.epoch_test_acc})


def sdnn(job: Job) -> Results:
    """Phase 1 → selection → partition → phase 2 (SPEC §5)."""
    sub, data = job.subclass, job.data
    phase1 = run_phase1(job) if sub.classes is None or job.partitioner.space == "features" else None
    selection = select(job, phase1)
    data.check_split(selection.classes, sub.per_class)
    start = time.perf_counter()
    partition, settings = partition_once(job, selection, phase1)
    partition_seconds = time.perf_counter() - start
    sizes = partition.subclass_sizes()
    job.say(f"partition: {partition_seconds:.1f} s; subclass sizes {short(sizes)}")
    too_small = [cls for cls, counts in sizes.items() if min(counts) == 0]
    if too_small:
        raise ConfigError(f"subclass.per_class={sub.per_class}: class(es) {short(too_small)} have fewer training "
                          "observations than subclasses; lower subclass.per_class or choose other classes")
    quality = data.partition_quality(partition)
    if quality is not None:
        job.say(f"partition quality against the fine labels: mean NMI {quality['nmi']:.3f}, ARI {quality['ari']:.3f}")
    indicators = assess(job, selection, partition, phase1)
    if rank_zero_only.rank == 0:
        atomic_write_json(job.run_dir / "subclasses.json", {"settings": settings, "subclass_sizes": sizes})
    s2c = data.subclass_to_class(partition)
    loss = job.loss.for_subclasses(s2c, sub.sibling_weight)
    phase2 = data.for_phase2(partition)
    job.say(f"phase 2: subclass training, {job.training.max_epochs} epochs, S={len(s2c)} output units "
            f"({phase2.describe_training()}, sibling weight {sub.sibling_weight})")
    result = train_phase("phase2", phase2, lambda: job.model.build(phase2, s2c, loss), job.training.max_epochs,
                         job.training)
    if rank_zero_only.rank == 0:
        atomic_savez(job.run_dir / "partition.npz", partition.to_arrays())  # a stream: the subclass of each video id
    extra = phase1_keys(job, phase1, selection)
    epochs = {"phase1": phase1.epoch_test_acc if phase1 else [], "phase2": result.epoch_test_acc}
    return job.results(s2c, result, epochs, subclass_sizes={str(k): v for k, v in sizes.items()},
                       partition_seconds=partition_seconds, augmenter=job.augmenter.name, partition_quality=quality,
                       split_indicators=indicators, **extra)


def reweight(job: Job) -> Results:
    """The control "emphasis without a split" (SPEC §7b): SDNN's selection, then eq. 3 with the selected
    classes' positive term × H; its split indicators are those of SDNN's split of the same classes."""
    phase1 = run_phase1(job) if job.subclass.classes is None else None
    selection = select(job, phase1)
    indicators = assess(job, selection, partition_once(job, selection, phase1)[0], phase1) \
        if job.observe.split_indicators else None
    identity = torch.arange(job.data.num_classes)
    weights = torch.ones(job.data.num_classes)
    weights[selection.classes] = float(job.subclass.per_class)
    loss = job.loss.reweighted(weights)
    job.say(f"reweight: {job.training.max_epochs} epochs, eq. 3 with the positive term of class(es) "
            f"{short(selection.classes)} weighted by H={job.subclass.per_class}")
    result = train_phase("reweight", job.data, lambda: job.model.build(job.data, identity, loss),
                         job.training.max_epochs, job.training)
    epochs = {"phase1": phase1.epoch_test_acc if phase1 else [], "reweight": result.epoch_test_acc}
    return job.results(identity, result, epochs, positive_weight=weights.tolist(), split_indicators=indicators,
                       **phase1_keys(job, phase1, selection))


def class2str(job: Job) -> Results:
    """Class2Str (sdnn.class2str): stage 1 is phase 1 (eq. 3; cached, shared with SDNN runs), stage 2 the
    phase-1 backbone under a latent-hierarchy classifier, all fine-tuned with the Class2Str loss."""
    phase1, identity = run_phase1(job), torch.arange(job.data.num_classes)
    head, loss, optimizer = from_settings(job.class2str, job.data.num_classes)
    model = replace(job.model, optimizer=optimizer or job.model.optimizer)
    job.say(f"class2str: the phase-1 backbone with a latent-hierarchy classifier, {job.training.max_epochs} epochs")
    result = train_phase("class2str", job.data, lambda: model.build(job.data, identity, loss, head, phase1.state),
                         job.training.max_epochs, job.training)
    return job.results(identity, result, {"phase1": phase1.epoch_test_acc, "class2str": result.epoch_test_acc},
                       phase1=phase1.summary(), **hierarchy_keys(job, result.module.head))


def run_phase1(job: Job) -> Phase1Result:
    """θ history and phase-1 weights, from the cache when the same phase 1 was run before."""
    if job.shared_phase1 is not None:
        return job.shared_phase1
    cache, use_cache, data = job.cache, job.phase1.use_cache, job.data
    absent = not (use_cache and cache.has_phase1())
    cached = cache.load_phase1() if use_cache else None  # None: not there, or damaged (said so; computed again)
    if cached is not None:
        return _reused(job, *cached)
    # Only rank 0 locks: under DDP the other ranks start from rank 0's fit and must train with it.
    with cache.lock() if use_cache and rank_zero_only.rank == 0 else contextlib.nullcontext():
        if use_cache and absent and cache.has_phase1():  # another run finished it while we waited
            cached = cache.load_phase1()
            if cached is not None:
                return _reused(job, *cached)
        job.say(f"phase 1: neglect scores, {job.phase1.epochs:g} epoch(s) with the sigmoid CE (eq. 3)")
        neglect = NeglectCallback(data.num_classes, tau=job.phase1.tau, norms_every=job.observe.norms_every)
        identity = torch.arange(data.num_classes)
        result = train_phase("phase1", data, lambda: job.model.build(data, identity, SigmoidCrossEntropy()),
                             job.phase1.epochs, job.training, callbacks=[neglect])
        state = {k: v.cpu() for k, v in result.module.state_dict().items()}
        norms = neglect.norm_history() if job.observe.norms_every else None
        origin = f"trained, cached in {cache.dir}" if use_cache else "trained (phase1.use_cache=false)"
        if use_cache and rank_zero_only.rank == 0 and not cache.save_phase1(  # False (warned) if it cannot be written
                neglect.history, state, {"seconds": result.seconds, "test": result.test,
                                         "accuracy": result.epoch_test_acc}, norms):
            origin = f"trained (not cached: {cache.unwritable})"
        return Phase1Result(neglect.history, state, False, result.seconds, result.test, result.epoch_test_acc,
                            norms, str(cache.dir), origin)


def _reused(job: Job, history, state, meta, norms) -> Phase1Result:  # a cached phase 1
    job.say(f"phase 1: reusing cached θ and weights from {job.cache.dir} (skipping phase-1 training)")
    return Phase1Result(history, state, True, meta["seconds"], meta.get("test"), meta.get("accuracy", []), norms,
                        str(job.cache.dir), f"cached in {job.cache.dir}")


def select(job: Job, phase1: Phase1Result | None) -> Selection:
    """Eq. 10 on the last complete window's θ (k largest), or the fixed ``subclass.classes``."""
    fixed = job.subclass.classes
    if phase1 is None:
        return Selection(sorted(fixed), sorted(fixed))
    theta, complete = last_window_theta(phase1.history)
    if not complete:
        job.say(f"note: phase 1 ({job.phase1.epochs:g} epochs) is shorter than one window of τ steps; "
                "selecting from the partial window")
    if fixed is not None:
        classes = priority = sorted(fixed)
    else:
        k = job.subclass.num_classes_to_repartition
        try:
            classes = select_classes(theta, k)
        except ValueError as exc:
            raise ConfigError(f"subclass.num_classes_to_repartition={k}: {exc} (phase 1 saw too few classes; "
                              "raise phase1.epochs)") from exc
        priority = sorted(classes, key=lambda i: -theta[i])
    return Selection(classes, priority, nan_to_none(theta), complete)


def partition_once(job: Job, selection: Selection, phase1: Phase1Result | None) -> tuple[Partition, dict]:
    """The partition: from the phase-1 cache, or computed by rank 0 and broadcast to the other ranks."""
    part, aug, data, per_class = job.partitioner, job.augmenter, job.data, job.subclass.per_class
    settings = {"classes": selection.classes, "per_class": per_class, "partitioner": part.name, "space": part.space,
                "augmenter": aug.name, "lam": aug.lam, "seed": job.seed,
                **data.partition_settings(selection)}
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    use_cache = job.phase1.use_cache and phase1 is not None
    partition = None
    if not distributed or torch.distributed.get_rank() == 0:
        partition = job.cache.load_partition(settings, data.partition_from_arrays) if use_cache else None
        if partition is not None:
            job.say(f"partition: reusing cached subclasses of classes {short(selection.classes)}")
        else:
            job.say(f"partition: {aug.name} + {part.name} ({part.space} space) into {per_class} subclasses for "
                    f"{len(selection.classes)} class(es) {short(selection.classes)}")
            backbone = job.model.trained_backbone(data.input_shape, phase1.state) if part.space == "features" else None
            partition = data.partition(selection, per_class, part, aug, embedder(data.input_pipeline(), backbone))
            if use_cache:
                job.cache.save_partition(settings, partition.to_arrays())
    if distributed:
        shared = [partition.to_arrays() if torch.distributed.get_rank() == 0 else None]
        torch.distributed.broadcast_object_list(shared, src=0)
        partition = data.partition_from_arrays(shared[0])
    return partition, settings
