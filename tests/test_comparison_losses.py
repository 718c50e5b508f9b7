"""The comparison losses of method=baseline (SPEC §7b) against float64 loops over samples and classes
written from each paper's formula; their limits and equalities with torch's losses; their configs,
bad values and the rule that other methods need a loss with a subclass form; runs that write results.json.

Reference, one sample (logits h, true class y, c classes) at a time, with ln p_k = h_k − ln Σ_j e^{h_j}:
    focal            −(1 − p_y)^γ ln p_y                                   (Lin et al. 2017)
    poly1            −ln p_y + ε (1 − p_y)                                  (Leng et al. 2022)
    encouraging      −ln p_y + b(p_y), b(p) = ln max(1 − p, 1e-5) for p ≤ e,
                     (p − e)/(e − 1) + ln(1 − e) above e = log_end          (Zhao et al. 2022)
    ldr_kl           λ ln((1/c) Σ_k exp((margin·[k≠y] + h_k − h_y)/λ))      (Zhu et al. 2023)
    label_smoothing  (1 − s)(−ln p_y) + s · (1/c) Σ_k (−ln p_k)            (Szegedy et al. 2016)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdnn.build import build_job as prepare
from sdnn.build import instantiate_group
from sdnn.checks import check_loss as check_built_loss
from sdnn.config import validate_config
from sdnn.data.yt8m_synth import write_synthetic_shards
from sdnn.errors import ConfigError
from sdnn.losses import EncouragingLoss, FocalLoss, LabelSmoothingCrossEntropy, LDRKLLoss, Poly1CrossEntropy
from tests.conftest import FAST, QUICK_GUARD, compose_config, read_results, run_cli


def check_loss(cfg):
    """The ``loss`` group built and checked against the method (as ``sdnn.build.build_job`` does)."""
    loss = instantiate_group("loss", cfg.loss)
    check_built_loss(validate_config(cfg), loss)
    return loss


# ----------------------------------------------------------------------------- reference
def log_probs(h: list[float]) -> list[float]:
    top = max(h)
    log_total = top + math.log(sum(math.exp(v - top) for v in h))
    return [v - log_total for v in h]


def ref_focal(h, y, gamma):
    log_p = log_probs(h)[y]
    return -((1 - math.exp(log_p)) ** gamma) * log_p


def ref_poly1(h, y, epsilon):
    log_p = log_probs(h)[y]
    return -log_p + epsilon * (1 - math.exp(log_p))


def ref_encouraging(h, y, log_end):
    log_p = log_probs(h)[y]
    p = math.exp(log_p)
    if p <= log_end:
        bonus = math.log(max(1 - p, 1e-5))
    else:
        bonus = (p - log_end) / (log_end - 1) + math.log(1 - log_end)
    return -log_p + bonus


def ref_ldr_kl(h, y, lam, margin):
    z = [(margin * (k != y) + h[k] - h[y]) / lam for k in range(len(h))]
    top = max(z)
    return lam * (top + math.log(sum(math.exp(v - top) for v in z) / len(h)))


def ref_label_smoothing(h, y, smoothing):
    log_p = log_probs(h)
    return (1 - smoothing) * -log_p[y] + smoothing * sum(-v for v in log_p) / len(h)


# (id, the module, the reference for one sample)
CASES = [
    ("focal-2", FocalLoss(), lambda h, y: ref_focal(h, y, 2.0)),
    ("focal-0.5", FocalLoss(gamma=0.5), lambda h, y: ref_focal(h, y, 0.5)),
    ("poly1-1", Poly1CrossEntropy(), lambda h, y: ref_poly1(h, y, 1.0)),
    ("poly1--1", Poly1CrossEntropy(epsilon=-1), lambda h, y: ref_poly1(h, y, -1.0)),
    ("encouraging-0.75", EncouragingLoss(), lambda h, y: ref_encouraging(h, y, 0.75)),
    ("encouraging-1", EncouragingLoss(log_end=1), lambda h, y: ref_encouraging(h, y, 1.0)),
    ("ldr_kl-1-1", LDRKLLoss(), lambda h, y: ref_ldr_kl(h, y, 1.0, 1.0)),
    ("ldr_kl-0.1-2", LDRKLLoss(lam=0.1, margin=2.0), lambda h, y: ref_ldr_kl(h, y, 0.1, 2.0)),
    ("label_smoothing-0.1", LabelSmoothingCrossEntropy(), lambda h, y: ref_label_smoothing(h, y, 0.1)),
    ("label_smoothing-0.4", LabelSmoothingCrossEntropy(0.4), lambda h, y: ref_label_smoothing(h, y, 0.4)),
]
SCALES = (0.1, 1.0, 10.0, 100.0)
CLASS_COUNTS = (2, 5, 13)


def problem(n: int, c: int, scale: float, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    targets = torch.randint(0, c, (n,), generator=g)
    targets[: n // 4] = logits[: n // 4].argmax(1)  # some confidently right samples: p_y near 1 at large scales
    return logits.to(dtype), targets


# ----------------------------------------------------------------------------- the formulas
@pytest.mark.parametrize("loss, reference", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_loss_equals_the_per_sample_loop(loss, reference):
    for c in CLASS_COUNTS:
        for scale in SCALES:
            logits, targets = problem(16, c, scale, seed=c)
            expected = [reference(row, int(y)) for row, y in zip(logits.tolist(), targets)]
            got = [float(loss(logits[k:k + 1], targets[k:k + 1])) for k in range(len(targets))]
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=f"c={c} scale={scale}")
            batch = loss(logits, targets)
            assert batch.dim() == 0 and float(batch) == pytest.approx(np.mean(expected), rel=1e-9, abs=1e-12)
            single = loss(logits.float(), targets)  # float32, as trained
            assert float(single) == pytest.approx(np.mean(expected), rel=1e-4, abs=1e-5), f"c={c} scale={scale}"


@pytest.mark.parametrize("loss", [case[1] for case in CASES], ids=[case[0] for case in CASES])
def test_gradients_are_finite_at_huge_logits_and_match_finite_differences(loss):
    for dtype in (torch.float32, torch.float64):
        logits, targets = problem(24, 7, 1e3, seed=3, dtype=dtype)
        logits.requires_grad_()
        value = loss(logits, targets)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all(), dtype
    logits, targets = problem(4, 3, 1.0, seed=4)
    assert torch.autograd.gradcheck(lambda h: loss(h, targets), (logits.requires_grad_(),))


# ----------------------------------------------------------------------------- limits and equalities
@pytest.mark.parametrize("scale", SCALES)
def test_focal_gamma_0_and_poly1_epsilon_0_are_cross_entropy(scale):
    logits, targets = problem(32, 6, scale, seed=5)
    ce = float(F.cross_entropy(logits, targets))
    assert float(FocalLoss(gamma=0)(logits, targets)) == pytest.approx(ce, rel=1e-12, abs=1e-14)
    assert float(Poly1CrossEntropy(epsilon=0)(logits, targets)) == pytest.approx(ce, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 0.95])
def test_label_smoothing_equals_torch(smoothing):
    for scale in SCALES:
        logits, targets = problem(32, 6, scale, seed=6)
        expected = F.cross_entropy(logits, targets, label_smoothing=smoothing)
        assert float(LabelSmoothingCrossEntropy(smoothing)(logits, targets)) == pytest.approx(float(expected),
                                                                                            rel=1e-12)


def test_encouraging_log_end_1_is_the_plain_bonus_and_log_end_only_changes_confident_samples():
    logits, targets = problem(64, 5, 3.0, seed=7)
    log_p = F.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
    plain = -log_p + torch.log(torch.clamp(1 - log_p.exp(), min=1e-5))
    assert float(EncouragingLoss(log_end=1)(logits, targets)) == pytest.approx(float(plain.mean()), rel=1e-12)
    tangent = EncouragingLoss(log_end=0.75)
    per_sample = torch.stack([tangent(logits[k:k + 1], targets[k:k + 1]) for k in range(64)])
    below = log_p.exp() <= 0.75
    assert below.any() and (~below).any()
    torch.testing.assert_close(per_sample[below], plain[below], rtol=1e-12, atol=0)
    assert (per_sample[~below] > plain[~below]).all()  # the tangent lies above the concave ln(1 − p)


def test_ldr_kl_limits():
    logits, targets = problem(32, 6, 2.0, seed=8)
    ce = float(F.cross_entropy(logits, targets))
    assert float(LDRKLLoss(lam=1, margin=0)(logits, targets)) == pytest.approx(ce - math.log(6), rel=1e-12)
    other = 1 - F.one_hot(targets, 6).double()
    z = 1.5 * other + logits - logits.gather(1, targets[:, None])  # margin·[k≠y] + h_k − h_y
    hinge = z.max(1).values.mean()  # max(0, margin + max_{k≠y} h_k − h_y): λ → 0
    for lam in (1e-2, 1e-3, 1e-4):  # hinge − λ ln c ≤ L_λ ≤ hinge
        value = float(LDRKLLoss(lam=lam, margin=1.5)(logits, targets))
        assert float(hinge) - lam * math.log(6) - 1e-12 <= value <= float(hinge) + 1e-12
    for lam in (1e3, 1e4):  # λ → ∞: the mean over k, within max z² / λ
        value = float(LDRKLLoss(lam=lam, margin=1.5)(logits, targets))
        assert abs(value - float(z.mean())) <= float(z.abs().max()) ** 2 / lam


def test_softmax_losses_refuse_multihot_targets_and_have_no_subclass_form():
    for _, loss, _ in CASES:
        assert loss.multilabel is False and not hasattr(loss, "for_subclasses")
        with pytest.raises(ValueError, match="loss=bce for multilabel"):
            loss(torch.randn(2, 3), torch.ones(2, 3))
    focal = check_loss(compose_config(["method=baseline", "loss=focal"]))
    assert isinstance(focal, FocalLoss)
    with pytest.raises(ConfigError, match="no subclass form|subclass"):
        check_loss(compose_config(["method=sdnn", "loss=focal"]))


# ----------------------------------------------------------------------------- bad values
BAD = [
    ("focal", "gamma", -1), ("focal", "gamma", "abc"), ("poly1", "epsilon", -2), ("encouraging", "log_end", 0),
    ("encouraging", "log_end", 1.5), ("ldr_kl", "lam", 0), ("ldr_kl", "margin", -1),
    ("label_smoothing", "smoothing", 1), ("label_smoothing", "smoothing", -0.1),
]


@pytest.mark.parametrize("option, key, value", BAD)
def test_bad_hyperparameters_are_one_line_errors_naming_the_key(option, key, value):
    cfg = compose_config(["method=baseline", f"loss={option}", f"loss.{key}={value}"])
    with pytest.raises(ConfigError) as caught:
        check_loss(cfg)
    message = str(caught.value)
    assert message.startswith(f"loss.{key}={value!r}") and "must be" in message and "\n" not in message


@pytest.mark.parametrize("option", ["focal", "poly1", "encouraging", "ldr_kl", "label_smoothing"])
def test_other_methods_need_a_loss_with_a_subclass_form(option):
    cfg = compose_config([f"loss={option}"])  # method=sdnn, the default
    with pytest.raises(ConfigError) as caught:
        check_loss(cfg)
    message = str(caught.value)
    assert message.startswith(f"loss={option} is a baseline loss") and "\n" not in message
    assert f"use method=baseline loss={option}, or loss=bce|ce with method=sdnn" in message
    baseline = compose_config([f"loss={option}", "method=baseline"])
    assert check_loss(baseline).multilabel is False
    for usable in ("bce", "ce"):
        cfg = compose_config([f"loss={usable}"])
        check_loss(cfg)


def test_the_rule_is_about_the_class_not_a_list_of_names():
    """A user's loss class without ``for_subclasses`` is a baseline loss too."""
    cfg = compose_config(["loss._target_=torch.nn.CrossEntropyLoss", "loss.name=torch_ce"])
    with pytest.raises(ConfigError, match="^loss=torch_ce is a baseline loss"):
        check_loss(cfg)


