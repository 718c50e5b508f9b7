"""Observation for the paper's figures: per-step gradient norms (Fig. 2) and per-class test accuracy per epoch (Fig. 1)."""

from __future__ import annotations

from functools import partial

import csv
import types

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from sdnn.data.batch_augment import InputPipeline
from sdnn.data.digits import load_digits_splits
from sdnn.data.tensors import batch_loader, standardize
from sdnn.lit import NeglectCallback, PerClassAccuracyHistory, SDNNModule
from sdnn.losses import SigmoidCrossEntropy
from sdnn.models import build_backbone
from sdnn.subclass import build_subclass_to_class, subclass_targets
from tests.conftest import loop_norms

TRAINER_ARGS = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


class _BatchSpy(pl.Callback):
    """Keeps every training step's global step and the detached outputs the NeglectCallback saw."""

    def __init__(self):
        self.steps, self.outputs = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(int(trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append({key: outputs[key].detach().clone().cpu() for key in ("features", "logits", "targets")})


def _mlp_module(splits, seed=0):
    pl.seed_everything(seed, verbose=False)
    return SDNNModule(build_backbone({"name": "mlp", "hidden": [32], "dropout": 0.0}, splits.input_shape),
                      SigmoidCrossEntropy(), torch.arange(10), 10, partial(torch.optim.SGD, lr=0.1))


def _fit_neglect(norms_every, method="auto", epochs=1, batch_size=8, spy=None):
    splits = standardize(load_digits_splits())
    module = _mlp_module(splits)
    neglect = NeglectCallback(10, tau=7, method=method, norms_every=norms_every)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, callbacks=[neglect] + ([spy] if spy else []), **TRAINER_ARGS)
    trainer.fit(module, batch_loader(splits.x_train[:200], splits.y_train[:200], batch_size, shuffle=True))
    return module, neglect


@pytest.mark.parametrize("method", ["direct", "gram"])
def test_recorded_norms_equal_slow_loop_on_the_batches_seen(method):
    spy = _BatchSpy()
    _, neglect = _fit_neglect(norms_every=3, method=method, epochs=2, spy=spy)  # 25 steps per epoch
    norms = neglect.norm_history()
    assert len(spy.steps) == 50
    np.testing.assert_array_equal(norms["steps"], spy.steps[::3])
    assert norms["steps"].tolist() == list(range(0, 50, 3))
    assert all(norms[key].shape == (17, 10) and norms[key].dtype == np.float32
               for key in ("delta", "delta_hat", "delta_tilde"))
    for row, step in enumerate(norms["steps"]):
        out = spy.outputs[step]
        expected = loop_norms(out["features"], out["logits"], out["targets"], 10)
        for k, key in enumerate(("delta", "delta_hat", "delta_tilde")):
            np.testing.assert_allclose(norms[key][row], expected[k], rtol=1e-4, atol=1e-5, equal_nan=True)
    # Batches of 8 over 10 classes always miss a class: its ‖δ̂‖ is NaN, ‖δ‖ = ‖δ̃‖ stay finite.
    missing = np.isnan(norms["delta_hat"])
    assert missing.sum(1).min() >= 2
    assert np.isfinite(norms["delta"]).all() and np.isfinite(norms["delta_tilde"]).all()
    np.testing.assert_allclose(norms["delta"][missing], norms["delta_tilde"][missing], rtol=1e-5)


def test_recording_changes_neither_theta_nor_training():
    plain_module, plain = _fit_neglect(norms_every=0)
    recorded_module, recorded = _fit_neglect(norms_every=1)
    np.testing.assert_array_equal([w["theta"] for w in plain.history], [w["theta"] for w in recorded.history])
    assert [(w["step"], w["steps"], w["complete"]) for w in plain.history] == \
        [(w["step"], w["steps"], w["complete"]) for w in recorded.history]
    for p, q in zip(plain_module.parameters(), recorded_module.parameters()):
        assert torch.equal(p, q)
    assert recorded.norm_history()["steps"].tolist() == list(range(25))
    off = plain.norm_history()
    assert off["steps"].shape == (0,) and off["delta"].shape == (0, 10)


def _uint8_subclass_setup():
    """uint8 digits normalised on the device, 12 output units: classes 0 and 3 split in two subclasses."""
    splits = load_digits_splits()
    x_train, x_test = ((x * 255).round().to(torch.uint8) for x in (splits.x_train, splits.x_test))
    mean, std = x_train.float().mean().reshape(1), x_train.float().std().reshape(1)
    s2c = build_subclass_to_class(10, {0: 2, 3: 2})
    assert s2c.tolist() == list(range(10)) + [0, 3]
    y_train = splits.y_train
    subclass_numbers = torch.arange(len(y_train)) % 2 * ((y_train == 0) | (y_train == 3))
    unit_targets = subclass_targets(y_train, subclass_numbers, s2c)
    assert (unit_targets >= 10).any()
    pl.seed_everything(0, verbose=False)
    module = SDNNModule(build_backbone({"name": "mlp", "hidden": [64], "dropout": 0.5}, (1, 8, 8)),
                       SigmoidCrossEntropy(), s2c, 10, partial(torch.optim.Adam, lr=0.01),
                       inputs=InputPipeline(mean=mean, std=std), channels_last=True)
    return module, batch_loader(x_train, unit_targets, 64, shuffle=True), x_test, splits.y_test


def _slow_class_accuracy(module, x, y, c):
    """Per-class accuracy of the current model, one sample at a time, in eval mode."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    correct, total = np.zeros(c), np.zeros(c)
    with torch.no_grad():
        for k in range(len(x)):
            logits = module(module.inputs(x[k:k + 1].to(module.device), train=False))[1][0]
            unit = int(logits.argmax())
            label = int(y[k])
            total[label] += 1
            correct[label] += int(module.subclass_to_class[unit]) == label
    for m, training in modes.items():
        m.train(training)
    return correct / total, correct.sum() / total.sum()


class _AccuracySpy(pl.Callback):
    """Runs after PerClassAccuracyHistory: checks train mode came back, then evaluates slowly."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.expected, self.all_training = [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.all_training.append(all(m.training for m in pl_module.modules()))
        self.expected.append(_slow_class_accuracy(pl_module, self.x, self.y, 10))


def test_per_class_accuracy_equals_slow_loop_with_subclasses_uint8_and_csv(tmp_path):
    module, loader, x_test, y_test = _uint8_subclass_setup()
    history = PerClassAccuracyHistory(x_test, y_test, batch_size=128)
    spy = _AccuracySpy(x_test, y_test)
    logger = pl.loggers.CSVLogger(tmp_path, name="run")
    trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, callbacks=[history, spy], **TRAINER_ARGS)
    trainer.fit(module, loader)

    assert spy.all_training == [True, True]
    assert [h["epoch"] for h in history.history] == [0, 1]
    for entry, (per_class, acc) in zip(history.history, spy.expected):
        np.testing.assert_allclose(entry["per_class_acc"], per_class, rtol=1e-12)
        assert entry["acc"] == pytest.approx(acc)
    assert history.as_array().shape == (2, 10)
    assert history.epochs().tolist() == [0, 1]
    # The subclass units are used: some test samples' arg-max is an extra unit.
    module.eval()
    with torch.no_grad():
        units = module(module.inputs(x_test, train=False))[1].argmax(1)
    assert (units >= 10).any()

    with open(tmp_path / "run" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("epoch_test/acc")]
    assert len(logged) == 2
    for row, entry in zip(logged, history.history):
        assert float(row["epoch_test/acc"]) == pytest.approx(entry["acc"])
        assert [float(row[f"epoch_test/acc_class_{i}"]) for i in range(10)] == pytest.approx(entry["per_class_acc"])
        assert int(float(row["epoch"])) == entry["epoch"]


