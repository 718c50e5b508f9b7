"""Class2Str (sdnn/class2str.py, method=class2str): the loss terms and the mappings against loops written
here from the formulas, one-to-one codes, maximum-likelihood decoding on a hierarchy set by hand, the
recipe end to end (phase 1 from SDNN's cache) and its one-line configuration errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdnn.class2str import (Class2StrLoss, LatentHierarchyClassifier, collisions, fc_head_parameters,
                            hierarchy_summary)
from sdnn.errors import ConfigError
from tests.conftest import compose_config


def small_head(c=5, length=3, features=6, **kwargs) -> LatentHierarchyClassifier:
    torch.manual_seed(0)
    return LatentHierarchyClassifier(features, c, length, rnn_hidden=kwargs.pop("rnn_hidden", (7, 4)),
                                     mapping_hidden=kwargs.pop("mapping_hidden", 9), **kwargs)


def set_codes(head: LatentHierarchyClassifier, codes: list[str], sharpness: float = 20.0) -> None:
    """Class2Str's weights by hand so that class k's soft code is (almost) one-hot on ``codes[k]``:
    the hidden layer passes the one-hot vector through, the bit layer reads it."""
    c, length = head.num_classes, head.code_length
    first, last = head.class2str[0], head.class2str[2]
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        first.weight[:c, :c] = torch.eye(c)
        last.weight.zero_()
        last.bias.zero_()
        for k, code in enumerate(codes):
            for bit in range(length):
                for value in (0, 1):
                    last.weight[2 * bit + value, k] = sharpness if int(code[bit]) == value else -sharpness


def relu(v):
    return [max(0.0, x) for x in v]


def linear(layer, v):
    w, b = layer.weight.detach().double().tolist(), layer.bias.detach().double().tolist()
    return [sum(w[o][i] * v[i] for i in range(len(v))) + b[o] for o in range(len(b))]


def softmax(v):
    m = max(v)
    e = [math.exp(x - m) for x in v]
    return [x / sum(e) for x in e]


def reference_soft_codes(head):
    """z[k][l][b]: Class2Str of class k's one-hot vector, one class and one bit at a time."""
    c, length = head.num_classes, head.code_length
    out = []
    for k in range(c):
        hidden = relu(linear(head.class2str[0], [1.0 if j == k else 0.0 for j in range(c)]))
        logits = linear(head.class2str[2], hidden)
        out.append([softmax(logits[2 * bit:2 * bit + 2]) for bit in range(length)])
    return out


def reference_terms(head, bit_logits, targets):
    """The three terms of the Class2Str loss by their formulas, looping over samples, bits and classes."""
    z = reference_soft_codes(head)
    n, length, c = bit_logits.shape[0], head.code_length, head.num_classes
    classification = inverse = binarising = 0.0
    for s in range(n):
        y = int(targets[s])
        for bit in range(length):
            p = softmax(bit_logits[s, bit].double().tolist())
            classification -= sum(z[y][bit][b] * math.log(p[b]) for b in range(2))
            binarising -= 0.5 * sum(z[y][bit][b] ** 2 for b in range(2))
        flat = [z[y][bit][b] for bit in range(length) for b in range(2)]
        logits = linear(head.str2class[2], relu(linear(head.str2class[0], flat)))
        inverse -= math.log(softmax(logits)[y])
    assert len(logits) == c
    return {"classification": classification / n, "inverse_hash": inverse / n, "binarising": binarising / n}


# ----------------------------------------------------------------------------- the loss and the mappings

def test_loss_terms_equal_the_formulas_computed_in_loops():
    head = small_head().double()
    features = torch.randn(8, 6, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 4, 4, 2, 0])
    head.train()
    scores = head(features)
    loss = Class2StrLoss(w_c=4.0, w_i=100.0, w_l2=0.1)
    got = {k: float(v.detach()) for k, v in loss.terms(scores, targets, head).items()}
    want = reference_terms(head, head.bit_logits(features), targets)
    assert got == pytest.approx(want, rel=1e-9)
    total = 4.0 * want["classification"] + 100.0 * want["inverse_hash"] + 0.1 * want["binarising"]
    assert float(loss(scores, targets, head).detach()) == pytest.approx(total, rel=1e-9)
    np.testing.assert_allclose(head.soft_codes().detach().numpy(), reference_soft_codes(head), rtol=1e-9)


def test_eval_scores_are_the_log_likelihood_of_each_class_code():
    head = small_head().double().eval()
    features = torch.randn(4, 6, dtype=torch.float64)
    scores = head(features)
    log_p = F.log_softmax(head.bit_logits(features), -1).detach()
    codes = head.codes()
    for s in range(4):
        for k, code in enumerate(codes):
            want = sum(float(log_p[s, bit, int(b)]) for bit, b in enumerate(code))
            assert float(scores[s, k].detach()) == pytest.approx(want, rel=1e-12)