def test_multilabel_data_with_a_softmax_loss_is_an_error(tmp_path):
    write_synthetic_shards(tmp_path / "yt8m", classes=6, train_shards=1, validate_shards=1, videos_per_shard=20)

    def yt8m(train: str = "train", *extra: str) -> list[str]:
        return ["dataset=yt8m", f"dataset.train={tmp_path}/yt8m/{train}*.tfrecord", "dataset.num_classes=6",
                f"dataset.validate={tmp_path}/yt8m/validate*.tfrecord", "dataset.num_workers=0", "model=lr",
                "partitioner=median_split", *extra]

    for option in ("focal", "label_smoothing", "ce"):
        with pytest.raises(ConfigError, match=f"^loss={option} takes one class per sample, but dataset yt8m is "
                                              "multilabel; use loss=bce"):
            prepare(compose_config(yt8m("train", "method=baseline", f"loss={option}")), tmp_path / "run")
    assert prepare(compose_config(yt8m("train", "method=baseline", "loss=bce")), tmp_path / "run").loss.multilabel
    # under method=sdnn the loss is refused before the data is read: no shards are needed to say so
    with pytest.raises(ConfigError, match="^loss=focal is a baseline loss"):
        prepare(compose_config(yt8m("none", "method=sdnn", "loss=focal")), tmp_path / "run")


