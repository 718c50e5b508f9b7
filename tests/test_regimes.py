"""Where subclasses pay off (SPEC §7b, §8): merged and coarse labels, partition quality against the fine
labels (NMI / ARI), the reweight control and its loss, and a merged study end to end."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sdnn.config import validate_config
from sdnn.data.cifar import CIFAR100_CLASSES, CIFAR100_FINE_TO_COARSE, CIFAR100_SUPERCLASSES, write_cifar_batches
from sdnn.data.sources import Cifar, Digits
from sdnn.errors import ConfigError, DataError, SDNNError
from sdnn.losses import SigmoidCrossEntropy
from sdnn.partition import KMeansSplit, RandomSplit, partition_quality
from sdnn.repartition import repartition
from sdnn.augment import NoAugmentation
from tests.conftest import compose_config, read_results, run_cli

PAIRS = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


# ----------------------------------------------------------------------------- merged labels

def test_merge_relabels_every_split_and_keeps_the_originals_as_fine_labels():
    plain = Digits(name="digits", val_fraction=0.2, train_per_class=40).load()
    merged = Digits(name="digits", val_fraction=0.2, train_per_class=40, merge=PAIRS).load()
    assert merged.num_classes == 5 and merged.class_names == ["0+1", "2+3", "4+5", "6+7", "8+9"]
    assert merged.fine_names == [str(d) for d in range(10)]
    for split in ("train", "val", "test"):
        original = getattr(plain, f"y_{split}")
        assert torch.equal(getattr(merged, f"x_{split}"), getattr(plain, f"x_{split}"))  # the same images
        assert torch.equal(getattr(merged, f"fine_{split}"), original)
        expected = torch.tensor([PAIRS[int(v)] for v in original])
        assert torch.equal(getattr(merged, f"y_{split}"), expected)
    # dataset.train_per_class counts the original classes: 40 each, so 80 a merged class
    assert Counter(merged.y_train.tolist()) == {k: 80 for k in range(5)}
    assert plain.fine_train is None


def test_merge_uneven_groups_names_and_counts():
    merged = Digits(name="digits", merge=[2, 0, 0, 0, 1, 1, 1, 1, 1, 0]).load()
    assert merged.num_classes == 3 and merged.class_names == ["1+2+3+9", "4+5+6+7+8", "0"]


@pytest.mark.parametrize("merge, words", [
    ("[0,0,2,2,3,3,4,4,5,5]", "none skipped"),     # a gap: class 1 unused
    ("[0,0,0,0,0,0,0,0,0,0]", "c' >= 2"),           # one class left
    ("[-1,0,1,1,2,2,3,3,4,4]", "none skipped"),
    ("[0,0,1,1,2,2,3,3,4,a]", "dataset.merge"),      # not an integer
    ("[0,0.5,1,1,2,2,3,3,4,4]", "dataset.merge"),
])
def test_bad_merge_lists_fail_before_any_work(merge, words):
    with pytest.raises(ConfigError, match=words) as info:
        validate_config(compose_config([f"dataset.merge={merge}"]))
    assert "dataset.merge" in str(info.value) and "\n" not in str(info.value)


def test_merge_of_the_wrong_length_is_one_line_from_the_cli(tmp_path):
    proc = run_cli([f"hydra.run.dir={tmp_path / 'r'}", "dataset.merge=[0,0,1,1,2,2,3,3,4]", "logger=none"])
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "dataset.merge has 9 entries but dataset 'digits' has 10 classes" in proc.stderr
    assert not (tmp_path / "r" / "results.json").exists()


# ----------------------------------------------------------------------------- CIFAR-100 superclasses

def _cifar100(root, rng, per_class=2, coarse=None):
    y_train = np.repeat(np.arange(100), per_class)
    y_test = np.arange(100)
    x = lambda n: rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)  # noqa: E731
    folder = write_cifar_batches(root, "cifar100", x(len(y_train)), y_train, x(len(y_test)), y_test)
    return folder, y_train, y_test


def test_cifar100_coarse_labels_from_files_in_the_official_format(tmp_path):
    rng = np.random.default_rng(0)
    _, y_train, y_test = _cifar100(tmp_path, rng)
    data = Cifar(name="cifar100", root=str(tmp_path), coarse_labels=True).load()
    assert data.num_classes == 20 and data.class_names == list(CIFAR100_SUPERCLASSES)
    assert data.fine_names == list(CIFAR100_CLASSES)
    assert torch.equal(data.fine_train, torch.from_numpy(y_train)) and torch.equal(data.fine_test,
                                                                                   torch.from_numpy(y_test))
    assert data.y_train.tolist() == [CIFAR100_FINE_TO_COARSE[v] for v in y_train]
    # spot checks of the official table: apple → fruit and vegetables, whale → aquatic mammals
    assert data.class_names[data.y_test[0]] == "fruit_and_vegetables"
    assert data.class_names[data.y_test[CIFAR100_CLASSES.index("whale")]] == "aquatic_mammals"
    # the composed configuration reaches the same loader
    cfg = compose_config(["dataset=cifar100", f"dataset.root={tmp_path}", "dataset.coarse_labels=true"])
    assert cfg.dataset.coarse_labels is True and cfg.dataset._target_ == "sdnn.data.sources.Cifar"


def test_cifar100_coarse_labels_that_disagree_are_a_data_error(tmp_path):
    import pickle

    rng = np.random.default_rng(1)
    folder, _, _ = _cifar100(tmp_path, rng)
    with open(folder / "train", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["coarse_labels"][1] = (batch["coarse_labels"][1] + 1) % 20  # class 0 now in two superclasses
    with open(folder / "train", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(DataError, match="more than one coarse label"):
        Cifar(name="cifar100", root=str(tmp_path), coarse_labels=True).load()


def test_coarse_labels_need_cifar100_and_exclude_merge(tmp_path):
    with pytest.raises(ConfigError, match="choose one"):
        Cifar(name="cifar100", root=str(tmp_path), coarse_labels=True, merge=[0, 1])
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(10, 3, 32, 32), dtype=np.uint8)
    write_cifar_batches(tmp_path, "cifar10", x, np.arange(10), x, np.arange(10), batches=5)
    with pytest.raises(SDNNError, match="cifar10 has no superclasses"):
        Cifar(name="cifar10", root=str(tmp_path), coarse_labels=True).load()


# ----------------------------------------------------------------------------- partition quality

def _entropy(labels):
    p = np.array(list(Counter(labels).values()), dtype=float) / len(labels)
    return -(p * np.log(p)).sum()


def _nmi(a, b):
    """NMI with the arithmetic mean of the entropies (scikit-learn's default), from its definition."""
    mi = 0.0
    n = len(a)
    for x in set(a):
        for y in set(b):
            joint = sum(1 for i in range(n) if a[i] == x and b[i] == y) / n
            if joint:
                pa, pb = a.count(x) / n, b.count(y) / n
                mi += joint * math.log(joint / (pa * pb))
    ha, hb = _entropy(a), _entropy(b)
    return 1.0 if ha == hb == 0 else mi / ((ha + hb) / 2)


def _ari(a, b):
    comb = lambda k: k * (k - 1) / 2  # noqa: E731
    n = len(a)
    pairs = sum(comb(sum(1 for i in range(n) if a[i] == x and b[i] == y)) for x in set(a) for y in set(b))
    rows, cols = sum(comb(a.count(x)) for x in set(a)), sum(comb(b.count(y)) for y in set(b))
    expected = rows * cols / comb(n)
    return (pairs - expected) / ((rows + cols) / 2 - expected)


def test_partition_quality_on_a_hand_made_case():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    fine = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5])
    subclasses = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])  # class 0: the fine classes; class 1: across them
    out = partition_quality(labels, subclasses, fine, [0, 1], names=[str(i) for i in range(6)])
    assert out["per_class"]["0"] == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "fine": [0, 1],
                                     "fine_names": ["0", "1"]}
    assert out["per_class"]["1"]["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert out["per_class"]["1"]["ari"] == pytest.approx(-0.5)  # contingency [[1, 1], [1, 1]]
    assert out["nmi"] == pytest.approx(0.5) and out["ari"] == pytest.approx(0.25) and "2" not in out["per_class"]


def test_partition_quality_equals_scikit_learn_and_the_definitions():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=300)
    fine = 2 * labels + rng.integers(0, 2, size=300)
    subclasses = np.where(rng.random(300) < 0.8, fine % 2, rng.integers(0, 2, size=300))  # a noisy recovery
    out = partition_quality(labels, subclasses, fine, [0, 2])
    for cls in (0, 2):
        members = labels == cls
        a, b = fine[members].tolist(), subclasses[members].tolist()
        got = out["per_class"][str(cls)]
        assert got["nmi"] == pytest.approx(normalized_mutual_info_score(a, b))
        assert got["ari"] == pytest.approx(adjusted_rand_score(a, b))
        assert got["nmi"] == pytest.approx(_nmi(a, b)) and got["ari"] == pytest.approx(_ari(a, b))
    for key in ("nmi", "ari"):
        assert out[key] == pytest.approx((out["per_class"]["0"][key] + out["per_class"]["2"][key]) / 2)


