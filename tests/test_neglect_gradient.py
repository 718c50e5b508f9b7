"""θ from the output layer's weight gradient (SPEC §2: δ = n·∂L/∂W), against ``neglect_norms``
and a slow loop, as a pure function and inside Lightning fits (NeglectCallback(method="gradient"))."""

from __future__ import annotations

from functools import partial

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from sdnn import neglect
from sdnn.lit import NeglectCallback, SDNNModule
from sdnn.losses import SigmoidCrossEntropy, SoftmaxCrossEntropy
from sdnn.models import build_backbone
from sdnn.neglect import choose_method, method_costs, neglect_norms, neglect_norms_from_gradient
from tests.conftest import RUN_GUARD


# ----------------------------------------------------------------------------- reference
def loop_norms(x, logits, y):
    """(‖δ̂_i‖, ‖δ̃_i‖, ‖δ_i‖) per class from one sample and one class at a time (float64)."""
    x, h, y = (np.asarray(a, dtype=np.float64) for a in (x, logits, y))
    n, c = h.shape
    out = np.zeros((3, c))
    for i in range(c):
        pull, push, total = np.zeros(x.shape[1]), np.zeros(x.shape[1]), np.zeros(x.shape[1])
        for k in range(n):
            zeta = 1.0 / (1.0 + math.exp(-h[k, i])) - y[k, i]
            if y[k, i] == 1.0:
                pull -= zeta * x[k]
            else:
                push += zeta * x[k]
            total += zeta * x[k]
        out[:, i] = [np.linalg.norm(pull), np.linalg.norm(push), np.linalg.norm(total)]
    return out


def batch_with_gradient(n, c, f, y, loss_scale=1.0, dtype=torch.float64, seed=0):
    """Features, logits and the head's weight gradient of ``loss_scale`` × the sigmoid CE (autograd)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, f, generator=g, dtype=torch.float64)).to(dtype)
    head = torch.nn.Linear(f, c).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(c, f, generator=g, dtype=torch.float64))
    logits = head(x)
    (loss_scale * SigmoidCrossEntropy()(logits, y)).backward()
    return x, logits.detach(), head.weight.grad


def multi_hot(n, c, seed):
    """Several labels per sample (0 to 4), class 0 positive for every sample, class c−1 for none."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, c))
    for k in range(n):
        y[k, rng.choice(np.arange(1, c - 1), size=rng.integers(0, 5), replace=False)] = 1.0
    y[:, 0] = 1.0
    assert (y.sum(1) >= 3).any() and (y[:, c - 1] == 0).all()
    return torch.tensor(y)


SHAPES = [(24, 9, 7), (6, 40, 13), (50, 12, 3)]


@pytest.mark.parametrize("n, c, f", SHAPES)
@pytest.mark.parametrize("block_elements", [None, 1, 20])  # one class per block, a few, all at once
@pytest.mark.parametrize("on_host", [True, False])  # False: the GPU's sync-free sizes, on the CPU
def test_multilabel_equals_direct_and_the_loop(n, c, f, block_elements, on_host, monkeypatch):
    monkeypatch.setattr(neglect, "_sizes_on_host", lambda device: on_host)
    y = multi_hot(n, c, seed=n + c)
    x, logits, grad = batch_with_gradient(n, c, f, y, seed=c)
    got = torch.stack(neglect_norms_from_gradient(grad, x, logits, y, block_elements=block_elements)).numpy()
    np.testing.assert_allclose(got, torch.stack(neglect_norms(x, logits, y, method="direct")).numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got, loop_norms(x, logits, y), rtol=1e-9, atol=1e-12)
    assert got[0, c - 1] == 0 and got[1, c - 1] == got[2, c - 1]  # no positive: δ̂ = 0, δ̃ = δ
    assert got[1, 0] < 1e-12 * got[2, 0]  # positive for every sample: no negatives, δ̃ = 0


