"""The layers import only downwards: floor-1 modules (pure math, data, models) import neither Lightning
nor Hydra; the configuration is checked before torch is imported; every picked group names its class."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from hydra.utils import get_class

from tests.conftest import ROOT, compose_config

PURE = ["sdnn.neglect", "sdnn.losses", "sdnn.partition", "sdnn.augment", "sdnn.subclass", "sdnn.repartition",
        "sdnn.models", "sdnn.data", "sdnn.data.sources", "sdnn.data.custom", "sdnn.data.yt8m", "sdnn.cache",
        "sdnn.results", "sdnn.metrics", "sdnn.stats", "sdnn.plots", "sdnn.class2str", "sdnn.data.preprocess",
        "sdnn.artifact", "sdnn.indicators", "sdnn.verdict", "sdnn.targets", "sdnn.runfolder", "sdnn.data.arrays"]
GROUPS = ("dataset", "model", "loss", "partitioner", "augmenter", "optim", "scheduler", "trainer", "logger")


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(','.join(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return {name.split(".")[0] for name in out.split(",")}


def test_pure_modules_do_not_import_lightning_or_hydra():
    loaded = _imported_after("\n".join(f"import {name}" for name in PURE))
    assert not loaded & {"pytorch_lightning", "lightning", "lightning_fabric", "hydra"}


def test_configuration_checks_run_before_torch_is_imported():
    """A wrong value is reported in about a second: the schemas, partitioners and augmenters need no torch."""
    loaded = _imported_after("import sdnn.config, sdnn.partition, sdnn.augment")
    assert "torch" not in loaded


def _options():
    for group in GROUPS:
        for path in sorted((ROOT / "conf" / group).glob("*.yaml")):
            yield group, path.stem


@pytest.mark.parametrize("group, option", list(_options()))
def test_every_option_of_a_picked_group_names_its_class(group, option):
    cfg = compose_config([f"{group}={option}"])
    node = cfg[group]
    if group == "model":
        node = node.backbone
    if group == "logger" and option == "none":
        assert node._target_ is None
        return
    if option == "custom":
        assert node._get_node("_target_")._is_missing()  # the user's class: model.backbone._target_=...
        return
    assert isinstance(get_class(node._target_), type), node._target_


def test_the_registries_are_the_lists_of_options():
    """Backbones: the timm-style registry equals conf/model/; losses: conf/loss/ is the only list."""
    from torch import nn

    from sdnn.models import BACKBONES

    models = {path.stem: yaml.safe_load(path.read_text())["backbone"]["_target_"]
              for path in (ROOT / "conf" / "model").glob("*.yaml") if path.stem != "custom"}
    assert {name: get_class(target) for name, target in models.items()} == BACKBONES
    losses = {path.stem: yaml.safe_load(path.read_text()) for path in (ROOT / "conf" / "loss").glob("*.yaml")}
    classes = {name: get_class(node["_target_"]) for name, node in losses.items()}
    assert all(cls.__module__ == "sdnn.losses" and issubclass(cls, nn.Module) for cls in classes.values())
    assert all(node["name"] == name for name, node in losses.items())
    from sdnn.checks import subclass_losses

    assert subclass_losses() == sorted(name for name, cls in classes.items() if hasattr(cls, "for_subclasses"))
    assert {"bce", "ce"} <= set(subclass_losses()) and "focal" not in subclass_losses()


def test_the_recipe_is_short_and_names_no_dataset_kind():
    """sdnn/pipeline.py is the paper's recipe over SDNNData: no branch on in-memory vs streamed data."""
    text = (ROOT / "sdnn" / "pipeline.py").read_text()
    assert len(text.splitlines()) <= 200
    for kind in ("yt8m", "YT8M", "TensorSplits", "InMemory", "Streamed", "VideoSubclasses", "Repartition(",
                 "isinstance", "multilabel", "cfg."):
        assert kind not in text, kind


def test_report_and_results_import_no_torch():
    """python -m sdnn.report reads results.json through sdnn.results without loading torch."""
    assert "torch" not in _imported_after("import sdnn.report, sdnn.results")
