"""sdnn.config: the schema types the plain keys at composition, the typed settings check ranges,
Hydra's composition errors read as one line, and results.json round-trips through Results."""

from __future__ import annotations

import json
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

from sdnn.build import instantiate_group
from sdnn.config import (CheckpointConfig, Method, Phase1Config, SubclassConfig, composition_error, typed,
                         validate_config)
from sdnn.errors import ConfigError
from sdnn.results import Results
from tests.conftest import ROOT, compose_config


def _composition_failure(overrides: list[str]) -> BaseException:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        with pytest.raises((ConfigCompositionException, MissingConfigException)) as caught:
            compose(config_name="config", overrides=overrides)
    return caught.value


def test_plain_keys_are_typed_when_composed():
    cfg = compose_config(["phase1.epochs=2", "seed=7", "method=baseline"])
    assert cfg.phase1.epochs == 2.0 and isinstance(cfg.phase1.epochs, float)
    assert cfg.method == Method.baseline == "baseline" and f"{cfg.method}" == "baseline"
    for overrides, key in ((["seed=abc"], "seed"), (["phase1.epochs=many"], "phase1.epochs"),
                           (["method=sdn"], "method"), (["subclass.classes=[a]"], "subclass.classes"),
                           (["observe.figures=maybe"], "observe.figures")):
        message = composition_error(_composition_failure(overrides))
        assert message.startswith(overrides[0].split("=")[0]) and key in message and "\n" not in message


def test_composition_errors_name_the_option_and_where_a_key_went():
    message = composition_error(_composition_failure(["model=resnet9000"]))
    assert message.startswith("model=resnet9000 is not an option; choose one of: cnn, cnn1d, custom")
    message = composition_error(_composition_failure(["optim.milestones=[3]"]))
    assert "optim.milestones is not a key" in message and "scheduler.milestones" in message
    message = composition_error(_composition_failure(["model.depth=16"]))
    assert "model.backbone.depth" in message
    assert composition_error(ValueError("a bug")) is None  # anything else keeps its traceback


def test_an_override_hydra_cannot_parse_is_one_line_with_the_grammar():
    for override, start in (("+foo", "+foo: an override needs a value: +foo=<value>"),
                            ("+trainer.gradient_clip_val", "+trainer.gradient_clip_val: an override needs a value"),
                            ("seed=[1", "seed=[1: Hydra cannot parse this override (no viable alternative")):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            with pytest.raises(OverrideParseException) as caught:
                compose(config_name="config", overrides=[override])
        message = composition_error(caught.value)
        assert message.startswith(start) and "\n" not in message and "key=value sets a key" in message


@pytest.mark.parametrize("overrides, guess", [
    (["modle=cnn"], "modle is not a key of this configuration; did you mean model=cnn?"),      # a group's name
    (["subclas.per_class=3"], "did you mean subclass.per_class=3?"),
    (["subclass.per_clas=3"], "did you mean subclass.per_class=3?"),                          # a schema key
    (["trainer.max_epoch=3"], "did you mean trainer.max_epochs=3?"),                          # an option's key
    (["dataset=cifar10", "dataset.rot=/data"], "did you mean dataset.root=/data?"),
    (["model=cnnn"], "model=cnnn is not an option; did you mean model=cnn? choose one of: cnn, cnn1d"),
    (["trainer=ddp_cpuu"], "did you mean trainer=ddp_cpu?"),
    (["experiment=paper/cifar10_wrnn"], "did you mean experiment=paper/cifar10_wrn?"),   # an option in a subfolder
    (["sweep=num_clases"], "did you mean sweep=num_classes?"),                                # a sweep (conf/sweep/)
    (["method=sdn"], "did you mean method=sdnn?"),
])
def test_a_misspelled_key_group_or_option_gets_did_you_mean(overrides, guess):
    message = composition_error(_composition_failure(overrides))
    assert guess in message and "\n" not in message


def test_a_misspelled_key_added_with_plus_gets_did_you_mean_and_nothing_is_silently_ignored():
    for overrides, guess in ((["+modle=cnn"], "did you mean model=cnn?"),
                             (["+subclass.per_clas=3"], "did you mean subclass.per_class?"),
                             (["+phase1.epoch=3"], "did you mean phase1.epochs?")):
        with pytest.raises(ConfigError, match=re.escape(guess)):
            validate_config(compose_config(overrides))
    with pytest.raises(ConfigError, match="foo is not a key of this configuration; the top level has: augmenter"):
        validate_config(compose_config(["+foo=1"]))
    validate_config(compose_config(["+trainer.gradient_clip_val=1.0"]))  # any Trainer argument can be added


@pytest.mark.parametrize("override, shown", [("trainer.max_epochs=1.5", "trainer.max_epochs=1.5: "),
                                             ("dataset.batch_size=abc", "dataset.batch_size=abc: "),
                                             ("class2str.rnn_hidden=[1,a]", "class2str.rnn_hidden=[1,a]: ")])
