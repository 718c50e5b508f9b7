"""``python -m sdnn.study <name>``: does SDNN help here, more than its controls, and does θ find the
weak classes?

Runs the baseline and SDNN under one schedule for several seeds (and, with ``--variants``, the
paper's ablations, the questions it leaves open, the controls — a random split, ``method=reweight``
— and other methods such as the comparison losses), then writes the comparison into
``--out`` (default ``studies/<name>``):

* ``study.md`` / ``study.json``: per variant the mean ± std test (and validation) accuracy, the
  paired difference to the baseline of the same seed, for every seed, and how many seeds SDNN won;
  the per-class accuracy change of the selected classes against the others; Spearman's ρ between
  phase-1 θ and the baseline's per-class test error (the paper's claim that θ, measured early,
  ranks classes by their eventual error); with merged or coarse classes, the NMI of the subclasses
  against the fine labels (results.json ``partition_quality``);
* ``study.png``: the paired differences per variant.

``python -m sdnn.study map DIR ... --out OUT`` puts several finished studies (regimes: model capacity ×
class structure) into one table and one figure.

Every run is an ordinary run of the pipeline in ``<out>/runs/<variant>/<method>/seed<k>/``
(``results.json`` as always), and phase 1 is shared through the phase-1 cache. A study that
was interrupted continues where it stopped: finished runs are not run again.

    python -m sdnn.study digits                      # the main comparison, 5 seeds
    python -m sdnn.study digits --variants all       # + ablations (k, partitioner, sibling weight, ...)
    python -m sdnn.study cifar10 --seeds 0 1 2 -- trainer.max_epochs=20   # extra overrides after --
    python -m sdnn.study merged_digits_lr --variants all   # where subclasses pay off, with its controls

Choices between settings should be made on the validation columns (``dataset.val_fraction``
holds out part of the training set); the test columns are reported, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdnn.stats import mean_std, spearman

SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass(frozen=True)
class Variant:
    """A run compared with the baseline of the same seed: its ``method`` and overrides; ``schedule``
    overrides also apply to (and need) their own baseline."""

    overrides: tuple[str, ...] = ()
    schedule: tuple[str, ...] = ()
    method: str = "sdnn"

    def folder(self, name: str) -> str:
        return f"{self.method}-" + "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in name)


@dataclass(frozen=True)
class Study:
    base: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: dict[str, Variant] = field(default_factory=dict)
    about: str = ""
    regime: str = ""   # class structure × model, for the regime map


def _ablations(k_values: Sequence[int], long_schedule: tuple[str, ...]) -> dict[str, Variant]:
    """The paper's ablations (k, partitioner, sibling weight) and the open questions
    (augmentation, partition space, schedule length), each against the main recipe."""
    return {
        **{f"k={k}": Variant((f"subclass.num_classes_to_repartition={k}",)) for k in k_values},
        "partitioner=median_split": Variant(("partitioner=median_split",)),
        "partitioner=random": Variant(("partitioner=random",)),
        "sibling_weight=0.9": Variant(("subclass.sibling_weight=0.9",)),
        "sibling_weight=0": Variant(("subclass.sibling_weight=0",)),
        "augmenter=none": Variant(("augmenter=none",)),
        "partition space=features": Variant(("partitioner.space=features",)),
        "longer schedule": Variant(schedule=long_schedule),
    }


_QUIET = ("logger=none", "trainer.enable_progress_bar=false", "checkpoint.every_n_epochs=0",
          "observe.figures=false", "observe.norms_every=0", "observe.per_class_test_acc=false")

# The loss functions of the classification-loss literature, as baselines beside SDNN (SPEC §7b), and the
# softmax cross-entropy they modify (the plain baseline is the sigmoid CE, eq. 3).
LOSSES = ("ce", "focal", "poly1", "encouraging", "ldr_kl", "label_smoothing")


def _losses() -> dict[str, Variant]:
    return {f"loss={name}": Variant((f"loss={name}",), method="baseline") for name in LOSSES}


def _regime_variants() -> dict[str, Variant]:
    """SDNN without augmentation (k-means, the main variant), Algorithm 1, the controls (a random split;
    the same emphasis without a split), the paper's SamplePairing on top (SPEC §8), and the methods a
    user would weigh against it: the comparison losses and Class2Str."""
    return {"main": Variant(), "partitioner=median_split": Variant(("partitioner=median_split",)),
            "partitioner=random": Variant(("partitioner=random",)),
            "partition space=features": Variant(("partitioner.space=features",)),
            "reweight": Variant(method="reweight"),
            "augmenter=sample_pairing": Variant(("augmenter=sample_pairing",)), **_losses(),
            "class2str": Variant(method="class2str")}


# Merged classes: two original classes a class, by the rule "consecutive class indices" (0+1, 2+3, ...), fixed
# before any run (digits and CIFAR-10 alike; docs/reproduction.md).
PAIRS = "dataset.merge=[0,0,1,1,2,2,3,3,4,4]"
DIGITS = ("dataset=digits", "dataset.val_fraction=0.15", "phase1.epochs=5", "trainer.max_epochs=30", "optim.lr=0.05",
          "scheduler.milestones=[20]")
CIFAR10 = ("dataset=image_folder", f"dataset.root={SHARED / 'data' / 'cifar10-jpeg.tar.gz'}",
           "dataset.val_fraction=0.1", "dataset.train_per_class=1000")
SMALL_CNN = ("model=cnn", "model.backbone.channels=[32,64]", "phase1.epochs=2", "trainer.max_epochs=6", "optim.lr=0.05",
             "scheduler.milestones=[4]")
# Logistic regression on the fixed pixels: no crop or flip (the inputs a linear head sees stay the same).
PIXEL_LR = ("model=lr", "dataset.augment.crop_padding=0", "dataset.augment.flip=false", "phase1.epochs=5",
            "trainer.max_epochs=20", "optim.lr=0.01", "scheduler.milestones=[15]")
DIGITS_ABOUT = "scikit-learn's 8×8 digits (1,257 train, 15% of it held out for validation / 540 test), 30 epochs"
CIFAR_ABOUT = "the JPEG CIFAR-10 (10,000 train: 1,000 of each original class / 5,000 val / 10,000 test)"

STUDIES: dict[str, Study] = {
    "digits": Study(
        base=(*DIGITS, "model=mlp", "augmenter=auto"),
        seeds=(0, 1, 2, 3, 4),
        variants={"main": Variant(), **_ablations((1, 3, 4), ("trainer.max_epochs=60", "scheduler.milestones=[40]")),  # k=2 is main
                  # no augmentation (the cost SPEC §3's probe points to) with the partitioner of the best
                  # validation Δ (not test Δ) among the single changes
                  "augmenter=none + median_split": Variant(("augmenter=none", "partitioner=median_split")),
                  **_losses(), "class2str": Variant(method="class2str")},
        about="scikit-learn's 8×8 digits (1,257 train / 540 test), MLP 256-256, 30 epochs, the paper's recipe "
              "(SamplePairing) as main", regime="digits, 10 classes × MLP (paper recipe)"),
    "cifar10": Study(
        base=(*CIFAR10, *SMALL_CNN, "augmenter=auto"),
        seeds=(0, 1, 2),
        variants={"main": Variant(), "augmenter=none": Variant(("augmenter=none",)),
                  "reweight": Variant(("augmenter=none",), method="reweight"),
                  "class2str": Variant(method="class2str")},
        about=f"{CIFAR_ABOUT}, small CNN 32-64, 2 + 6 epochs (CPU scale), the paper's recipe (SamplePairing) as main",
        regime="CIFAR-10, 10 classes × small CNN (paper recipe)"),
    # Regimes (SPEC §8): class structure (original classes | two merged a class) × model capacity.
    "digits_lr": Study(base=(*DIGITS, "model=lr"), seeds=(0, 1, 2, 3, 4), variants=_regime_variants(),
                       about=f"{DIGITS_ABOUT}; logistic regression; 10 original classes",
                       regime="digits, 10 classes × LR"),
    "digits_mlp": Study(base=(*DIGITS, "model=mlp"), seeds=(0, 1, 2, 3, 4), variants=_regime_variants(),
                        about=f"{DIGITS_ABOUT}; MLP 256-256; 10 original classes", regime="digits, 10 classes × MLP"),
    "merged_digits_lr": Study(base=(*DIGITS, PAIRS, "model=lr"), seeds=(0, 1, 2, 3, 4), variants=_regime_variants(),
                              about=f"{DIGITS_ABOUT}; logistic regression; 5 classes of two digits (0+1, 2+3, ...)",
                              regime="digits merged 2→1 × LR"),
    "merged_digits_mlp": Study(base=(*DIGITS, PAIRS, "model=mlp"), seeds=(0, 1, 2, 3, 4),
                               variants=_regime_variants(),
                               about=f"{DIGITS_ABOUT}; MLP 256-256; 5 classes of two digits (0+1, 2+3, ...)",
                               regime="digits merged 2→1 × MLP"),
    "merged_cifar10_cnn": Study(base=(*CIFAR10, PAIRS, *SMALL_CNN), seeds=(0, 1, 2), variants=_regime_variants(),
                                about=f"{CIFAR_ABOUT}; small CNN 32-64, 2 + 6 epochs; 5 classes of two "
                                      "(airplane+automobile, bird+cat, deer+dog, frog+horse, ship+truck)",
                                regime="CIFAR-10 merged 2→1 × small CNN"),
    "merged_cifar10_lr": Study(base=(*CIFAR10, PAIRS, *PIXEL_LR), seeds=(0, 1, 2), variants=_regime_variants(),
                               about=f"{CIFAR_ABOUT}; logistic regression on the pixels, 5 + 20 epochs; 5 classes "
                                     "of two (airplane+automobile, bird+cat, deer+dog, frog+horse, ship+truck)",
                               regime="CIFAR-10 merged 2→1 × LR"),
    "cifar10_cnn": Study(base=(*CIFAR10, *SMALL_CNN), seeds=(0, 1, 2), variants=_regime_variants(),
                         about=f"{CIFAR_ABOUT}; small CNN 32-64, 2 + 6 epochs; 10 original classes (the `cifar10` "
                               "study without SamplePairing as main)", regime="CIFAR-10, 10 classes × small CNN"),
    "cifar10_lr": Study(base=(*CIFAR10, *PIXEL_LR), seeds=(0, 1, 2), variants=_regime_variants(),
                        about=f"{CIFAR_ABOUT}; logistic regression on the pixels, 5 + 20 epochs; 10 original classes",
                        regime="CIFAR-10, 10 classes × LR"),
}


# ----------------------------------------------------------------------------- the comparison (pure)

def _nanmean(values: np.ndarray) -> float:
    """The mean of the values that are not NaN (NaN if none is)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def compare(baselines: dict[int, dict], sdnn: dict[int, dict]) -> dict[str, Any]:
    """Baseline vs a variant (SDNN, a control, another method) over the seeds both have: accuracies,
    paired differences, per-class changes of the selected classes against the others, θ against the
    baseline's error, and the subclasses' NMI against the fine labels where they are known."""
    seeds = sorted(set(baselines) & set(sdnn))
    out: dict[str, Any] = {"seeds": seeds}
    for split in ("test", "val"):
        base = [(baselines[s].get(split) or {}).get("acc") for s in seeds]
        ours = [(sdnn[s].get(split) or {}).get("acc") for s in seeds]
        if any(v is None for v in base + ours):
            continue
        diffs = [o - b for o, b in zip(ours, base)]
        out[split] = {"baseline": mean_std(base), "variant": mean_std(ours), "diff": mean_std(diffs),
                      "diff_per_seed": diffs, "wins": sum(d > 0 for d in diffs)}
    selected_change, other_change, rhos, per_class = [], [], [], []
    for s in seeds:
        base_acc = np.asarray(baselines[s]["test"]["per_class_acc"], dtype=float)
        ours_acc = np.asarray(sdnn[s]["test"]["per_class_acc"], dtype=float)
        change = ours_acc - base_acc
        chosen = np.zeros(len(change), dtype=bool)
        chosen[list(sdnn[s].get("selected_classes") or [])] = True
        # a class without test samples has accuracy None (NaN here) and is left out of the means
        selected_change.append(_nanmean(change[chosen]))
        other_change.append(_nanmean(change[~chosen]))
        per_class.append(change)
        theta = [math.nan if t is None else t for t in (sdnn[s].get("theta") or [])]
        if theta:
            rhos.append(spearman(theta, 1.0 - base_acc))
    if seeds:
        out["per_class_change"] = [_nanmean(column) for column in np.asarray(per_class).T]
        out["selected_change"] = mean_std(selected_change)
        out["other_change"] = mean_std(other_change)
        out["selected"] = {str(s): sdnn[s].get("selected_classes") for s in seeds}
        out["spearman_theta_vs_baseline_error"] = {"per_seed": rhos, "mean": mean_std(rhos)}
        nmi = [(sdnn[s].get("partition_quality") or {}).get("nmi") for s in seeds]
        if all(v is not None for v in nmi):
            out["nmi"] = {"per_seed": nmi, "mean": mean_std(nmi)}
        if all(sdnn[s].get("hierarchy") for s in seeds):  # method=class2str: one-to-one codes in how many seeds
            out["codes_distinct"] = sum(bool(sdnn[s]["hierarchy"]["distinct"]) for s in seeds)
    return out


