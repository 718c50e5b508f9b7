"""``python -m sdnn.study``: does SDNN help here, more than its controls, and does θ find the weak classes?

Runs the baseline and SDNN under one schedule for several seeds (and, with ``--variants``, the paper's
ablations, the questions it leaves open, the controls — a random split, ``method=reweight`` — and other
methods such as the comparison losses), then writes the comparison into ``--out`` (default
``studies/<name>``):

* ``study.md`` / ``study.json``: what ran (the composed settings of the first seed's baseline, the data as
  loaded), then per variant the mean ± std test (and validation) accuracy, the paired difference to the
  baseline of the same seed, for every seed, and how many seeds SDNN won; the per-class accuracy change of
  the selected classes against the others; Spearman's ρ between phase-1 θ and the baseline's per-class test
  error (the paper's claim that θ, measured early, ranks classes by their eventual error); with merged or
  coarse classes, the NMI of the subclasses against the fine labels (results.json ``partition_quality``);
* ``study.png``: the paired differences per variant.

The named studies are the catalogue in ``conf/study/`` (``sdnn.catalogue``); ``--on <overrides>`` runs the
same study, with its controls, on any data and model a run accepts. ``python -m sdnn.study map DIR ...
--out OUT`` puts several finished studies (regimes: model capacity × class structure) into one table.

Every run is an ordinary run of the pipeline in ``<out>/runs/<variant folder>/seed<k>/`` (``results.json``
as always), and phase 1 is shared through the phase-1 cache. Every run's configuration is composed and
checked before the first one trains. A study that was interrupted continues where it stopped: finished
runs are not run again (a finished run of other settings is an error, not reused).

    python -m sdnn.study digits                      # the main comparison, 5 seeds
    python -m sdnn.study digits --variants all       # + ablations (k, partitioner, sibling weight, ...)
    python -m sdnn.study cifar10 --seeds 0 1 2 -- trainer.max_epochs=20   # extra overrides after --
    python -m sdnn.study merged_digits_lr --variants all   # where subclasses pay off, with its controls
    python -m sdnn.study --on dataset=npz dataset.path=features.npz model=lr   # your data: SDNN + controls

Choices between settings should be made on the validation columns (``dataset.val_fraction`` holds out
part of the training set); the test columns are reported, never used to choose.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdnn.catalogue import CONF, Study, adhoc_study, load_study, study_names
from sdnn.errors import ConfigError, OneLineParser, user_message
from sdnn.study_report import MAP_VARIANTS, WhatRan, compare, write_map, write_report

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from sdnn.job import Job

__all__ = ["compare", "main", "run_study", "write_map"]

# Every study run: no logger, figures or checkpoints (finished runs are what a study continues from).
QUIET = ("logger=none", "trainer.enable_progress_bar=false", "checkpoint.every_n_epochs=0",
         "observe.figures=false", "observe.norms_every=0", "observe.per_class_test_acc=false")
# Where the phase-1 cache is changes no result: a study folder moved elsewhere still holds its runs.
NOT_SETTINGS = ("phase1.cache_dir",)
_ABSENT = object()  # a key the finished run's configuration did not have


# ----------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Arm:
    """The runs of one baseline or variant, one a seed, in ``<out>/runs/<folder>/seed<k>/``."""

    folder: str
    overrides: tuple[str, ...]   # after the study's common overrides, before seed=<k>
    label: str                   # in the progress lines
    origin: str = ""             # where its own overrides come from, for messages ('' = the study's)


@dataclass(frozen=True)
class Plan:
    """What a study runs: the arms in the order they run, and each variant's pair (its baseline, its arm)."""

    common: tuple[str, ...]
    arms: tuple[Arm, ...]
    pairs: dict[str, tuple[Arm, Arm]]


def plan_study(study: Study, names: Sequence[str], out: Path, extra: Sequence[str] = (),
               calibration: Path | None = None) -> Plan:
    """The baseline of each schedule (first where it is first needed) and each variant's runs; ``calibration``:
    the indicators' calibration of ``method=auto`` variants (``auto.calibration``; the payoff validation gives each
    study one fitted without it)."""
    common = (*study.base, *QUIET, f"phase1.cache_dir={out / 'cache'}", *extra)
    arms: list[Arm] = []
    baselines: dict[tuple[str, ...], Arm] = {}
    pairs: dict[str, tuple[Arm, Arm]] = {}
    for name in names:
        variant = study.variants[name]
        schedule = tuple(variant.schedule)
        if schedule not in baselines:
            folder = "baseline" + ("-" + "-".join(s.split("=")[0].split(".")[-1] + s.split("=")[1] for s in schedule)
                                   if schedule else "")
            baselines[schedule] = Arm(folder, (*schedule, "method=baseline"), folder,
                                      f" (the schedule of variant {name!r})" if schedule else "")
            arms.append(baselines[schedule])
        own = (f"auto.calibration={calibration.absolute()}",) if calibration and variant.method == "auto" else ()
        arm = Arm(variant.folder(name), (*schedule, f"method={variant.method}", *variant.overrides, *own),
                  f"{variant.method} {name}", f" (variant {name!r})")
        arms.append(arm)
        pairs[name] = (baselines[schedule], arm)
    folders = [arm.folder for arm in arms]
    clash = sorted({f for f in folders if folders.count(f) > 1})
    if clash:
        raise ConfigError(f"variants {list(names)} share the run folder(s) {clash}: rename one variant")
    return Plan(common=common, arms=tuple(arms), pairs=pairs)