def test_kmeans_recovers_merged_digits_and_a_random_split_does_not():
    """SPEC §8's premise: a merged class is two modes that k-means finds (NMI near 1), a random split not."""
    data = Digits(name="digits", merge=PAIRS).load()
    flat = lambda x: x.flatten(1)  # noqa: E731
    quality = {}
    for partitioner in (KMeansSplit(), RandomSplit()):
        part = repartition(data.x_train, data.y_train, [0, 2, 4], 2, partitioner, NoAugmentation(), flat, seed=0)
        quality[partitioner.name] = partition_quality(data.y_train, part.subclass_of_train, data.fine_train,
                                                      part.classes)["nmi"]
    assert quality["kmeans"] > 0.6 and quality["random"] < 0.05


# ----------------------------------------------------------------------------- reweight

def _reference_weighted_bce(logits, labels, weight):
    """Eq. 3 with the positive term of class i × weight[i], one sample and one class at a time."""
    total = 0.0
    n, c = logits.shape
    for k in range(n):
        for i in range(c):
            h = float(logits[k, i])
            log_q = -math.log1p(math.exp(-h)) if h > 0 else h - math.log1p(math.exp(h))
            log_not_q = log_q - h
            y = 1.0 if labels[k] == i else 0.0
            total -= weight[i] * y * log_q + (1 - y) * log_not_q
    return total / n


