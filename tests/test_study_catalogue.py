"""The study catalogue (conf/study/): the YAML yields the same studies as the Python table it replaced, and a
malformed or unknown file, study, variant or missing data file is a one-line error naming it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sdnn import catalogue
from sdnn.catalogue import Variant, load_study, study_names
from sdnn.errors import ConfigError
from tests.conftest import QUICK_GUARD, ROOT

# ----------------------------------------------------------------------------- the table sdnn/study.py had
# (commit 34c20a1), copied once as the reference; only the names of its dataclasses differ.


@dataclass(frozen=True)
class OldVariant:
    overrides: tuple[str, ...] = ()
    schedule: tuple[str, ...] = ()
    method: str = "sdnn"


@dataclass(frozen=True)
class OldStudy:
    base: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: dict[str, OldVariant] = field(default_factory=dict)
    about: str = ""
    regime: str = ""


SHARED = (ROOT.parent / "shared").resolve()  # as the catalogue resolves it (../shared may be a link)
Variant_ = OldVariant


def _ablations(k_values: Sequence[int], long_schedule: tuple[str, ...]) -> dict[str, OldVariant]:
    return {
        **{f"k={k}": Variant_((f"subclass.num_classes_to_repartition={k}",)) for k in k_values},
        "partitioner=median_split": Variant_(("partitioner=median_split",)),
        "partitioner=random": Variant_(("partitioner=random",)),
        "sibling_weight=0.9": Variant_(("subclass.sibling_weight=0.9",)),
        "sibling_weight=0": Variant_(("subclass.sibling_weight=0",)),
        "augmenter=none": Variant_(("augmenter=none",)),
        "partition space=features": Variant_(("partitioner.space=features",)),
        "longer schedule": Variant_(schedule=long_schedule),
    }


LOSSES = ("ce", "focal", "poly1", "encouraging", "ldr_kl", "label_smoothing")


def _losses() -> dict[str, OldVariant]:
    return {f"loss={name}": Variant_((f"loss={name}",), method="baseline") for name in LOSSES}


def _regime_variants() -> dict[str, OldVariant]:
    return {"main": Variant_(), "partitioner=median_split": Variant_(("partitioner=median_split",)),
            "partitioner=random": Variant_(("partitioner=random",)),
            "partition space=features": Variant_(("partitioner.space=features",)),
            "reweight": Variant_(method="reweight"),
            "augmenter=sample_pairing": Variant_(("augmenter=sample_pairing",)), **_losses(),
            "class2str": Variant_(method="class2str")}


PAIRS = "dataset.merge=[0,0,1,1,2,2,3,3,4,4]"
DIGITS = ("dataset=digits", "dataset.val_fraction=0.15", "phase1.epochs=5", "trainer.max_epochs=30", "optim.lr=0.05",
          "scheduler.milestones=[20]")
CIFAR10 = ("dataset=image_folder", f"dataset.root={SHARED / 'data' / 'cifar10-jpeg.tar.gz'}",
           "dataset.val_fraction=0.1", "dataset.train_per_class=1000")
SMALL_CNN = ("model=cnn", "model.backbone.channels=[32,64]", "phase1.epochs=2", "trainer.max_epochs=6", "optim.lr=0.05",
             "scheduler.milestones=[4]")
PIXEL_LR = ("model=lr", "dataset.augment.crop_padding=0", "dataset.augment.flip=false", "phase1.epochs=5",
            "trainer.max_epochs=20", "optim.lr=0.01", "scheduler.milestones=[15]")

OLD_STUDIES: dict[str, OldStudy] = {
    "digits": OldStudy(
        base=(*DIGITS, "model=mlp", "augmenter=auto"),
        seeds=(0, 1, 2, 3, 4),
        variants={"main": Variant_(), **_ablations((1, 3, 4), ("trainer.max_epochs=60", "scheduler.milestones=[40]")),
                  "augmenter=none + median_split": Variant_(("augmenter=none", "partitioner=median_split")),
                  **_losses(), "class2str": Variant_(method="class2str")},
        regime="digits, 10 classes × MLP (paper recipe)"),
    "cifar10": OldStudy(
        base=(*CIFAR10, *SMALL_CNN, "augmenter=auto"),
        seeds=(0, 1, 2),
        variants={"main": Variant_(), "augmenter=none": Variant_(("augmenter=none",)),
                  "reweight": Variant_(("augmenter=none",), method="reweight"),
                  "class2str": Variant_(method="class2str")},
        regime="CIFAR-10, 10 classes × small CNN (paper recipe)"),
    "digits_lr": OldStudy(base=(*DIGITS, "model=lr"), seeds=(0, 1, 2, 3, 4), variants=_regime_variants(),
                          regime="digits, 10 classes × LR"),
    "digits_mlp": OldStudy(base=(*DIGITS, "model=mlp"), seeds=(0, 1, 2, 3, 4), variants=_regime_variants(),
                           regime="digits, 10 classes × MLP"),
    "merged_digits_lr": OldStudy(base=(*DIGITS, PAIRS, "model=lr"), seeds=(0, 1, 2, 3, 4),
                                 variants=_regime_variants(), regime="digits merged 2→1 × LR"),
    "merged_digits_mlp": OldStudy(base=(*DIGITS, PAIRS, "model=mlp"), seeds=(0, 1, 2, 3, 4),
                                  variants=_regime_variants(), regime="digits merged 2→1 × MLP"),
    "merged_cifar10_cnn": OldStudy(base=(*CIFAR10, PAIRS, *SMALL_CNN), seeds=(0, 1, 2), variants=_regime_variants(),
                                   regime="CIFAR-10 merged 2→1 × small CNN"),
    "merged_cifar10_lr": OldStudy(base=(*CIFAR10, PAIRS, *PIXEL_LR), seeds=(0, 1, 2), variants=_regime_variants(),
                                  regime="CIFAR-10 merged 2→1 × LR"),
    "cifar10_cnn": OldStudy(base=(*CIFAR10, *SMALL_CNN), seeds=(0, 1, 2), variants=_regime_variants(),
                            regime="CIFAR-10, 10 classes × small CNN"),
    "cifar10_lr": OldStudy(base=(*CIFAR10, *PIXEL_LR), seeds=(0, 1, 2), variants=_regime_variants(),
                           regime="CIFAR-10, 10 classes × LR"),
}


# ----------------------------------------------------------------------------- the catalogue equals it

def test_the_catalogue_lists_the_same_studies():
    assert set(OLD_STUDIES) <= set(study_names())  # and the regime cells added since


@pytest.mark.parametrize("name", sorted(OLD_STUDIES))
def test_each_study_from_yaml_makes_the_same_runs_as_the_old_table(name, monkeypatch):
    monkeypatch.delenv("SDNN_CIFAR10_JPEG", raising=False)
    old, new = OLD_STUDIES[name], load_study(name)
    assert new.name == name and new.base == old.base and new.seeds == old.seeds
    # the order they run and are reported in; variants added since (method=auto's) come after the old ones
    assert list(new.variants)[:len(old.variants)] == list(old.variants)
    for variant_name, variant in old.variants.items():
        got = new.variants[variant_name]
        assert (got.overrides, got.schedule, got.method) == (variant.overrides, variant.schedule, variant.method)
        # the run folder, as the old code named it (finished study folders are recognised)
        old_folder = f"{variant.method}-" + "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in variant_name)
        assert got.folder(variant_name) == old_folder
    assert new.regime == old.regime and new.default_variants == ("main",)
    assert new.about and "\n" not in new.about


def test_the_cifar_archive_can_live_elsewhere(tmp_path, monkeypatch):
    archive = tmp_path / "my copy.tar.gz"
    archive.write_bytes(b"")
    monkeypatch.setenv("SDNN_CIFAR10_JPEG", str(archive))
    study = load_study("cifar10_lr")
    assert f"dataset.root={archive}" in study.base
    study.check_files()  # there: no error
    archive.unlink()
    with pytest.raises(ConfigError, match=r"SDNN_CIFAR10_JPEG=.*my copy.tar.gz: no such file") as info:
        study.check_files()
    assert "\n" not in str(info.value)


def test_a_missing_default_archive_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SDNN_CIFAR10_JPEG", raising=False)
    monkeypatch.setattr(catalogue, "REPOSITORY", tmp_path / "repo")  # ../shared/data/ is not there
    study = load_study("merged_cifar10_cnn")
    assert f"dataset.root={tmp_path / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'}" in study.base
    with pytest.raises(ConfigError, match=r"cifar10-jpeg.tar.gz: no such file \(conf/study/base/cifar10_jpeg.yaml, "
                                          r"files: cifar10_jpeg\); set SDNN_CIFAR10_JPEG="):
        study.check_files()
    load_study("digits").check_files()  # a study without files: nothing to check


# ----------------------------------------------------------------------------- a broken catalogue file

@pytest.fixture
def shelf(tmp_path, monkeypatch):
    """An empty catalogue of its own (conf/study/ with base/ and variants/), the real sets copied in."""
    root = tmp_path / "study"
    for sub in ("base", "variants"):
        (root / sub).mkdir(parents=True)
    for path in (ROOT / "conf" / "study" / "variants").glob("*.yaml"):
        (root / "variants" / path.name).write_text(path.read_text())
    (root / "base" / "digits.yaml").write_text((ROOT / "conf" / "study" / "base" / "digits.yaml").read_text())
    monkeypatch.setattr(catalogue, "CATALOGUE", root)
    return root


@pytest.mark.parametrize("text, words", [
    ("seeds: [0, 1\nvariants: [regime]\n", "x.yaml: not valid YAML ("),
    ("seeds: [0]\nvariants: [regime]\nepochs: 3\n", "x.yaml: unknown key(s) ['epochs']"),
    ("- a\n- b\n", "x.yaml: must be a mapping of"),
    ("seeds: [0, one]\nvariants: [regime]\n", "x.yaml: seeds must be a non-empty list of integers"),
    ("seeds: [0]\nvariants: [nosuchset]\n", "variant set 'nosuchset' is not a file of conf/study/variants/; "
                                            "available: ablations, losses, regime"),
    ("seeds: [0]\nbase: [digits, nosuchbase]\nvariants: [regime]\n", "base 'nosuchbase' is not a file"),
    ("seeds: [0]\nvariants: [regime, {main: {}}]\n", "variant 'main' is given twice"),
    ("seeds: [0]\nvariants: [{main: {method: magic}}]\n", "method 'magic' is not one of sdnn, baseline"),
    ("seeds: [0]\nvariants: [{main: {overrides: model=lr}}]\n", "overrides must be a list of strings"),
    ("seeds: [0]\nvariants: [{main: {override: [model=lr]}}]\n", "variant 'main' must be a mapping of"),
    ("seeds: [0]\nvariants: [{main: {}}]\ndefault_variants: [reweight]\n", "default_variants ['reweight'] are not"),
    ("seeds: [0]\noverrides: ['dataset.path={features}']\nvariants: [regime]\n", "names {features}, which no files"),
    ("seeds: [0]\nvariants: [regime]\nabout: !!python/object/apply:os.system ['touch hacked']\n",
     "x.yaml: not valid YAML (could not determine a constructor"),
])
def test_a_broken_study_file_is_one_line_naming_it(shelf, tmp_path, text, words):
    (shelf / "x.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_study("x")
    message = str(info.value)
    assert words in message and "\n" not in message and "x.yaml" in message
    assert not (tmp_path / "hacked").exists() and not Path("hacked").exists()  # nothing a file says is run


def test_a_variant_set_that_includes_itself_is_an_error(shelf):
    (shelf / "variants" / "loop.yaml").write_text("- main: {}\n- loop\n")
    (shelf / "x.yaml").write_text("seeds: [0]\nvariants: [loop]\n")
    with pytest.raises(ConfigError, match=r"variant set 'loop' includes itself \(loop → loop\)"):
        load_study("x")


def test_a_new_study_is_one_small_file_with_its_own_data_file(shelf, tmp_path, monkeypatch):
    """What the next regime cell looks like: a features file, a base from the catalogue, a variant set."""
    (shelf / "features_lr.yaml").write_text(
        "about: LR on my features\nregime: features × LR\n"
        "files: {features: data/features.npz, audio: data/audio.npz}\n"
        "overrides: [dataset=npz, 'dataset.path={features}', model=lr]\nseeds: [3, 4]\n"
        "variants: [regime, {k=4: {overrides: [subclass.num_classes_to_repartition=4]}},\n"
        "           {audio: {overrides: ['dataset.path={audio}']}}]\n"
        "default_variants: [main, reweight]\n")
    monkeypatch.setattr(catalogue, "REPOSITORY", tmp_path)
    study = load_study("features_lr")
    assert study.base == ("dataset=npz", f"dataset.path={tmp_path / 'data' / 'features.npz'}", "model=lr")
    assert study.seeds == (3, 4) and study.pick(None) == ["main", "reweight"]
    assert list(study.variants)[-2:] == ["k=4", "audio"] and study.pick(["all"])[0] == "main"
    assert study.variants["audio"].overrides == (f"dataset.path={tmp_path / 'data' / 'audio.npz'}",)
    assert study.variants["loss=focal"] == Variant(overrides=("loss=focal",), method="baseline")
    assert "features_lr" in study_names()
    with pytest.raises(ConfigError, match="features.npz: no such file .*SDNN_FEATURES=/path/to/features.npz"):
        study.check_files()


def test_the_help_lists_the_catalogue(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sdnn.study", "--list"], cwd=ROOT, capture_output=True, text=True,
                          timeout=QUICK_GUARD)
    assert proc.returncode == 0, proc.stderr
    for name in study_names():
        assert f"  {name} " in proc.stdout


def test_a_broken_base_file_is_named(shelf):
    (shelf / "base" / "typo.yaml").write_text("overides: [model=lr]\n")
    (shelf / "x.yaml").write_text("seeds: [0]\nbase: [typo]\nvariants: [regime]\n")
    with pytest.raises(ConfigError, match=r"base/typo.yaml: unknown key\(s\) \['overides'\]; the keys are files, "
                                          r"overrides$"):
        load_study("x")
