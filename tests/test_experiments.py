"""experiment=paper/<dataset>_<model>: composed against SPEC §6, then run for a few batches."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import compose_config

CELLS = [(d, m) for d in ("cifar10", "cifar100", "svhn") for m in ("vgg16", "wrn")]
# SPEC §6, written out independently of the configs.
CUTOUT = {"cifar10": 16, "cifar100": 8, "svhn": 20}
LR = {"cifar10": 0.1, "cifar100": 0.1, "svhn": 0.01}
CLASSES_TO_SPLIT = {"cifar10": 2, "cifar100": 10, "svhn": 2}
WRN = {"cifar10": (28, 10, 0.3), "cifar100": (28, 10, 0.3), "svhn": (16, 8, 0.4)}


@pytest.mark.parametrize("dataset, model", CELLS)
def test_paper_config_matches_spec_section_6(dataset, model):
    cfg = compose_config([f"experiment=paper/{dataset}_{model}"])
    assert cfg.dataset.name == dataset and cfg.model.name == model
    assert cfg.method == "sdnn" and cfg.loss.name == "bce"
    assert cfg.partitioner.name == "kmeans" and cfg.augmenter.name == "sample_pairing"
    assert cfg.trainer.max_epochs == 200 and cfg.phase1.epochs == 30 and cfg.dataset.batch_size == 128
    optim, scheduler = cfg.optim, cfg.scheduler
    assert optim._target_ == "torch.optim.SGD" and optim._partial_
    assert (optim.lr, optim.momentum, optim.nesterov, optim.weight_decay) == (LR[dataset], 0.9, True, 5e-4)
    assert scheduler._target_ == "torch.optim.lr_scheduler.MultiStepLR"
    assert list(scheduler.milestones) == [60, 120, 160] and scheduler.gamma == 0.2
    assert cfg.subclass.num_classes_to_repartition == CLASSES_TO_SPLIT[dataset]
    assert cfg.subclass.per_class == 2 and cfg.subclass.sibling_weight == 1.0
    augment = cfg.dataset.augment
    assert augment.cutout == CUTOUT[dataset]
    if dataset == "svhn":
        assert augment.crop_padding == 0 and not augment.flip and cfg.dataset.use_extra
    else:
        assert augment.crop_padding == 4 and augment.flip
    if model == "wrn":
        backbone = cfg.model.backbone
        assert (backbone.depth, backbone.widen_factor, backbone.dropout) == WRN[dataset]
    else:
        assert cfg.model.backbone.hidden == 4096 and cfg.model.backbone.batch_norm


def test_baseline_and_overrides_compose_on_top_of_an_experiment():
    cfg = compose_config(["experiment=paper/cifar100_wrn", "method=baseline", "model.backbone.depth=16",
                          "scheduler.gamma=0.1", "seed=3"])
    assert cfg.method == "baseline" and cfg.model.backbone.depth == 16 and cfg.scheduler.gamma == 0.1 and cfg.seed == 3
    assert cfg.model.backbone.widen_factor == 10


def test_model_wrn_follows_the_dataset_outside_experiments():
    assert compose_config(["dataset=svhn", "model=wrn"]).model.backbone.depth == 16
    assert compose_config(["dataset=cifar10", "model=wrn"]).model.backbone.depth == 28
    assert np.isclose(compose_config(["dataset=svhn", "model=wrn"]).model.backbone.dropout, 0.4)


def _write_tiny_official_files(root, dataset: str) -> None:
    """A few images per class in the official file format of ``dataset``."""
    rng = np.random.default_rng(0)
    classes = 100 if dataset == "cifar100" else 10
    per_class = 3 if dataset == "cifar100" else 6

    def images(n):
        y = np.arange(n) % classes
        return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), y

    (x_train, y_train), (x_test, y_test) = images(classes * per_class), images(2 * classes)
    if dataset == "svhn":
        from sdnn.data.svhn import write_svhn_mat

        root.mkdir(parents=True)
        half = len(x_train) // 2
        write_svhn_mat(root / "train_32x32.mat", x_train[:half], y_train[:half])
        write_svhn_mat(root / "extra_32x32.mat", x_train[half:], y_train[half:])
        write_svhn_mat(root / "test_32x32.mat", x_test, y_test)
    else:
        from sdnn.data.cifar import write_cifar_batches

        write_cifar_batches(root, dataset, x_train, y_train, x_test, y_test)


# WRN-28-10 takes seconds per step on two CPU cores: those two cells run with `pytest -m slow`, and so do VGG16 on
# CIFAR-100 and SVHN (their configs are checked key by key above; the default suite trains one VGG16 and one WRN)
SLOW_CELLS = (("wrn", "cifar10"), ("wrn", "cifar100"), ("vgg16", "cifar100"), ("vgg16", "svhn"))
SMOKE_CELLS = [pytest.param(d, m, marks=pytest.mark.slow) if (m, d) in SLOW_CELLS else (d, m) for d, m in CELLS]


@pytest.mark.parametrize("dataset, model", SMOKE_CELLS)
def test_paper_config_runs_both_phases_for_a_few_batches(tmp_path, run_pipeline, dataset, model):
    root = tmp_path / "data"
    _write_tiny_official_files(root, dataset)
    batch = 16 if dataset == "cifar100" else 8  # phase 1 must see ≥ 10 CIFAR-100 classes in 2 steps
    results = run_pipeline([f"experiment=paper/{dataset}_{model}", f"dataset.root={root}",
                            f"dataset.batch_size={batch}", "phase1.epochs=1", "trainer.max_epochs=1",
                            "+trainer.limit_train_batches=2", "+trainer.limit_test_batches=1",
                            "observe.per_class_test_acc=false"])  # Fig. 1's test pass: not this test's subject
    k = CLASSES_TO_SPLIT[dataset]
    assert results["method"] == "sdnn" and results["dataset"] == dataset and results["model"] == model
    assert len(results["selected_classes"]) == k
    classes = 100 if dataset == "cifar100" else 10
    assert len(results["subclass_to_class"]) == classes + k
    assert results["config"]["scheduler"]["milestones"] == [60, 120, 160]
    assert 0.0 <= results["test"]["acc"] <= 1.0 and results["partition_seconds"] >= 0


def test_untracked_local_overrides_apply_last(tmp_path):
    """conf/local/default.yaml (git-ignored) is loaded when present and wins over the defaults."""
    import shutil

    from hydra import compose, initialize_config_dir

    from tests.conftest import ROOT

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "local" / "default.yaml").write_text("# @package _global_\nphase1:\n  cache_dir: /scratch/me\n"
                                                  "dataset:\n  batch_size: 32\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=paper/cifar10_vgg16"])
    assert cfg.phase1.cache_dir == "/scratch/me" and cfg.dataset.batch_size == 32


@pytest.mark.parametrize("model", ["cnn", "lr"])
@pytest.mark.parametrize("features", ["rgb", "rgb_audio"])
def test_yt8m_paper_configs_match_spec_section_6(model, features):
    cfg = compose_config([f"experiment=paper/yt8m_{model}_{features}"])
    assert cfg.dataset.name == "yt8m" and cfg.dataset.features == features and cfg.dataset.num_classes == 3862
    assert cfg.model.name == {"cnn": "cnn1d", "lr": "lr"}[model]
    if model == "cnn":
        assert (cfg.model.backbone.filters, cfg.model.backbone.kernel_size, cfg.model.backbone.dropout) == (64, 3, 0.3)
    assert cfg.loss.name == "bce" and cfg.method == "sdnn"
    assert cfg.trainer.max_epochs == 5 and cfg.dataset.batch_size == 512
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 5e-4
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.ExponentialLR" and cfg.scheduler.gamma == 0.95
    assert cfg.phase1.epochs == 0.333 and cfg.subclass.num_classes_to_repartition == 386
    assert cfg.subclass.per_class == 2 and cfg.subclass.sibling_weight == 1.0
    assert cfg.partitioner.name == "median_split" and cfg.augmenter.name == "extrapolation" and cfg.augmenter.lam == 0.5