# ----------------------------------------------------------------------------- running

def _run_one(overrides: list[str], run_dir: Path) -> dict:
    """One pipeline run (skipped when its results.json exists)."""
    path = run_dir / "results.json"
    if path.is_file():
        return json.loads(path.read_text())
    from hydra import compose, initialize_config_dir

    from sdnn.app import run
    from sdnn.config import register

    register()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return run(cfg, run_dir).to_json()


def run_study(name: str, out: Path, seeds: Sequence[int] | None = None, variants: Sequence[str] | None = None,
              extra: Sequence[str] = ()) -> dict[str, Any]:
    """Runs what is missing and returns the comparison per variant (also written to ``out``)."""
    if name not in STUDIES:
        raise SystemExit(f"unknown study {name!r}; available: {', '.join(STUDIES)}")
    study = STUDIES[name]
    seeds = list(seeds if seeds is not None else study.seeds)
    if variants is None:
        names = ["main"]
    else:
        names = list(study.variants) if list(variants) == ["all"] else list(variants)
    unknown = [v for v in names if v not in study.variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; available: {', '.join(study.variants)}")
    common = [*study.base, *_QUIET, f"phase1.cache_dir={out / 'cache'}", *extra]
    baselines: dict[tuple, dict[int, dict]] = {}
    report: dict[str, Any] = {"study": name, "about": study.about, "regime": study.regime or name,
                              "overrides": common, "variants": {}}
    started = time.perf_counter()
    for variant_name in names:
        variant = study.variants[variant_name]
        schedule = list(variant.schedule)
        key = tuple(schedule)
        if key not in baselines:
            baselines[key] = {}
            for seed in seeds:
                tag = "baseline" + ("-" + "-".join(s.split("=")[0].split(".")[-1] + s.split("=")[1] for s in schedule)
                                    if schedule else "")
                print(f"[study {name}] {tag} seed {seed}", flush=True)
                baselines[key][seed] = _run_one([*common, *schedule, "method=baseline", f"seed={seed}"],
                                                out / "runs" / tag / f"seed{seed}")
        runs = {}
        for seed in seeds:
            print(f"[study {name}] {variant.method} {variant_name} seed {seed}", flush=True)
            runs[seed] = _run_one([*common, *schedule, f"method={variant.method}", *variant.overrides, f"seed={seed}"],
                                  out / "runs" / variant.folder(variant_name) / f"seed{seed}")
        report["variants"][variant_name] = {"method": variant.method, "overrides": [*schedule, *variant.overrides],
                                            **compare(baselines[key], runs)}
    report["wall_seconds_this_call"] = time.perf_counter() - started
    report["class_names"] = _class_names(out)
    write_report(report, out)
    return report


def _class_names(out: Path) -> list[str]:
    for path in sorted((out / "runs").glob("*/seed*/results.json")):
        names = json.loads(path.read_text()).get("class_names")
        if names:
            return list(names)
    return []


# ----------------------------------------------------------------------------- the report

def _pct(pair_or_value, signed: bool = False) -> str:
    if isinstance(pair_or_value, (tuple, list)):
        mean, std = pair_or_value
        if mean is None or not math.isfinite(mean):
            return "–"
        return f"{100 * mean:+.2f} ± {100 * std:.2f}" if signed else f"{100 * mean:.2f} ± {100 * std:.2f}"
    return "–" if pair_or_value is None or not math.isfinite(pair_or_value) else (
        f"{100 * pair_or_value:+.2f}" if signed else f"{100 * pair_or_value:.2f}")


def _nmi(v: dict[str, Any]) -> str:
    mean = (v.get("nmi") or {}).get("mean")
    return "–" if not mean or mean[0] is None else f"{mean[0]:.2f} ± {mean[1]:.2f}"


def format_report(report: dict[str, Any]) -> str:
    lines = [f"# Study `{report['study']}`", "", report.get("about", ""), "",
             "Overrides of every run: `" + " ".join(report["overrides"]) + "`", "",
             "Accuracies in %, mean ± sample std over seeds; Δ = variant − baseline of the same seed "
             "(paired); wins = seeds where Δ > 0. Validation = the held-out part of the training set. NMI: the "
             "subclasses against the fine labels (merged classes; 1 = the subclasses are the original classes).", "",
             "| variant | method | extra overrides | seeds | baseline test | variant test | Δ test | Δ per seed | "
             "wins | "
             "Δ val | NMI | selected classes Δ | other classes Δ | Spearman ρ(θ, baseline error) |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in report["variants"].items():
        test, val = v.get("test") or {}, v.get("val") or {}
        per_seed = ", ".join(_pct(d, signed=True) for d in test.get("diff_per_seed", []))
        rho = (v.get("spearman_theta_vs_baseline_error") or {}).get("mean", (math.nan, math.nan))
        rho_text = "–" if rho[0] is None or not math.isfinite(rho[0]) else f"{rho[0]:+.2f} ± {rho[1]:.2f}"
        lines.append(f"| {name} | {v.get('method', 'sdnn')} | `{' '.join(v['overrides']) or '–'}` | "
                     f"{len(v['seeds'])} | "
                     f"{_pct(test.get('baseline'))} | {_pct(test.get('variant'))} | {_pct(test.get('diff'), True)} | "
                     f"{per_seed} | {test.get('wins', '–')}/{len(v['seeds'])} | {_pct(val.get('diff'), True)} | "
                     f"{_nmi(v)} | {_pct(v.get('selected_change'), True)} | {_pct(v.get('other_change'), True)} | "
                     f"{rho_text} |")
    main = report["variants"].get("main")
    if main and main.get("per_class_change"):
        names = report.get("class_names") or [str(i) for i in range(len(main["per_class_change"]))]
        counts = {}
        for chosen in main["selected"].values():
            for c in chosen or []:
                counts[c] = counts.get(c, 0) + 1
        lines += ["", "Main variant, per class (test accuracy change, mean over seeds; selected = in how many seeds "
                  "θ selected the class):", "", "| class | Δ test | selected |", "|---|---:|---:|"]
        for i, change in enumerate(main["per_class_change"]):
            lines.append(f"| {names[i] if i < len(names) else i} | {_pct(change, True)} | {counts.get(i, 0)} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    from sdnn.cache import atomic_write_json
    from sdnn.plots import plot_paired_differences

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "study.json", report)
    (out / "study.md").write_text(format_report(report))
    plot_paired_differences({name: (v.get("test") or {}).get("diff_per_seed", [])
                             for name, v in report["variants"].items()},
                            out / "study.png", title=f"study {report['study']}: variant − baseline, test accuracy")
    print(format_report(report))
    print(f"study written to {out}/study.md, study.json, study.png")


# ----------------------------------------------------------------------------- several studies: the regime map

MAP_VARIANTS = ("main", "partitioner=median_split", "partitioner=random", "reweight", "augmenter=sample_pairing")
# How the regime studies' variants read in the map's figure.
MAP_LABELS = {"main": "SDNN, k-means", "partitioner=median_split": "SDNN, Algorithm 1",
              "partitioner=random": "random split (control)", "reweight": "reweight (control)",
              "augmenter=sample_pairing": "k-means + SamplePairing"}


def _cell(v: dict[str, Any] | None) -> str:
    test = (v or {}).get("test") or {}
    if not test:
        return "–"
    return f"{_pct(test['diff'], True)} ({test['wins']}/{len(v['seeds'])})"


def format_map(reports: list[dict[str, Any]], variants: Sequence[str]) -> str:
    """One row per study (a regime): the baseline, each variant's paired Δ with its wins, the main
    variant's Δ on validation and the NMI of the main and random splits."""
    head = ["study", "regime", "baseline test", *(f"Δ {v}" for v in variants), "Δ val (main)", "NMI main",
            "NMI random"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for report in reports:
        found = report["variants"]
        main = found.get("main") or {}
        baseline = ((main.get("test") or {}).get("baseline"))
        lines.append(f"| `{report['study']}` | {report.get('regime', '')} | {_pct(baseline) if baseline else '–'} | "
                     + " | ".join(_cell(found.get(v)) for v in variants)
                     + f" | {_pct((main.get('val') or {}).get('diff'), True)} | {_nmi(main)} | "
                       f"{_nmi(found.get('partitioner=random') or {})} |")
    return "\n".join(lines) + "\n"


def write_map(folders: Sequence[Path], out: Path, variants: Sequence[str] = MAP_VARIANTS) -> str:
    """The regime map of finished studies (their ``study.json``): ``map.md``, ``map.json``, ``map.png``."""
    from sdnn.cache import atomic_write_json
    from sdnn.plots import plot_regime_map

    reports = []
    for folder in folders:
        path = Path(folder) / "study.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no such file; run the study first (python -m sdnn.study <name> --out {folder})")
        reports.append(json.loads(path.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    text = format_map(reports, variants)
    (out / "map.md").write_text(text)
    atomic_write_json(out / "map.json", {"variants": list(variants), "studies": reports})
    diffs = {r.get("regime") or r["study"]: {MAP_LABELS.get(v, v): ((r["variants"].get(v) or {}).get("test") or {})
                                             .get("diff_per_seed", []) for v in variants} for r in reports}
    plot_regime_map(diffs, out / "map.png")
    print(text)
    print(f"map written to {out}/map.md, map.json, map.png")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["map"]:
        parser = argparse.ArgumentParser(prog="python -m sdnn.study map",
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
    parser = argparse.ArgumentParser(prog="python -m sdnn.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the study's own seeds")
    parser.add_argument("--variants", nargs="+", help="variant names, or 'all' (default: main)")
    parser.add_argument("--out", type=Path, help="default: studies/<name>")
    args = parser.parse_args(argv)
    from sdnn.errors import SDNNError

    try:
        run_study(args.name, args.out or Path("studies") / args.name, args.seeds, args.variants, extra)
    except SDNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