def test_every_n_epochs_missing_classes_and_prefix():
    splits = standardize(load_digits_splits())
    module = _mlp_module(splits)
    keep = splits.y_test != 7
    history = PerClassAccuracyHistory(splits.x_test[keep], splits.y_test[keep], every_n_epochs=2, prefix="fig1")
    trainer = pl.Trainer(max_epochs=5, logger=False, callbacks=[history], **TRAINER_ARGS)
    trainer.fit(module, batch_loader(splits.x_train, splits.y_train, 128, shuffle=True))
    assert history.epochs().tolist() == [1, 3]
    acc = history.as_array()
    assert np.isnan(acc[:, 7]).all() and np.isfinite(np.delete(acc, 7, axis=1)).all()
    assert "fig1/acc" not in trainer.callback_metrics  # logged to loggers only, never monitorable


def test_rank_shards_are_disjoint_and_sum_to_the_whole():
    """Under DDP rank r evaluates samples r::world; the summed counts equal one process's."""
    module, _, x_test, y_test = _uint8_subclass_setup()
    module.eval()
    history = PerClassAccuracyHistory(x_test, y_test, batch_size=64)
    precision = pl.plugins.precision.Precision()
    identity = types.SimpleNamespace(reduce=lambda tensor, reduce_op: tensor)

    def counts(rank, world):
        trainer = types.SimpleNamespace(global_rank=rank, world_size=world, precision_plugin=precision,
                                        strategy=identity)
        return history._counts(trainer, module)

    whole = counts(0, 1)
    shards = [counts(rank, 3) for rank in range(3)]
    for k in range(2):
        torch.testing.assert_close(sum(shard[k] for shard in shards), whole[k])
    assert whole[1].sum() == len(y_test)
    assert not module.training and not any(m.training for m in module.modules())