def test_end_to_end_decides_whether_the_classification_term_trains_the_mapping():
    features, targets = torch.randn(8, 6), torch.arange(8) % 5
    only_classification = Class2StrLoss(w_c=1.0, w_i=0.0, w_l2=0.0)
    for end_to_end in (True, False):
        head = small_head(end_to_end=end_to_end).train()
        only_classification(head(features), targets, head).backward()
        gradient = head.class2str[2].weight.grad
        assert (gradient is not None and gradient.abs().sum() > 0) == end_to_end
        assert head.bit_weight.grad.abs().sum() > 0


def test_parameter_counts_against_the_layer_formulas():
    head = LatentHierarchyClassifier(256, 10, None, rnn_hidden=(100, 20, 100), mapping_hidden=500)
    lstm = sum(4 * h * (i + h) + 8 * h for i, h in ((256, 100), (100, 20), (20, 100)))  # two bias vectors each
    bits = 4 * (2 * 100 + 2)
    mappings = (10 * 500 + 500 + 500 * 8 + 8) + (8 * 500 + 500 + 500 * 10 + 10)
    assert head.code_length == 4
    assert head.parameter_counts() == {"inference": lstm + bits, "with_mappings": lstm + bits + mappings}
    assert fc_head_parameters(256, 10) == 2570


# ----------------------------------------------------------------------------- codes and decoding

def test_codes_are_one_to_one_after_training_on_a_toy_problem():
    rng = np.random.default_rng(0)
    c, n = 6, 240
    centres = rng.normal(0, 2.0, size=(c, 8))
    y = np.arange(n) % c
    x = torch.tensor(centres[y] + rng.normal(0, 0.5, size=(n, 8)), dtype=torch.float32)
    y = torch.tensor(y)
    head = small_head(c=c, length=3, features=8, rnn_hidden=(16,), mapping_hidden=32)
    loss = Class2StrLoss()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        loss(head.train()(x), y, head).backward()
        optimizer.step()
    codes = head.codes()
    assert len(set(codes)) == c and all(len(code) == 3 for code in codes)
    assert (head.eval()(x).argmax(1) == y).float().mean() > 0.95
    summary = hierarchy_summary(head, [f"c{k}" for k in range(c)])
    assert summary["distinct"] and summary["collisions"] == [] and summary["codes"] == codes


def test_a_shared_code_is_reported_not_hidden():
    head = small_head(c=4, length=2, mapping_hidden=4)
    set_codes(head, ["00", "01", "01", "11"])
    summary = hierarchy_summary(head, ["a", "b", "c", "d"])
    assert summary["codes"] == ["00", "01", "01", "11"]
    assert summary["distinct"] is False and summary["collisions"] == [["b", "c"]]
    assert collisions(["0", "1", "0"]) == [[0, 2]]


def test_prediction_decodes_a_hierarchy_set_by_hand(monkeypatch):
    """Codes 00, 01, 10 for three classes and bits that are known functions of the input: bit l is 1
    with probability σ(x_l). A string that is a code decodes to its class; "11", no class's code,
    decodes to the most likely code."""
    head = small_head(c=3, length=2, features=2, mapping_hidden=3).eval()
    set_codes(head, ["00", "01", "10"])
    assert head.codes() == ["00", "01", "10"]
    monkeypatch.setattr(head, "bit_logits", lambda x: torch.stack([torch.zeros_like(x), x], -1))
    x = torch.tensor([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0],   # exactly the codes 00, 01, 10
                      [0.4, 2.0], [2.0, 0.4]])                   # "11": no class's code
    # likelihoods of 00 / 01 / 10: (0.401·0.119, 0.401·0.881, 0.599·0.119) → 01; symmetric → 10
    assert head(x).argmax(1).tolist() == [0, 1, 2, 1, 2]
    p = torch.sigmoid(x[3])
    likelihood = [(1 - p[0]) * (1 - p[1]), (1 - p[0]) * p[1], p[0] * (1 - p[1])]
    assert head(x[3:4]).exp()[0].tolist() == pytest.approx([float(v) for v in likelihood], rel=1e-4)


def test_the_tree_figure_and_the_summary_show_codes_and_collisions(tmp_path):
    from matplotlib.image import imread

    from sdnn.plots import plot_hierarchy_tree
    from sdnn.results import Results, format_summary

    codes = [format(k, "07b") for k in range(100)]
    codes[7] = codes[3]
    path = plot_hierarchy_tree(codes, [f"class {k}" for k in range(100)], tmp_path / "hierarchy_tree.png")
    assert imread(path).shape[0] > 1500  # one readable row per leaf
    with pytest.raises(ValueError, match="3 codes for 2 class names"):
        plot_hierarchy_tree(["0", "1", "1"], ["a", "b"], tmp_path / "bad.png")
    names = ["a", "b", "c"]
    results = Results(method="class2str", dataset="toy", model="mlp", seed=0, subclass_to_class=[0, 1, 2],
                      test={"acc": 0.5, "per_class_acc": [1.0, 0.5, 0.0]}, val=None, train_seconds=1.0,
                      epoch_test_acc={}, class_names=names, config={}, data_skipped={"count": 0, "items": []},
                      hierarchy={"codes": ["00", "01", "01"], "distinct": False, "collisions": [["b", "c"]],
                                 "code_length": 2, "classifier_parameters": {"inference": 10, "with_mappings": 20},
                                 "fc_head_parameters": 12})
    text = format_summary(results)
    assert "CODES COLLIDE" in text and "b, c" in text and "12 for the FC head" in text
    assert [line.split()[-1] for line in text.splitlines()[2:5]] == ["00", "01", "01"]
    assert Results.from_json(results.to_json()).hierarchy == results.hierarchy