# ----------------------------------------------------------------------------- runs
RUN = ["method=baseline", "model=lr", "trainer.max_epochs=1", "observe.figures=false"]
DEFAULTS = {"poly1": {"epsilon": 1.0}, "encouraging": {"log_end": 0.75}, "ldr_kl": {"lam": 1.0, "margin": 1.0},
            "label_smoothing": {"smoothing": 0.1}}


@pytest.mark.parametrize("option", list(DEFAULTS))
def test_baseline_runs_with_each_loss_and_records_it(run_pipeline, option):
    results = run_pipeline([*RUN, f"loss={option}"])
    assert results["method"] == "baseline" and results["subclass_to_class"] == list(range(10))
    loss = results["config"]["loss"]
    assert loss["name"] == option and {k: loss[k] for k in DEFAULTS[option]} == DEFAULTS[option]
    assert 0.1 < results["test"]["acc"] <= 1  # above chance for ten digits after one epoch


def test_cli_baseline_with_focal_writes_results_and_sdnn_with_focal_is_refused(tmp_path):
    proc = run_cli([*FAST, *RUN, "loss=focal", "loss.gamma=1", f"phase1.cache_dir={tmp_path / 'cache'}",
                    f"hydra.run.dir={tmp_path / 'focal'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = read_results(tmp_path / "focal")
    assert results["config"]["loss"] == {"name": "focal", "_target_": "sdnn.losses.FocalLoss", "gamma": 1.0}
    assert 0.1 < results["test"]["acc"] <= 1
    proc = run_cli([*FAST, "loss=focal", f"hydra.run.dir={tmp_path / 'sdnn'}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: loss=focal is a baseline loss"), proc.stderr[-2000:]
    assert not (tmp_path / "sdnn" / "results.json").exists()