@pytest.mark.parametrize("n, c, f", SHAPES)
@pytest.mark.parametrize("on_host", [True, False])
def test_index_targets_equal_direct_and_the_loop(n, c, f, on_host, monkeypatch):
    monkeypatch.setattr(neglect, "_sizes_on_host", lambda device: on_host)
    idx = torch.randint(0, c - 1, (n,), generator=torch.Generator().manual_seed(n))  # class c−1 never
    x, logits, grad = batch_with_gradient(n, c, f, idx, seed=n)
    got = torch.stack(neglect_norms_from_gradient(grad, x, logits, idx, block_elements=2 * f)).numpy()
    np.testing.assert_allclose(got, torch.stack(neglect_norms(x, logits, idx, method="direct")).numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got, loop_norms(x, logits, F.one_hot(idx, c)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("on_host", [True, False])
def test_absent_false_leaves_out_only_the_classes_without_a_positive(on_host, monkeypatch):
    monkeypatch.setattr(neglect, "_sizes_on_host", lambda device: on_host)
    y = multi_hot(30, 14, seed=5)
    x, logits, grad = batch_with_gradient(30, 14, 9, y)
    present = y.sum(0) > 0
    got = torch.stack(neglect_norms_from_gradient(grad, x, logits, y, absent=False, block_elements=18))
    expected = torch.stack(neglect_norms(x, logits, y, method="direct"))
    assert torch.isnan(got[:, ~present]).all() and not torch.isnan(got[:, present]).any()
    torch.testing.assert_close(got[:, present], expected[:, present], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss_scale", [0.5, 0.25])
def test_loss_scale_undoes_a_scaled_loss(loss_scale):
    """The gradient of loss_scale × L (as after Lightning divides by accumulate_grad_batches)."""
    y = multi_hot(20, 8, seed=1)
    x, logits, grad = batch_with_gradient(20, 8, 5, y, loss_scale=loss_scale)
    expected = torch.stack(neglect_norms(x, logits, y, method="gram"))
    for scale in (loss_scale, torch.tensor(loss_scale, dtype=torch.float64)):
        torch.testing.assert_close(torch.stack(neglect_norms_from_gradient(grad, x, logits, y, loss_scale=scale)),
                                   expected, rtol=1e-9, atol=1e-12)
    # Without the scale the totals are off by exactly that factor (the test can fail).
    wrong = neglect_norms_from_gradient(grad, x, logits, y)[2]
    torch.testing.assert_close(wrong, loss_scale * expected[2], rtol=1e-9, atol=1e-12)


def test_float32_and_no_positive_at_all():
    y = multi_hot(64, 30, seed=3).float()
    x, logits, grad = batch_with_gradient(64, 30, 200, y, dtype=torch.float32)
    torch.testing.assert_close(torch.stack(neglect_norms_from_gradient(grad, x, logits, y)),
                               torch.stack(neglect_norms(x, logits, y, method="direct")), rtol=1e-4, atol=1e-5)
    none = torch.zeros_like(y)
    x, logits, grad = batch_with_gradient(64, 30, 200, none, dtype=torch.float32)
    pull, push, total = neglect_norms_from_gradient(grad, x, logits, none)
    assert (pull == 0).all() and torch.equal(push, total) and (total > 0).all()


def test_wrong_gradient_shape_is_an_error():
    y = multi_hot(8, 6, seed=0)
    x, logits, grad = batch_with_gradient(8, 6, 4, y)
    with pytest.raises(ValueError, match="weight_grad has shape"):
        neglect_norms_from_gradient(grad.T, x, logits, y)


def test_cost_model_picks_gradient_for_youtube8m_and_matrix_products_for_tiny_batches():
    assert choose_method(512, 3862, 36864, nnz=3 * 512, gradient=True) == "gradient"
    assert choose_method(512, 3862, 36864, nnz=3 * 512) == "gram"  # no gradient at hand
    assert choose_method(32, 10, 64, gradient=True) == "direct"
    costs = method_costs(512, 3862, 36864, nnz=3 * 512)
    assert costs["gradient"] < costs["gram"] / 2 < costs["direct"] / 20
    # Dense soft labels make every pair a positive: no cheaper than the matrix products.
    assert choose_method(128, 1000, 512, nnz=128 * 1000, gradient=True) != "gradient"


# ----------------------------------------------------------------------------- in a Lightning fit
def _multilabel_problem(n=192, c=12, f=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g)
    y = (torch.rand(n, c, generator=g) < 0.2).float()
    y[:, 0] = 1.0  # positive everywhere
    y[:, c - 1] = 0.0  # never positive
    return x, y


class _Loader:
    """Whole batches of a fixed order (every fit sees the same batches)."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch = x, y, batch

    def __iter__(self):
        for start in range(0, len(self.x), self.batch):
            yield self.x[start:start + self.batch], self.y[start:start + self.batch]

    def __len__(self):
        return math.ceil(len(self.x) / self.batch)


def _fit(method, loss=None, accumulate=1, record_every=0, epochs=2, tau=5, precision="32-true"):
    x, y = _multilabel_problem()
    c = y.shape[1]
    pl.seed_everything(0, verbose=False)
    module = SDNNModule(build_backbone({"name": "mlp", "hidden": [16]}, (x.shape[1],)), loss or SigmoidCrossEntropy(),
                        torch.arange(c), c, partial(torch.optim.SGD, lr=0.5, momentum=0.9))
    neglect = NeglectCallback(c, tau=tau, method=method, norms_every=record_every)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[neglect], accelerator="cpu",
                         accumulate_grad_batches=accumulate, precision=precision, num_sanity_val_steps=0)
    trainer.fit(module, _Loader(x, y, 24))
    return neglect


def _thetas(callback):
    return np.array([w["theta"] for w in callback.history])


@pytest.mark.parametrize("accumulate", [1, 2])
def test_fit_gradient_gives_the_theta_history_of_gram(accumulate):
    gram, gradient = _fit("gram", accumulate=accumulate), _fit("gradient", accumulate=accumulate)
    assert gram.gradient_steps == 0 and gradient.gradient_steps == 16  # 8 batches × 2 epochs, all from the gradient
    assert [w["steps"] for w in gradient.history] == [w["steps"] for w in gram.history] == [5, 5, 5, 1]
    theta = _thetas(gradient)
    assert np.isnan(theta[:, -1]).all() and np.isfinite(theta[:, :-1]).all()
    np.testing.assert_allclose(theta, _thetas(gram), rtol=1e-5, equal_nan=True)
    assert np.nanmax(np.abs(theta - 1)) > 1e-2  # not all trivially 1


def test_fit_recorded_norms_and_theta_agree_between_methods():
    gram, gradient = _fit("gram", record_every=3), _fit("gradient", record_every=3)
    np.testing.assert_allclose(_thetas(gradient), _thetas(gram), rtol=1e-5, equal_nan=True)
    a, b = gram.norm_history(), gradient.norm_history()
    assert list(a["steps"]) == list(b["steps"]) == [0, 3, 6, 9, 12, 15]
    for key in ("delta", "delta_hat", "delta_tilde"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-6, equal_nan=True)


def test_hooks_are_removed_after_the_fit():
    callback = _fit("gradient", epochs=1)
    assert callback.gradient_steps == 8 and callback._handles == []


def test_auto_falls_back_when_the_loss_is_not_the_sigmoid_ce():
    x, y = _multilabel_problem()
    callback = NeglectCallback(y.shape[1], method="auto")
    module = SDNNModule(build_backbone({"name": "lr"}, (x.shape[1],)), SoftmaxCrossEntropy(),
                        torch.arange(y.shape[1]), y.shape[1], partial(torch.optim.SGD, lr=0.1))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, accelerator="cpu")
    assert "SoftmaxCrossEntropy" in NeglectCallback.gradient_unavailable(trainer, module)
    callback._attach(trainer, module)
    assert callback._handles == []
    with pytest.raises(ValueError, match="SoftmaxCrossEntropy"):
        NeglectCallback(y.shape[1], method="gradient")._attach(trainer, module)


def test_auto_uses_the_gradient_where_it_is_cheapest_and_matches_gram(monkeypatch):
    monkeypatch.setattr("sdnn.lit.callbacks.choose_method",
                        lambda n, c, f, nnz=None, gradient=False: "gradient" if gradient else "gram")
    auto, gram = _fit("auto", epochs=1), _fit("gram", epochs=1)
    assert auto.gradient_steps == 8
    np.testing.assert_allclose(_thetas(auto), _thetas(gram), rtol=1e-5, equal_nan=True)


def test_auto_falls_back_where_matrix_products_are_cheaper():
    callback = _fit("auto", epochs=1)  # tiny shapes: direct is cheapest
    assert callback.gradient_steps == 0 and callback._handles == []
    np.testing.assert_allclose(_thetas(callback), _thetas(_fit("gram", epochs=1)), rtol=1e-5, equal_nan=True)


def test_a_gradient_that_is_not_the_sigmoid_ces_is_caught_on_the_first_step():
    """Another loss term on head.weight: the first step's check warns and θ stays right."""

    class Penalised(SDNNModule):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            out["loss"] = out["loss"] + 0.1 * self.head.weight.square().sum()
            return out

    x, y = _multilabel_problem()
    c = y.shape[1]
    thetas = []
    for cls in (Penalised, Penalised):
        pl.seed_everything(0, verbose=False)
        module = cls(build_backbone({"name": "mlp", "hidden": [16]}, (x.shape[1],)), SigmoidCrossEntropy(),
                     torch.arange(c), c, partial(torch.optim.SGD, lr=0.5))
        method = "gradient" if not thetas else "gram"
        callback = NeglectCallback(c, tau=5, method=method)
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[callback], accelerator="cpu")
        if method == "gradient":
            with pytest.warns(UserWarning, match="weight gradient is not n"):
                trainer.fit(module, _Loader(x, y, 24))
            assert callback.gradient_steps == 0
        else:
            trainer.fit(module, _Loader(x, y, 24))
        thetas.append(_thetas(callback))
    np.testing.assert_allclose(thetas[0], thetas[1], rtol=1e-5, equal_nan=True)


# ----------------------------------------------------------------------------- under DDP
DDP_SCRIPT = '''
import json, sys
from functools import partial
import pytorch_lightning as pl
import torch
from sdnn.lit import NeglectCallback, SDNNModule
from sdnn.losses import SigmoidCrossEntropy
from sdnn.models import build_backbone

method, out = sys.argv[1], sys.argv[2]
g = torch.Generator().manual_seed(0)
x = torch.randn(192, 20, generator=g)
y = (torch.rand(192, 12, generator=g) < 0.2).float()
y[:, 0] = 1.0
y[:, 11] = 0.0
pl.seed_everything(0, verbose=False)
module = SDNNModule(build_backbone({"name": "mlp", "hidden": [16]}, (20,)), SigmoidCrossEntropy(), torch.arange(12),
                    12, partial(torch.optim.SGD, lr=0.5, momentum=0.9))
callback = NeglectCallback(12, tau=3, method=method)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=24, shuffle=False)
trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[callback], accelerator="cpu", devices=2, strategy="ddp",
                     accumulate_grad_batches=2)
trainer.fit(module, loader)
with open(f"{out}.rank{trainer.global_rank}.json", "w") as handle:
    json.dump({"history": callback.history, "gradient_steps": callback.gradient_steps}, handle)
torch.distributed.destroy_process_group()  # left open, gloo's threads can abort the process at exit
'''


@pytest.mark.slow
def test_ddp_gloo_gradient_theta_equals_gram(tmp_path):
    """Two gloo processes, accumulation 2: each rank's local gradient (before DDP's all-reduce) gives
    the θ of gram; both ranks end with the same θ."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = tmp_path / "ddp_theta.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    runs = {}
    for method in ("gram", "gradient"):
        proc = subprocess.run([sys.executable, str(script), method, str(tmp_path / method)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=RUN_GUARD, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[method] = [json.loads((tmp_path / f"{method}.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["gradient_steps"] for r in runs["gradient"]] == [8, 8]  # 4 local batches × 2 epochs per rank
    assert [r["gradient_steps"] for r in runs["gram"]] == [0, 0]
    theta = {m: [np.array([w["theta"] for w in r["history"]], dtype=float) for r in runs[m]] for m in runs}
    assert theta["gradient"][0].shape == (3, 12)  # windows of τ = 3 batches: 3 + 3 + 2
    for rank in (0, 1):
        np.testing.assert_allclose(theta["gradient"][rank], theta["gram"][0], rtol=1e-5, equal_nan=True)
