"""The two-phase strategy in-process: cache reuse, determinism, every partitioner and augmenter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sdnn.errors import ConfigError
from tests.conftest import write_npz


def test_cached_phase1_gives_the_same_run_as_a_fresh_one(run_pipeline, tmp_path):
    fresh = run_pipeline(["model=mlp"])
    reused = run_pipeline(["model=mlp"])  # same cache folder: phase 1 and partition come from disk
    uncached = run_pipeline(["model=mlp", "phase1.use_cache=false"], cache=tmp_path / "other")
    assert fresh["phase1"]["cached"] is False and reused["phase1"]["cached"] is True
    for other in (reused, uncached):
        assert other["theta"] == fresh["theta"]
        assert other["selected_classes"] == fresh["selected_classes"]
        assert other["subclass_sizes"] == fresh["subclass_sizes"]
        assert other["test"] == fresh["test"]


def test_a_different_seed_is_a_different_phase1(run_pipeline):
    a = run_pipeline(["model=mlp", "seed=1"])
    b = run_pipeline(["model=mlp", "seed=2"])
    assert a["phase1"]["cache_dir"] != b["phase1"]["cache_dir"] and a["theta"] != b["theta"]


@pytest.mark.parametrize("partitioner", ["kmeans", "median_split", "random"])
@pytest.mark.parametrize("augmenter", ["none", "sample_pairing", "extrapolation"])
def test_every_partitioner_and_augmenter(run_pipeline, tmp_path, partitioner, augmenter):
    results = run_pipeline(["model=mlp", "trainer.max_epochs=1", f"partitioner={partitioner}",
                            f"augmenter={augmenter}", "subclass.per_class=3"])
    class_sizes = {c: int(n) for c, n in zip(*np.unique(_digits_train_labels(), return_counts=True))}
    for cls in results["selected_classes"]:
        sizes = results["subclass_sizes"][str(cls)]
        expected_total = class_sizes[cls] * (1 if augmenter == "none" else 2)
        assert len(sizes) == 3 and sum(sizes) == expected_total and min(sizes) > 0
        if partitioner in ("median_split", "random") and augmenter == "none":
            assert max(sizes) - min(sizes) <= 1  # equal runs
    assert len(results["subclass_to_class"]) == 10 + 2 * 2
    assert results["augmenter"] == augmenter


def test_partition_in_phase1_feature_space_and_fixed_classes(run_pipeline):
    results = run_pipeline(["model=mlp", "partitioner.space=features", "subclass.classes=[1,8]"])
    assert results["selected_classes"] == [1, 8]
    assert results["phase1"]["cached"] is False and results["theta"] is not None  # features need phase 1
    fixed = run_pipeline(["model=mlp", "subclass.classes=[1,8]"])
    assert fixed["theta"] is None and fixed["phase1"]["origin"].startswith("skipped")


def test_softmax_loss_and_results_file(run_pipeline, tmp_path):
    results = run_pipeline(["model=mlp", "loss=ce"], run_dir=tmp_path / "ce")
    on_disk = json.loads((tmp_path / "ce" / "results.json").read_text())
    assert on_disk["test"] == results["test"] and on_disk["config"]["loss"]["name"] == "ce"
    assert (tmp_path / "ce" / "subclasses.json").is_file()


@pytest.mark.parametrize("kind, model", [("vectors", "lr"), ("vectors", "cnn1d"), ("vectors", "mlp"),
                                         ("gray", "cnn"), ("nchw", "cnn"), ("nhwc", "mlp")])
def test_npz_layouts_and_backbones(run_pipeline, tmp_path, kind, model):
    path = write_npz(tmp_path / f"{kind}.npz", kind, with_val=True)
    results = run_pipeline(["dataset=npz", f"dataset.path={path}", f"model={model}", "dataset.batch_size=32",
                            "trainer.max_epochs=8", "subclass.num_classes_to_repartition=1"])
    assert len(results["theta"]) == 3 and len(results["selected_classes"]) == 1
    assert results["augmenter"] == ("extrapolation" if kind == "vectors" else "sample_pairing")
    assert results["test"]["acc"] > 0.5  # the toy problem is learnable in a few epochs


def test_cnn_on_vectors_is_a_config_error(run_pipeline, tmp_path):
    path = write_npz(tmp_path / "v.npz", "vectors")
    with pytest.raises(ConfigError, match="model=cnn needs images"):
        run_pipeline(["dataset=npz", f"dataset.path={path}", "model=cnn"])


def _digits_train_labels():
    from sdnn.data.digits import load_digits_splits

    return load_digits_splits().y_train.numpy()


def test_baseline_matches_phase2_initialisation_seeded(run_pipeline):
    a = run_pipeline(["model=mlp", "method=baseline"])
    b = run_pipeline(["model=mlp", "method=baseline"])
    assert a["test"] == b["test"]
    assert torch.tensor(a["test"]["per_class_acc"]).le(1).all()


def test_fractional_phase1_selects_from_its_partial_window(run_pipeline, capsys):
    results = run_pipeline(["model=mlp", "phase1.epochs=0.5", "dataset.batch_size=32"])
    history = results["theta_history"]
    steps_per_epoch = 1257 // 32
    assert len(history) == 1 and history[0]["complete"] is False
    assert history[0]["steps"] == -(-steps_per_epoch // 2)  # ceil(0.5 epoch)
    assert results["phase1"]["selected_from_complete_window"] is False
    assert "shorter than one window" in capsys.readouterr().out
    tau = run_pipeline(["model=mlp", "phase1.epochs=0.5", "dataset.batch_size=32", "phase1.tau=6"])
    assert [w["steps"] for w in tau["theta_history"]] == [6, 6, 6, 2]
    assert tau["theta"] == tau["theta_history"][2]["theta"]  # the last complete window
