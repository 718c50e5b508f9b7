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


# ----------------------------------------------------------------------------- what the figures say (issue 20)

@pytest.fixture
def drawn(monkeypatch):
    """The Figure objects the plot functions save, inspected instead of their pixels (the PNG is still written)."""
    import sdnn.plots as plots

    figures = []
    save = plots._save

    def keep(fig, path):
        figures.append({"axes": [ax for ax in fig.axes if ax.get_visible()], "legends": list(fig.legends),
                        "title": fig._suptitle.get_text() if fig._suptitle else "",
                        "ticks": [[t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
                                  for ax in fig.axes if ax.get_visible()],
                        "titles": [ax.get_title() for ax in fig.axes if ax.get_visible()],
                        "texts": [t.get_text() for ax in fig.axes for t in ax.texts]})
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _history(epochs: int, c: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    windows = [{"step": 19 * (e + 1), "epoch": e, "steps": 19, "complete": True,
                "theta": (1 + rng.gamma(2.0, 1.0, size=c)).tolist()} for e in range(epochs)]
    accuracy = [{"epoch": e, "acc": 0.5, "per_class_acc": rng.uniform(0.3, 1.0, size=c).tolist()}
                for e in range(epochs)]
    return windows, accuracy


def test_fig1_counts_epochs_1_to_e_as_the_console_and_keeps_the_legend_off_the_lines(tmp_path, drawn):
    from sdnn.plots import plot_phase1

    windows, accuracy = _history(5, 4)
    theta = np.array(windows[-1]["theta"])
    plot_phase1(tmp_path, windows, accuracy, None, theta, None, math.nan, [2], names(4))
    fig1 = drawn[0]
    for ticks in fig1["ticks"]:
        assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]  # whole epochs, as "epoch 5/5" on the console
    assert all(ax.get_legend() is None for ax in fig1["axes"]) and len(fig1["legends"]) == 1  # beside the panels
    assert "class2 (selected)" in [t.get_text() for t in fig1["legends"][0].get_texts()]


def test_fig2_shows_the_selected_classes_first(tmp_path, drawn):
    c = 6
    steps = np.arange(0, 100, 10)
    ratio = np.linspace(1.2, 3.0, c)  # class 5 has the highest mean ratio, class 0 the lowest
    delta = np.ones((len(steps), c))
    norms = {"delta": delta, "delta_hat": delta * ratio / 2, "delta_tilde": delta * ratio / 2}
    plot_gradient_norms(steps, norms, names(c), tmp_path / "fig2.png", max_classes=4, selected=[1, 0])
    titles = drawn[0]["titles"]
    assert [t.split()[0] for t in titles] == ["class1", "class0", "class5", "class4"]
    assert "selected" in titles[0] and "selected" in titles[1] and "selected" not in titles[2]
    assert "selected classes first" in drawn[0]["title"]


def test_neglect_vs_error_says_in_the_plot_why_rho_is_undefined(tmp_path, drawn):
    theta = np.array([1.2, 1.5, 1.9, 1.4])
    plot_neglect_vs_error(theta, np.zeros(4), names(4), tmp_path / "a.png", spearman(theta, np.zeros(4)), [2])
    assert "ρ = n/a" in drawn[0]["titles"][0]
    assert any("same test error (0%)" in text for text in drawn[0]["texts"])
    plot_neglect_vs_error(theta, np.array([0.1, 0.2, 0.4, 0.3]), names(4), tmp_path / "b.png", 0.8, [2])
    assert not any("not defined" in text for text in drawn[1]["texts"])  # only the class names


def test_per_class_accuracy_per_epoch_has_a_panel_per_phase(tmp_path, drawn):
    from sdnn.plots import plot_accuracy_per_epoch

    _, phase1 = _history(2, 3)
    _, phase2 = _history(12, 3, seed=1)
    path = plot_accuracy_per_epoch({"phase1": phase1, "phase2": phase2}, names(3), tmp_path / "acc.png",
                                   selected=[1], titles={"phase1": "phase 1", "phase2": "phase 2"})
    assert_png(path)
    assert drawn[0]["titles"] == ["phase 1", "phase 2"]
    assert drawn[0]["ticks"][0] == [1.0, 2.0] and min(drawn[0]["ticks"][1]) >= 1 and max(drawn[0]["ticks"][1]) <= 12
    assert all(float(t).is_integer() for t in drawn[0]["ticks"][1])
    legend = [t.get_text() for t in drawn[0]["legends"][0].get_texts()]
    assert legend == ["class0", "class1 (selected)", "class2", "all classes"]


def test_a_sweep_of_one_seed_has_no_error_bars_and_says_so(tmp_path, drawn):
    rows = [{"method": "sdnn", "num_classes_to_repartition": k, "acc_mean": 0.8 + 0.01 * k, "acc_std": None}
            for k in (1, 2)]
    plot_sweep(rows, "num_classes_to_repartition", tmp_path / "sweep.png")
    assert "one seed: no error bars" in drawn[0]["titles"][0]
