"""sdnn.stats' Spearman's ρ against scipy and its signed numbers; every figure of sdnn.plots (paper Fig. 1, Fig. 2, θ vs error, sweep)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.image import imread
from scipy.stats import spearmanr

from sdnn.plots import (
    plot_gradient_norms,
    plot_neglect_and_accuracy,
    plot_neglect_vs_error,
    plot_sweep,
    theta_from_history,
)
from sdnn.stats import signed, signed_interval, spearman

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    path = Path(path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 50 and image.shape[1] > 50


@pytest.mark.parametrize(("value", "places", "text"), [
    (-0.001, 2, "+0.00"), (-0.0, 2, "+0.00"), (np.float32(-0.004), 2, "+0.00"), (-0.006, 2, "-0.01"),
    (0.004, 3, "+0.004"), (-0.0004, 3, "+0.000"), (-0.04, 1, "+0.0"), (-0.05001, 1, "-0.1"), (1.5, 2, "+1.50")])
def test_signed_never_prints_a_negative_zero(value, places, text):
    assert signed(value, places) == text


def test_an_interval_prints_its_middle_then_its_ends():
    assert signed_interval((-1.234, -0.001, 2.5)) == "+0.00 [-1.23, +2.50]"
    assert signed_interval([0.5, 1.0, 1.5]) == "+1.00 [+0.50, +1.50]"


def test_a_study_report_prints_a_loss_that_rounds_to_zero_as_plus_zero():
    """A per-seed Δ of −0.001 points (a study's diff_per_seed, fractions) is "+0.00", a loss of 0.19 "-0.19"."""
    from sdnn.study_report import format_report

    variant = {"method": "sdnn", "overrides": [], "seeds": [0, 1],
               "test": {"baseline": [0.9, 0.0], "variant": [0.9, 0.0], "diff": [-0.00001, 0.0],
                        "diff_per_seed": [-0.00001, -0.0019], "wins": 0}}
    text = format_report({"study": "tiny", "about": "", "overrides": [], "variants": {"main": variant}})
    assert "| +0.00 ± 0.00 | +0.00, -0.19 |" in text and "-0.00" not in text


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
                        "texts": [t.get_text() for ax in fig.axes for t in ax.texts],
                        "frames": [to_hex(ax.spines["left"].get_edgecolor()) for ax in fig.axes if ax.get_visible()],
                        "widths": [sorted({line.get_linewidth() for line in ax.lines}) for ax in fig.axes
                                   if ax.get_visible()],
                        "spans": [[(float(p.get_x()), float(p.get_x() + p.get_width())) for p in ax.patches]
                                  for ax in fig.axes if ax.get_visible()],
                        "stars": [np.asarray(col.get_offsets()).tolist() for ax in fig.axes for col in ax.collections],
                        "vlines": [float(line.get_xdata()[0]) for ax in fig.axes for line in ax.lines
                                   if line.get_label() == "θ window that selected"],
                        "legend_texts": [t.get_text() for legend in fig.legends for t in legend.get_texts()]})
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
    assert [t.split("\n")[0].split(":")[0] for t in titles] == ["class1", "class0", "class5", "class4"]
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


# ------------------------------------------------------- Fig. 1 and 2 mark the selected classes (Newcomer 3, part 8)

def _windows_with_a_partial_last(c: int) -> list[dict]:
    """Three windows of 10 batches, the last one partial (4 batches): selection uses window 2 (SPEC §2)."""
    rng = np.random.default_rng(5)
    return [{"step": 10 * (k + 1), "epoch": k, "steps": 4 if k == 2 else 10, "complete": k < 2,
             "theta": (1 + rng.permutation(c) / 2).tolist()} for k in range(3)]


