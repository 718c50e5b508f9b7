"""sdnn.stats' Spearman's ρ against scipy; every figure of sdnn.plots (paper Fig. 1, Fig. 2, θ vs error, sweep)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.stats import spearmanr

from sdnn.plots import (
    plot_gradient_norms,
    plot_neglect_and_accuracy,
    plot_neglect_vs_error,
    plot_sweep,
    theta_from_history,
)
from sdnn.stats import spearman

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    path = Path(path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 50 and image.shape[1] > 50


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 60))
        a = rng.integers(0, 6, size=n).astype(float)  # many ties
        b = a * (trial % 3 - 1) + rng.integers(0, 4, size=n)
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_ignores_nan_pairs():
    rng = np.random.default_rng(1)
    a = rng.normal(size=40)
    b = a + rng.normal(scale=0.5, size=40)
    b[[2, 7]] = np.round(b[[2, 7]])
    a[[3, 11, 19]] = np.nan
    b[[5, 11]] = np.nan
    keep = ~(np.isnan(a) | np.isnan(b))
    assert spearman(a, b) == pytest.approx(spearmanr(a[keep], b[keep]).statistic, abs=1e-12)


def test_spearman_degenerate_cases():
    assert math.isnan(spearman([1.0, 2.0], [2.0, 1.0]))
    assert math.isnan(spearman([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, np.nan, 4.0]))
    assert math.isnan(spearman([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


@pytest.fixture(params=[3, 40], ids=["c3", "c40"])
def c(request) -> int:
    return request.param


def names(c: int) -> list[str]:
    return [f"class{i}" for i in range(c)]


def test_neglect_and_accuracy_png(tmp_path, c):
    rng = np.random.default_rng(c)
    epochs = 12
    theta = 1 + rng.gamma(2.0, 1.0, size=(epochs, c))
    theta[0, 0] = np.nan
    theta[:, -1] = np.nan  # a class never seen
    acc = rng.uniform(0.5, 1.0, size=(epochs, c))
    out = plot_neglect_and_accuracy(theta, acc, names(c), tmp_path / "fig1.png")
    assert out == tmp_path / "fig1.png"
    assert_png(out)
    assert_png(plot_neglect_and_accuracy(theta, None, names(c), tmp_path / "fig1_theta_only.png"))


def test_gradient_norms_png(tmp_path, c):
    rng = np.random.default_rng(c + 1)
    steps = np.arange(0, 500, 10)
    delta_hat = rng.uniform(1, 5, size=(len(steps), c))
    delta_tilde = rng.uniform(1, 5, size=(len(steps), c))
    delta = np.abs(delta_tilde - delta_hat) + 0.1
    norms = {"delta": delta, "delta_hat": delta_hat, "delta_tilde": delta_tilde}
    assert_png(plot_gradient_norms(steps, norms, names(c), tmp_path / "fig2.png", max_classes=10))


def test_neglect_vs_error_png(tmp_path, c):
    rng = np.random.default_rng(c + 2)
    theta = 1 + rng.gamma(2.0, 1.0, size=c)
    error = 0.02 * theta + rng.normal(scale=0.01, size=c)
    if c > 3:
        theta[0] = np.nan  # a class without θ is left out of the scatter and of ρ
    rho = spearman(theta, error)
    path = plot_neglect_vs_error(theta, error, names(c), tmp_path / "scatter.png", rho, selected=[1, 2])
    assert_png(path)
    if c > 3:
        assert rho > 0.5


def test_sweep_png(tmp_path):
    rows = [{"method": "baseline", "num_classes_to_repartition": None, "acc_mean": 0.80, "acc_std": 0.01}]
    rows += [{"method": "sdnn", "num_classes_to_repartition": k, "acc_mean": 0.80 + 0.01 * k, "acc_std": 0.005}
             for k in (1, 2, 4)]
    assert_png(plot_sweep(rows, "num_classes_to_repartition", tmp_path / "sweep.png"))


def test_theta_from_history():
    history = [{"step": 10, "epoch": 1, "steps": 10, "complete": True, "theta": [1.5, None, 2.0]},
               {"step": 20, "epoch": 2, "steps": 10, "complete": True, "theta": [1.2, 3.0, None]}]
    epochs, theta = theta_from_history(history)
    np.testing.assert_array_equal(epochs, [1.0, 2.0])
    np.testing.assert_array_equal(theta, [[1.5, np.nan, 2.0], [1.2, 3.0, np.nan]])
