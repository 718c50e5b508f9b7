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


def test_partition_in_phase1_feature_space_and_fixed_classes(run_pipeline, tmp_path):
    results = run_pipeline(["model=mlp", "partitioner.space=features", "subclass.classes=[1,8]"],
                           run_dir=tmp_path / "features")
    assert results["selected_classes"] == [1, 8]
    assert results["phase1"]["cached"] is False and results["theta"] is not None  # features need phase 1
    settings = json.loads((tmp_path / "features" / "subclasses.json").read_text())["settings"]
    assert settings["space"] == "features" and settings["classes"] == [1, 8]
    inputs = run_pipeline(["model=mlp", "subclass.classes=[1,8]", "partitioner.space=input", "observe.figures=false"],
                          run_dir=tmp_path / "inputs")
    other = np.load(tmp_path / "inputs" / "partition.npz")["subclass_of_train"]
    assert not np.array_equal(np.load(tmp_path / "features" / "partition.npz")["subclass_of_train"], other)
    assert inputs["theta"] is None
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
                            "trainer.max_epochs=8", "subclass.num_classes_to_repartition=1", "augmenter=auto"])
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


def test_baseline_matches_phase2_initialisation_seeded(run_pipeline, tmp_path):
    """Baseline, phase 1 and phase 2 start from the same seeded backbone (only the head's width
    differs), so the comparison is paired on the initialisation too; a rerun is identical."""
    probe = f"+trainer.callbacks=[{{_target_: tests.ddp_probe.InitialWeights, folder: '{tmp_path / 'w'}'}}]"
    a = run_pipeline(["model=mlp", "method=baseline", probe])
    b = run_pipeline(["model=mlp", "method=baseline"])
    run_pipeline(["model=mlp", probe])
    assert a["test"] == b["test"]
    weights = {phase: torch.load(tmp_path / "w" / f"{phase}.pt") for phase in ("baseline", "phase1", "phase2")}
    backbone = [k for k in weights["baseline"] if k.startswith("backbone.")]
    assert backbone and set(backbone) == {k for k in weights["phase2"] if k.startswith("backbone.")}
    for phase in ("phase1", "phase2"):
        for key in backbone:
            assert torch.equal(weights[phase][key], weights["baseline"][key]), (phase, key)
    assert weights["baseline"]["head.weight"].shape[0] == 10 and weights["phase2"]["head.weight"].shape[0] == 12


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


CUSTOM_BACKBONE = """
import math
from torch import nn

SHAPES = []


class TinyNet(nn.Module):
    def __init__(self, input_shape, width=16):
        super().__init__()
        SHAPES.append(tuple(input_shape))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh())
        self.out_features = width

    def forward(self, x):
        return self.body(x)


class NoWidth(nn.Module):
    def __init__(self, input_shape):
        super().__init__()

    def forward(self, x):
        return x.flatten(1)
"""


def test_a_custom_backbone_runs_end_to_end(run_pipeline, tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(CUSTOM_BACKBONE)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = run_pipeline(["model=custom", "model.backbone._target_=my_nets.TinyNet", "+model.backbone.width=12",
                            "trainer.max_epochs=4"])
    import my_nets

    assert set(my_nets.SHAPES) == {(1, 8, 8)}  # built with input_shape=..., once per phase (and once on meta)
    assert results["model"] == "custom" and results["config"]["model"]["backbone"]["width"] == 12
    assert len(results["subclass_to_class"]) == 12 and results["test"]["acc"] > 0.5
    with pytest.raises(ConfigError, match="no integer out_features"):
        run_pipeline(["model=custom", "model.backbone._target_=my_nets.NoWidth"])
    with pytest.raises(ConfigError, match="model.backbone.depth is not an option"):
        run_pipeline(["model=custom", "model.backbone._target_=my_nets.TinyNet", "+model.backbone.depth=3"])