# ----------------------------------------------------------------------------- checks before any training

def compose_runs(plan: Plan, seeds: Sequence[int], out: Path) -> dict[tuple[str, int], DictConfig]:
    """Every run's configuration, composed and validated as run.py does; a finished run in the folder must have
    the same settings. Any problem is a one-line ``ConfigError`` before the first run trains."""
    from hydra import compose, initialize_config_dir

    from sdnn.config import register, validate_config

    register()
    configs = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for arm in plan.arms:
            overrides = [*plan.common, *arm.overrides, f"seed={seeds[0]}"]
            try:
                composed = compose(config_name="config", overrides=overrides)
            except Exception as exc:  # noqa: BLE001 — Hydra's errors are reworded; anything else is raised
                raise ConfigError(f"{_composition_error(exc, overrides)}{arm.origin}") from None
            for seed in seeds:
                cfg = copy.deepcopy(composed)
                cfg.seed = seed
                try:
                    validate_config(cfg)
                except ConfigError as exc:
                    raise ConfigError(f"{exc}{arm.origin}") from None
                check_finished(cfg, out / "runs" / arm.folder / f"seed{seed}", overrides)
                configs[arm.folder, seed] = cfg
    return configs


def _composition_error(exc: Exception, overrides: Sequence[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from sdnn.config import composition_error

    if isinstance(exc, OverrideParseException):
        parser = OverridesParser.create()
        for override in overrides:
            try:
                parser.parse_overrides([override])
            except OverrideParseException as bad:
                return f"{override!r} is not an override ({str(bad).splitlines()[0]}): key=value or group=option"
    message = composition_error(exc)
    if message is None:
        raise exc
    return message


def check_finished(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = ()) -> None:
    """A finished run in ``run_dir`` is reused only if it ran with these settings: the keys both configurations
    have (a key a later release added is its default), and every key ``overrides`` sets, which the finished run
    must have had with the same value."""
    path = run_dir / "results.json"
    if not path.is_file():
        return
    from omegaconf import OmegaConf

    from sdnn.lit.resume import config_fingerprint

    try:
        before = config_fingerprint(json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable ({type(exc).__name__}: {exc}); remove {run_dir} to run it "
                          "again") from None
    now = config_fingerprint(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    named = {o.lstrip("+~").split("=", 1)[0] for o in overrides if "=" in o}
    compared = (before.keys() & now.keys()) | (named & now.keys())
    changed = [key for key in sorted(compared) if key not in NOT_SETTINGS and before.get(key, _ABSENT) != now[key]]
    if changed:
        shown = ", ".join(f"{key}={before.get(key, '(unset)')} there, {now[key]} now" for key in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"{run_dir} holds a finished run of other settings ({shown}{more}); give the study "
                          "another --out, or remove that run folder to run it again")


# ----------------------------------------------------------------------------- running

def what_ran(job: Job) -> WhatRan:
    """The header's facts from a built run: its typed settings, its parts and its data as loaded."""
    s = job.settings

    def named(factory: Any) -> str | None:  # a class, or Hydra's partial of one
        return None if factory is None else getattr(getattr(factory, "func", factory), "__name__", str(factory))

    return WhatRan(seed=s.seed, dataset=job.data.name, num_classes=job.data.num_classes,
                   class_names=list(job.data.names()), merged=s.dataset.merge is not None,
                   train_samples=job.data.training_size(), train_per_class=s.dataset.train_per_class,
                   val_fraction=s.dataset.val_fraction, batch_size=s.dataset.batch_size, model=s.model_name,
                   loss=s.loss_name, optimizer=named(job.model.optimizer), lr=s.optim.lr, momentum=s.optim.momentum,
                   weight_decay=s.optim.weight_decay, scheduler=named(job.model.scheduler),
                   milestones=s.scheduler.milestones, gamma=s.scheduler.gamma, phase1_epochs=s.phase1.epochs,
                   epochs=s.trainer.max_epochs, partitioner=job.partitioner.name,
                   partition_space=getattr(job.partitioner, "space", None), augmenter=job.augmenter.name,
                   num_classes_to_repartition=s.subclass.num_classes_to_repartition,
                   fixed_classes=s.subclass.classes, per_class=s.subclass.per_class,
                   sibling_weight=s.subclass.sibling_weight)


def _run_one(cfg: DictConfig, run_dir: Path, job: Job | None = None) -> dict:
    """One pipeline run (its results.json where it finished: ``check_finished`` compared its settings)."""
    path = run_dir / "results.json"
    if path.is_file():
        return json.loads(path.read_text())
    from sdnn.app import run

    return run(cfg, run_dir, job).to_json()


def run_study(study: Study | str, out: Path, seeds: Sequence[int] | None = None,
              variants: Sequence[str] | None = None, extra: Sequence[str] = (),
              calibration: Path | None = None) -> dict[str, Any]:
    """Checks every run's settings, runs what is missing and returns the comparison per variant (also
    written to ``out``). ``study``: a catalogue name or a loaded study; ``variants``: None for the study's
    defaults, ``["all"]``; ``extra``: overrides after the study's own."""
    from sdnn.build import build_job
    from sdnn.runlog import quiet

    study = load_study(study) if isinstance(study, str) else study
    names = study.pick(variants)
    seeds = list(dict.fromkeys(seeds if seeds is not None else study.seeds))
    study.check_files()
    if calibration is not None and not Path(calibration).is_file():
        raise ConfigError(f"--calibration {calibration}: no such file")
    plan = plan_study(study, names, out, extra, calibration)
    print(f"[study {study.name}] checking the settings of {len(plan.arms) * len(seeds)} runs", flush=True)
    configs = compose_runs(plan, seeds, out)
    quiet()  # as sdnn.app.run does, from the first build on
    first = plan.arms[0]   # the baseline of the first variant's schedule
    first_dir = out / "runs" / first.folder / f"seed{seeds[0]}"
    job = build_job(configs[first.folder, seeds[0]], first_dir)   # the data too, checked before any training
    settings = what_ran(job)
    if (first_dir / "results.json").is_file():
        job = None
    started = time.perf_counter()
    results: dict[tuple[str, int], dict] = {}
    for arm in plan.arms:
        for seed in seeds:
            print(f"[study {study.name}] {arm.label} seed {seed}", flush=True)
            built = job if (arm, seed) == (first, seeds[0]) else None
            results[arm.folder, seed] = _run_one(configs[arm.folder, seed], out / "runs" / arm.folder / f"seed{seed}",
                                                 built)
        job = None
    report: dict[str, Any] = {"study": study.name, "about": study.about, "regime": study.regime or study.name,
                              "command": command(study, seeds, names, out, extra, calibration),
                              "settings": asdict(settings),
                              "seeds": seeds, "overrides": list(plan.common), "variants": {}}
    for name, (baseline, arm) in plan.pairs.items():
        variant = study.variants[name]
        report["variants"][name] = {
            "method": variant.method, "overrides": [*variant.schedule, *variant.overrides],
            **compare({s: results[baseline.folder, s] for s in seeds}, {s: results[arm.folder, s] for s in seeds})}
    report["wall_seconds_this_call"] = time.perf_counter() - started
    report["class_names"] = settings.class_names
    write_report(report, out)
    return report


def advise_study(study: Study, out: Path, seeds: Sequence[int] | None = None,
                 extra: Sequence[str] = ()) -> dict[int, dict[str, Any]]:
    """``sdnn.advise`` on the study's main settings, one seed at a time, sharing the study's phase-1 cache (phase 1
    trains only where no run of the study trained it): ``<out>/advice/seed<k>/advice.json``."""
    from sdnn.advise import advise, write_advice
    from sdnn.build import build_job
    from sdnn.runlog import quiet

    study.check_files()
    seeds = list(dict.fromkeys(seeds if seeds is not None else study.seeds))
    plan = plan_study(study, ["main"] if "main" in study.variants else study.pick(None)[:1], out, extra)
    configs = compose_runs(Plan(plan.common, plan.arms[1:], {}), seeds, out)  # the main variant's runs
    quiet()
    advice = {}
    for seed in seeds:
        folder = out / "advice" / f"seed{seed}"
        print(f"[study {study.name}] advise seed {seed}", flush=True)
        job = build_job(configs[plan.arms[1].folder, seed], folder)
        result = advise(job)
        write_advice(result, folder, job.data.names())
        advice[seed] = result.to_json(job.data.names())
        print(result.describe(job.data.names()), flush=True)
    return advice


def command(study: Study, seeds: Sequence[int], names: Sequence[str], out: Path, extra: Sequence[str],
            calibration: Path | None = None) -> str:
    """The command that runs (or continues) this study."""
    text = (f"python -m sdnn.study {study.invocation} --seeds {' '.join(str(s) for s in seeds)} "
            f"--variants {shlex.join(names)} --out {shlex.quote(str(out))}")
    text += f" --calibration {shlex.quote(str(calibration))}" if calibration is not None else ""
    return text + (f" -- {shlex.join(extra)}" if extra else "")


def adhoc_name(overrides: Sequence[str]) -> str:
    """The folder name of an ``--on`` study: its overrides, shortened with a hash where long."""
    slug = "on-" + "-".join(re.sub(r"[^\w.-]", "_", o.replace("=", "_")) for o in overrides)
    if len(slug) > 60:
        slug = slug[:51] + "-" + hashlib.sha1("\0".join(overrides).encode()).hexdigest()[:8]
    return slug


# ----------------------------------------------------------------------------- the command line

def _listing() -> str:
    """Each study of the catalogue with its seeds and about (a broken file: its error)."""
    lines = []
    for name in study_names():
        try:
            study = load_study(name)
            lines.append(f"  {name:<20} {len(study.seeds)} seeds, {len(study.variants)} variants  {study.about}")
        except ConfigError as exc:
            lines.append(f"  {name:<20} error: {exc}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # sdnn.errors.Interrupted says what the run in progress saved
        saved = getattr(exc, "saved", "")
        print(f"interrupted (Ctrl-C); finished runs are kept and the same command continues the study. {saved}".strip(),
              file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001 — ours are one line; anything else is a bug with its traceback
        message = user_message(exc, "run the same command again: finished runs are kept")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2


def _main(argv: list[str]) -> int:
    if argv[:1] == ["payoff"]:
        from sdnn.payoff import write_payoff

        parser = OneLineParser(prog="python -m sdnn.study payoff",
                               description="Predicting the payoff: each study's advise verdict, from a line fitted on "
                                           "the other studies only, against its measured Δ; method=auto beside it.")
        parser.add_argument("folders", nargs="+", type=Path, help="study folders (study.json and advice/seed*/)")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--calibration", type=Path, help="also write the lines fitted on every study here "
                                                             "(sdnn.advise reads conf/advise/calibration.yaml)")
        parser.add_argument("--loo", type=Path, help="also write, per study, the lines fitted on the others "
                                                     "(<loo>/<study>.yaml: its method=auto runs' --calibration)")
        args = parser.parse_args(argv[1:])
        write_payoff(args.folders, args.out, args.calibration, args.loo)
        return 0
    if argv[:1] == ["map"]:
        parser = OneLineParser(prog="python -m sdnn.study map",
                               description="The regime map of finished studies: one row each.")
        parser.add_argument("folders", nargs="+", type=Path, help="study folders (each holds study.json)")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--variants", nargs="+", default=list(MAP_VARIANTS))
        args = parser.parse_args(argv[1:])
        write_map(args.folders, args.out, args.variants)
        return 0
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = OneLineParser(prog="python -m sdnn.study", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="studies (conf/study/<name>.yaml; --list says more): " + ", ".join(study_names()))
    parser.add_argument("name", nargs="?", help="a study of the catalogue, conf/study/<name>.yaml")
    parser.add_argument("--on", nargs="+", metavar="OVERRIDE",
                        help="a study on the data and model these run.py overrides choose (instead of a name), "
                             "e.g. --on dataset=npz dataset.path=features.npz model=lr (its seeds and default "
                             "variants, SDNN and its controls: conf/study/on.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the study's own seeds")
    parser.add_argument("--variants", nargs="+", help="variant names, or 'all' (default: the study's defaults)")
    parser.add_argument("--out", type=Path, help="default: studies/<name> (--on: studies/on-<overrides>)")
    parser.add_argument("--list", action="store_true", help="list the studies of the catalogue and stop")
    parser.add_argument("--calibration", type=Path, help="the indicators' calibration for method=auto variants "
                        "(auto.calibration; python -m sdnn.study payoff --loo writes one per study without it)")
    parser.add_argument("--advise", action="store_true",
                        help="instead of the runs: python -m sdnn.advise for each seed, on the study's settings and "
                             "phase-1 cache, into <out>/advice/seed<k>/advice.json (the study's payoff predicted)")
    args = parser.parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    if (args.name is None) == (args.on is None):
        parser.error("give a study name (--list shows them) or --on <overrides>, not both" if args.name else
                     "give a study name (--list shows them) or --on <overrides>")
    study = adhoc_study(args.on, adhoc_name(args.on)) if args.on else load_study(args.name)
    out = args.out or Path("studies") / study.name
    if args.advise:
        advise_study(study, out, args.seeds, extra)
    else:
        run_study(study, out, args.seeds, args.variants, extra, args.calibration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