@pytest.mark.parametrize("scale", [0.1, 3.0, 40.0])
def test_reweight_loss_equals_a_slow_reference(scale):
    gen = torch.Generator().manual_seed(int(scale * 10))
    logits = (scale * torch.randn(12, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, 5, (12,), generator=gen)
    weight = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0])
    loss = SigmoidCrossEntropy().reweighted(weight)(logits, labels)
    assert float(loss.detach()) == pytest.approx(_reference_weighted_bce(logits.detach(), labels.tolist(), weight.tolist()),
                                        rel=1e-9)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    plain = SigmoidCrossEntropy().reweighted(torch.ones(5))(logits.detach(), labels)
    assert float(plain) == pytest.approx(float(SigmoidCrossEntropy()(logits.detach(), labels)))


def test_reweight_run_shares_phase1_and_selection_with_sdnn(run_pipeline, tmp_path):
    merged = ["dataset.merge=[0,0,1,1,2,2,3,3,4,4]", "model=lr"]
    sdnn = run_pipeline([*merged])
    control = run_pipeline([*merged, "method=reweight"])
    assert control["method"] == "reweight" and control["phase1"]["cached"] is True  # sdnn's phase 1
    assert control["selected_classes"] == sdnn["selected_classes"] and control["theta"] == sdnn["theta"]
    assert control["subclass_to_class"] == list(range(5))  # no split
    weights = control["positive_weight"]
    assert [i for i, w in enumerate(weights) if w == 2.0] == control["selected_classes"]
    assert all(w == 1.0 for i, w in enumerate(weights) if i not in control["selected_classes"])
    assert control["partition_quality"] is None and "subclass_sizes" not in control
    assert set(control["figures"]) == {"fig1_neglect_and_accuracy", "fig2_gradient_norms", "neglect_vs_error",
                                       "test_accuracy_per_class"}  # phase 1 from the cache: its figures too
    # SDNN on merged classes: NMI / ARI per split class, from the original samples
    quality = sdnn["partition_quality"]
    assert set(quality["per_class"]) == {str(c) for c in sdnn["selected_classes"]}
    for cls, entry in quality["per_class"].items():
        assert entry["fine"] == [2 * int(cls), 2 * int(cls) + 1] and 0 <= entry["nmi"] <= 1
    assert sdnn["class_names"] == ["0+1", "2+3", "4+5", "6+7", "8+9"]


def test_reweight_needs_the_sigmoid_loss(run_pipeline):
    with pytest.raises(ConfigError, match="method=reweight .* use loss=bce"):
        run_pipeline(["method=reweight", "loss=ce"])


def test_partition_quality_is_null_without_fine_labels(run_pipeline):
    results = run_pipeline(["model=lr", "subclass.classes=[3]", "trainer.max_epochs=1"])
    assert "partition_quality" in results and results["partition_quality"] is None


# ----------------------------------------------------------------------------- a merged study end to end

def test_merged_study_with_its_controls_end_to_end(tmp_path):
    from sdnn.study import main

    out = tmp_path / "study"
    fast = ["trainer.max_epochs=2", "phase1.epochs=1"]
    code = main(["merged_digits_lr", "--seeds", "0", "--variants", "main", "partitioner=random", "reweight",
                 "--out", str(out), "--", *fast])
    assert code == 0
    report = json.loads((out / "study.json").read_text())
    assert report["regime"] == "digits merged 2→1 × LR"
    runs = out / "runs"
    for variant, folder, method in (("main", "sdnn-main", "sdnn"), ("partitioner=random", "sdnn-partitioner_random",
                                                                     "sdnn"), ("reweight", "reweight-reweight", "reweight")):
        results = read_results(runs / folder / "seed0")
        assert results["method"] == method and results["config"]["dataset"]["merge"] == PAIRS
        assert report["variants"][variant]["method"] == method
    base = read_results(runs / "baseline" / "seed0")
    main_run = read_results(runs / "sdnn-main" / "seed0")
    assert report["variants"]["main"]["test"]["diff_per_seed"][0] == pytest.approx(
        main_run["test"]["acc"] - base["test"]["acc"])
    assert report["variants"]["main"]["nmi"]["per_seed"] == [main_run["partition_quality"]["nmi"]]
    assert report["variants"]["main"]["nmi"]["per_seed"][0] > report["variants"]["partitioner=random"]["nmi"][
        "per_seed"][0]
    assert "nmi" not in report["variants"]["reweight"]
    text = (out / "study.md").read_text()
    assert "| reweight | reweight |" in text and "| NMI |" in text
    assert main(["map", str(out), "--out", str(tmp_path / "map")]) == 0
    table = (tmp_path / "map" / "map.md").read_text()
    assert "digits merged 2→1 × LR" in table and (tmp_path / "map" / "map.png").stat().st_size > 0