# ----------------------------------------------------------------------------- the recipe

def test_class2str_end_to_end_with_phase1_from_an_sdnn_run(run_pipeline, tmp_path):
    """Stage 1 is SDNN's phase 1: an SDNN run of the same key trains it, the Class2Str run reads it."""
    sdnn = run_pipeline(["model=mlp"])
    assert sdnn["phase1"]["cached"] is False
    small = ["class2str.lr=0.01", "class2str.rnn_hidden=[32]", "class2str.mapping_hidden=64", "trainer.max_epochs=3"]
    run_dir = tmp_path / "class2str"
    results = run_pipeline(["model=mlp", "method=class2str", *small], run_dir=run_dir)
    assert results["method"] == "class2str" and results["phase1"]["cached"] is True
    hierarchy = results["hierarchy"]
    assert len(hierarchy["codes"]) == 10 and all(len(code) == 4 for code in hierarchy["codes"])
    assert hierarchy["distinct"] is True and len(set(hierarchy["codes"])) == 10
    assert hierarchy["code_length"] == 4 and hierarchy["fc_head_parameters"] == 256 * 10 + 10
    assert 0 < hierarchy["classifier_parameters"]["inference"] < hierarchy["classifier_parameters"]["with_mappings"]
    assert 0.0 <= results["test"]["acc"] <= 1.0 and len(results["test"]["per_class_acc"]) == 10
    assert results["subclass_to_class"] == list(range(10))
    assert (run_dir / results["figures"]["hierarchy"]).is_file() and "hierarchy" in results["figures"]["hierarchy"]
    assert (run_dir / results["figures"]["test_accuracy_per_class"]).is_file()
    assert set(results["epoch_test_acc"]) == {"phase1", "class2str"}


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("override, message", [
    ("class2str.w_c=-1", "class2str.w_c=-1.0 must be a finite number >= 0"),
    ("class2str.w_l2=-0.5", "class2str.w_l2=-0.5 must be a finite number >= 0"),
    ("class2str.rnn_hidden=[]", "class2str.rnn_hidden=[] must be a non-empty list"),
    ("class2str.optimizer=sgd", "class2str.optimizer='sgd' is not an option"),
])
def test_bad_values_are_one_line_errors(override, message):
    from sdnn.config import validate_config

    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(["method=class2str", override]))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("override, message", [
    ("class2str.code_length=3", "class2str.code_length=3 is too short for 10 classes (2^3 = 8 strings)"),
    ("loss=ce", "method=class2str trains stage 1 with eq. 3"),
])
def test_a_short_code_or_another_loss_is_a_one_line_error_before_training(tmp_path, override, message):
    from sdnn.build import build_job as prepare

    with pytest.raises(ConfigError) as error:
        prepare(compose_config(["method=class2str", override]), tmp_path)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_multilabel_streamed_data_is_a_one_line_error(tmp_path):
    from sdnn.build import build_job as prepare
    from sdnn.data.yt8m_synth import write_synthetic_shards

    write_synthetic_shards(tmp_path, classes=4, train_shards=1, validate_shards=1, videos_per_shard=8, seed=0)
    cfg = compose_config(["method=class2str", "dataset=yt8m", f"dataset.train={tmp_path}/train*.tfrecord",
                          f"dataset.validate={tmp_path}/validate*.tfrecord", "dataset.num_classes=4", "model=lr",
                          "partitioner=median_split", "augmenter=extrapolation"])
    with pytest.raises(ConfigError, match="^method=class2str gives each class one string.*dataset yt8m is streamed$"):
        prepare(cfg, tmp_path / "run")


def test_the_torch_classes_name_the_bad_argument():
    with pytest.raises(ValueError, match=r"^code_length=2 is too short for 5 classes"):
        LatentHierarchyClassifier(4, 5, 2)
    with pytest.raises(ValueError, match=r"^rnn_hidden=\[\] must be"):
        LatentHierarchyClassifier(4, 5, rnn_hidden=())
    with pytest.raises(ValueError, match=r"^w_i=-1.0 must be"):
        Class2StrLoss(w_i=-1.0)