def test_a_value_of_the_wrong_type_is_shown_as_typed(override, shown):
    try:
        cfg = compose_config([override])
    except (ConfigCompositionException, MissingConfigException) as exc:  # a key the schema types at composition
        message = composition_error(exc)
    else:
        with pytest.raises(ConfigError) as caught:
            validate_config(cfg)
        message = str(caught.value)
    assert message.startswith(shown) and "???" not in message


@pytest.mark.parametrize("schema, values, key", [
    (Phase1Config, {"epochs": 0}, "phase1.epochs"),
    (Phase1Config, {"tau": 0}, "phase1.tau"),
    (SubclassConfig, {"per_class": 1}, "subclass.per_class"),
    (SubclassConfig, {"sibling_weight": -0.1}, "subclass.sibling_weight"),
    (SubclassConfig, {"classes": [2, 2]}, "subclass.classes"),
    (SubclassConfig, {"classes": []}, "subclass.classes"),
    (SubclassConfig, {"num_classes_to_repartition": 0}, "subclass.num_classes_to_repartition"),
    (CheckpointConfig, {"resume": "perhaps"}, "checkpoint.resume"),
    (CheckpointConfig, {"every_n_epochs": -1}, "checkpoint.every_n_epochs"),
])
def test_ranges_are_checked_when_the_settings_are_built(schema, values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        typed(schema, values, key.split(".")[0])


def test_typed_settings_from_a_valid_configuration():
    cfg = compose_config(["subclass.classes=[5,3]", "checkpoint.resume=force", "partitioner=median_split",
                          "augmenter=auto", "augmenter.lam=0.25", "trainer.max_epochs=7", "+trainer.benchmark=false"])
    settings = validate_config(cfg)
    assert settings.subclass.classes == [3, 5] and settings.checkpoint.resume == "force"
    assert settings.dataset.name == "digits" and settings.dataset.batch_size == 64
    assert settings.optim.lr == cfg.optim.lr and settings.scheduler.milestones == list(cfg.scheduler.milestones)
    trainer = settings.trainer  # typed keys as fields, every other key passed to the Trainer as given
    assert trainer.target == "pytorch_lightning.Trainer" and trainer.max_epochs == 7
    assert trainer.precision == "32-true" and trainer.log_every_n_steps == cfg.trainer.log_every_n_steps
    assert trainer.arguments == {"deterministic": True, "enable_model_summary": False, "benchmark": False}
    partitioner = instantiate_group("partitioner", cfg.partitioner)
    augmenter = instantiate_group("augmenter", cfg.augmenter)
    assert partitioner.name == "median_split" and partitioner.online
    assert augmenter.lam == 0.25 and augmenter.resolve(True).name == "sample_pairing"
    assert augmenter.resolve(False).name == "extrapolation"
    with pytest.raises(ConfigError, match="optim.lr"):
        validate_config(compose_config(["optim.lr=0"]))
    with pytest.raises(ConfigError, match="dataset.augment.shear is not an option"):
        validate_config(compose_config(["+dataset.augment.shear=2"]))


def test_results_json_round_trips_through_the_schema(run_pipeline, tmp_path):
    payload = run_pipeline(["model=mlp", "trainer.max_epochs=1"], run_dir=tmp_path / "r")
    on_disk = json.loads((tmp_path / "r" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(payload))
    again = Results.from_json(on_disk)
    assert json.loads(json.dumps(again.to_json())) == on_disk
    assert again.names() == [str(i) for i in range(10)] and again.phase1["cached"] is False
    baseline = Results.from_json({"method": "baseline", "dataset": "d", "model": "m", "seed": 0,
                                  "test": {"acc": 0.5}})
    assert "theta_history" not in baseline.to_json() and baseline.to_json()["theta"] is None


@pytest.mark.parametrize("override", ["loss.name=ce", "partitioner.name=random", "augmenter.name=sample_pairing",
                                      "model.name=wrn"])
def test_a_label_set_to_another_option_is_an_error_not_a_mislabelled_run(override):
    group, label = override.split(".name=")
    with pytest.raises(ConfigError, match=f"choose the option: {group}={label}"):
        validate_config(compose_config([override]))
    validate_config(compose_config([f"{group}={label}"]))  # the option itself is fine
    validate_config(compose_config(["partitioner.name=my_split"]))  # a label of your own, too


def test_the_yaml_and_the_schema_agree_on_every_default():
    """conf/config.yaml shows each plain key's default; the schema (RunConfig) types it: the two must not drift."""
    import dataclasses

    from sdnn.config import RunConfig

    cfg = compose_config([])
    for group in dataclasses.fields(RunConfig):
        if not dataclasses.is_dataclass(group.default_factory if group.default_factory is not dataclasses.MISSING
                                        else None):
            continue
        schema = group.default_factory()
        for item in dataclasses.fields(schema):
            if (group.name, item.name) == ("phase1", "cache_dir"):  # ${oc.env:SDNN_CACHE_DIR,...} in the YAML
                continue
            value, default = cfg[group.name][item.name], getattr(schema, item.name)
            if isinstance(default, str):  # checkpoint.resume: `true` in the YAML is the option "true"
                value = str(value).lower()
            assert value == default, f"{group.name}.{item.name}"