def test_fig1_and_fig2_mark_exactly_the_selected_classes_and_name_the_window(tmp_path, drawn):
    from sdnn.neglect import last_window_theta
    from sdnn.plots import plot_phase1
    from sdnn.repartition import select_classes

    c = 6
    history = _windows_with_a_partial_last(c)
    theta, complete = last_window_theta(history)  # the pipeline's own rule
    assert complete and theta == history[1]["theta"]
    selected = select_classes(theta, 2)
    not_picked = [i for i in range(c) if i not in selected]
    steps = np.arange(0, 24, 2)
    ratio = np.full(c, 1.5)
    ratio[not_picked[0]] = 9.0  # a class not selected with by far the highest mean ratio over phase 1
    delta = np.ones((len(steps), c))
    norms = {"steps": steps, "delta": delta, "delta_hat": delta * ratio / 2, "delta_tilde": delta * ratio / 2}
    plot_phase1(tmp_path, history, [], norms, np.array(theta), None, math.nan, selected, names(c))
    fig1, fig2 = drawn[0], drawn[1]

    # Fig. 2: the selected first, then the highest mean ratio; a red frame and thick lines exactly on the selected.
    shown = [t.split("\n")[0].split(":")[0] for t in fig2["titles"]]
    assert shown[:3] == [f"class{i}" for i in selected] + [f"class{not_picked[0]}"]
    marked = [name for name, frame in zip(shown, fig2["frames"]) if frame == to_hex("tab:red")]
    assert marked == [f"class{i}" for i in selected]
    thick = [name for name, widths in zip(shown, fig2["widths"]) if widths == [2.0]]
    assert thick == marked and all(widths == [1.0] for name, widths in zip(shown, fig2["widths"]) if name not in marked)
    assert [": selected" in t for t in fig2["titles"]] == [name in marked for name in shown]
    rank = {i: r + 1 for r, i in enumerate(np.argsort(-np.array(theta), kind="stable"))}
    top_ratio = fig2["titles"][2]  # why the class with the highest mean ratio was not picked: its θ there
    assert f"θ {theta[not_picked[0]]:.2f} (rank {rank[not_picked[0]]})" in top_ratio
    assert "selected class" in fig2["legend_texts"] and "batches of the θ window that selected" in fig2["legend_texts"]
    assert all(spans == [(10.0, 19.0)] for spans in fig2["spans"])  # window 2: batches 10..19
    assert "window 2 of 3, the last complete one (epoch 2, batches 10–19)" in fig2["title"]
    assert "the 2 largest θ" in fig2["title"]

    # Fig. 1: "(selected)" in the legend exactly for the selected; the window marked, a star on each selected.
    selected_entries = [t for t in fig1["legend_texts"] if t.endswith("(selected)")]
    assert selected_entries == [f"class{i} (selected)" for i in sorted(selected)]
    assert fig1["vlines"] == [2.0]  # window 2 drawn at x = 2 (one window per epoch: epochs 1..3)
    assert sorted(y for x, y in fig1["stars"][0]) == pytest.approx(sorted(theta[i] for i in selected))
    assert "window 2 of 3, the last complete one" in fig1["title"]


def test_fixed_classes_are_said_to_be_fixed_not_chosen_by_theta(tmp_path, drawn):
    from sdnn.plots import plot_phase1

    c = 4
    history = _windows_with_a_partial_last(c)
    steps = np.arange(0, 24, 2)
    delta = np.ones((len(steps), c))
    norms = {"steps": steps, "delta": delta, "delta_hat": delta, "delta_tilde": delta}
    plot_phase1(tmp_path, history, [], norms, np.array(history[1]["theta"]), None, math.nan, [3], names(c),
                fixed=True)
    for fig in drawn[:2]:
        assert "fixed by subclass.classes" in fig["title"] and "largest θ" not in fig["title"]
    assert drawn[0]["vlines"] == [] and all(spans == [] for spans in drawn[1]["spans"])
    assert [f == to_hex("tab:red") for f in drawn[1]["frames"]] == [True, False, False, False]
