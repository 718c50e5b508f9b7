"""NeglectCallback inside a real Lightning fit: θ per window equals the mean of per-step ratios."""

from __future__ import annotations

from functools import partial


import numpy as np
import pytorch_lightning as pl
import torch

from sdnn.data.digits import load_digits_splits
from sdnn.data.tensors import batch_loader, standardize
from sdnn.lit import NeglectCallback, SDNNModule
from sdnn.losses import SigmoidCrossEntropy
from sdnn.models import build_backbone
from tests.conftest import loop_ratios


class _Spy(pl.Callback):
    def __init__(self):
        self.ratios = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ratios.append(loop_ratios(outputs["features"], outputs["logits"], outputs["targets"], 10))


def test_theta_windows_equal_mean_of_step_ratios():
    splits = standardize(load_digits_splits())
    pl.seed_everything(0, verbose=False)
    module = SDNNModule(build_backbone({"name": "mlp", "hidden": [32]}, splits.input_shape), SigmoidCrossEntropy(),
                        torch.arange(10), 10, partial(torch.optim.SGD, lr=0.1))
    loader = batch_loader(splits.x_train[:400], splits.y_train[:400], 32, shuffle=True)  # 12 steps per epoch
    neglect, spy = NeglectCallback(10, tau=5), _Spy()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[neglect, spy])
    trainer.fit(module, loader)
    steps = len(spy.ratios)
    assert steps == 24
    # 24 steps with τ = 5: four complete windows and a partial one of 4 steps.
    assert [w["steps"] for w in neglect.history] == [5, 5, 5, 5, 4]
    assert [w["complete"] for w in neglect.history] == [True] * 4 + [False]
    for w, window in enumerate(neglect.history):
        block = np.array(spy.ratios[5 * w:5 * w + window["steps"]])
        with np.errstate(all="ignore"):
            expected = np.nanmean(block, axis=0)
        np.testing.assert_allclose(window["theta"], expected, rtol=1e-4, equal_nan=True)
        assert np.nanmin(window["theta"]) >= 1.0


def test_default_window_is_one_epoch():
    splits = standardize(load_digits_splits())
    module = SDNNModule(build_backbone({"name": "lr"}, splits.input_shape), SigmoidCrossEntropy(),
                        torch.arange(10), 10, partial(torch.optim.SGD, lr=0.1))
    neglect = NeglectCallback(10, tau=None)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[neglect])
    trainer.fit(module, batch_loader(splits.x_train, splits.y_train, 128, shuffle=True))
    assert [w["epoch"] for w in neglect.history] == [0, 1, 2]
    assert all(w["complete"] and w["steps"] == len(splits.x_train) // 128 for w in neglect.history)
