"""Figures of the paper (Gkalelis & Mezaris, MMM 2020) and of sweep reports, drawn with matplotlib.

- Fig. 1: the neglect score θ_i and the per-class test accuracy CCR_i over epochs
  (:func:`plot_neglect_and_accuracy`).
- Fig. 2: the lengths of the gradient parts δ_i, δ̂_i, δ̃_i over steps (:func:`plot_gradient_norms`).
- θ against the per-class test error, with Spearman's ρ (:func:`plot_neglect_vs_error`).
- The per-class test accuracy after each epoch of every trained phase, any method
  (:func:`plot_accuracy_per_epoch`).
- Test accuracy against a swept numeric setting (:func:`plot_sweep`) or per setting, one bar each
  (:func:`plot_setting_bars`), for ``sdnn.report``.
- Class2Str's latent hierarchy: the binary tree of the classes' codes (:func:`plot_hierarchy_tree`).

Every function takes plain numpy data, draws on its own ``Figure`` with the non-interactive Agg
canvas (never pyplot: no window opens, no global backend is switched, nothing stays open), writes
a PNG and returns the path. Nothing here imports torch, Lightning or Hydra.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from sdnn.stats import sort_key

LEGEND_MAX_CLASSES = 20  # above this many classes, only the top classes get a colour and a legend entry
TOP_HIGHLIGHT = 5
DPI = 120


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def _last_finite(values: np.ndarray) -> np.ndarray:
    """Per column of (E, c), the last finite value (NaN where a column has none)."""
    out = np.full(values.shape[1], np.nan)
    for i in range(values.shape[1]):
        finite = np.flatnonzero(np.isfinite(values[:, i]))
        if finite.size:
            out[i] = values[finite[-1], i]
    return out


def _top_indices(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest finite scores, largest first."""
    finite = [i for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable") if np.isfinite(scores[i])]
    return [int(i) for i in finite[:k]]


def _class_styles(c: int, highlight: Sequence[int]) -> list[dict[str, Any]]:
    """Line styles: every class coloured (c ≤ 20), else coloured ``highlight`` and thin grey others."""
    if c <= LEGEND_MAX_CLASSES:
        cmap = colormaps["tab10" if c <= 10 else "tab20"]
        return [{"color": cmap(i), "lw": 1.5, "zorder": 2, "legend": True} for i in range(c)]
    cmap = colormaps["tab10"]
    styles = [{"color": "0.75", "lw": 0.6, "zorder": 1, "legend": False} for _ in range(c)]
    for rank, i in enumerate(highlight):
        styles[i] = {"color": cmap(rank % 10), "lw": 1.8, "zorder": 3, "legend": True}
    return styles


def theta_from_history(history: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """``results.json``'s ``theta_history`` → (epoch of each window (W,), θ (W, c) with NaN for null)."""
    epochs = np.array([float(w.get("epoch", k)) for k, w in enumerate(history)])
    theta = np.array([[np.nan if t is None else float(t) for t in w["theta"]] for w in history], dtype=float)
    return epochs, theta.reshape(len(history), -1)


def _integer_epochs(ax, x: np.ndarray, label: str = "epoch") -> None:
    """Whole epochs on the x axis, over the epochs ``x`` drawn (1..E, as the console counts them)."""
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    if len(x):
        pad = max(0.25, 0.03 * (np.max(x) - np.min(x)))
        ax.set_xlim(np.min(x) - pad, np.max(x) + pad)


def _legend_outside(fig: Figure, ax, columns: int = 1) -> None:
    """The legend of ``ax``'s lines to the right of the figure, off the lines."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", ncol=columns,
                   frameon=False)


def plot_neglect_and_accuracy(theta_per_epoch: np.ndarray, acc_per_epoch: np.ndarray | None,
                              class_names: Sequence[str], path: str | Path,
                              epochs: np.ndarray | None = None, x_label: str = "epoch",
                              acc_epochs: np.ndarray | None = None, selected: Sequence[int] = (),
                              window_index: int | None = None, caption: str = "") -> Path:
    """Fig. 1: θ_i per class over epochs (left) and the per-class test accuracy CCR_i (right, if given).

    ``theta_per_epoch`` is (W, c) and ``acc_per_epoch`` (E, c), NaN allowed; ``epochs`` the x values of
    θ's windows (default 1..W; with ``x_label="step"``, the step each window ended at) and ``acc_epochs``
    those of the accuracy (default 1..E). Above 20 classes the ``selected`` classes and the 5 with the
    largest final θ are coloured and named; the selected ones are drawn thick and named "(selected)".
    ``window_index``: the θ window that selected them (:func:`selecting_window`), a dotted line with a star
    on each selected class; ``caption`` (:func:`selection_caption`) under the title. The legend is outside
    the panels.
    """
    theta = np.asarray(theta_per_epoch, dtype=float)
    if theta.ndim != 2:
        raise ValueError(f"theta_per_epoch must be (epochs, classes), got shape {theta.shape}")
    n_epochs, c = theta.shape
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} classes")
    x = np.arange(1, n_epochs + 1) if epochs is None else np.asarray(epochs, dtype=float)
    acc = None if acc_per_epoch is None else np.asarray(acc_per_epoch, dtype=float)
    if acc is not None and acc.shape[1] != c:
        raise ValueError(f"acc_per_epoch has {acc.shape[1]} classes, theta_per_epoch {c}")
    top = _top_indices(_last_finite(theta), TOP_HIGHLIGHT)
    chosen = [int(i) for i in selected]
    styles = _class_styles(c, chosen + [i for i in top if i not in chosen])
    for i in chosen:
        styles[i] = {**styles[i], "lw": 2.6, "zorder": 4}

    panels = 1 if acc is None else 2
    fig = _figure(5.5 * panels, 4.2)
    axes = fig.subplots(1, panels, squeeze=False)
    ax_theta = axes[0, 0]
    for i in range(c):
        style = styles[i]
        label = (class_names[i] + (" (selected)" if i in chosen else "")) if style["legend"] else None
        ax_theta.plot(x, theta[:, i], color=style["color"], lw=style["lw"], zorder=style["zorder"],
                      marker="." if n_epochs < 30 else None, label=label)
    if window_index is not None and 0 <= window_index < n_epochs:
        ax_theta.axvline(x[window_index], color="0.4", ls=":", lw=1.2, zorder=1, label="θ window that selected")
        if chosen:
            ax_theta.scatter(x[[window_index] * len(chosen)], theta[window_index, chosen], marker="*", s=150,
                             color=[styles[i]["color"] for i in chosen], edgecolor="black", lw=0.6, zorder=5)
    if x_label == "epoch":
        _integer_epochs(ax_theta, x)
    else:
        ax_theta.set_xlabel(x_label)
    ax_theta.set_ylabel(r"neglect score $\theta_i$")
    coloured = f" (in colour: {'the selected and ' if chosen else ''}the top {len(top)} by final θ)"
    ax_theta.set_title(r"$\theta_i$ per class" + ("" if c <= LEGEND_MAX_CLASSES else coloured))
    ax_theta.grid(alpha=0.3)
    if acc is not None:
        ax_acc = axes[0, 1]
        x_acc = np.arange(1, len(acc) + 1) if acc_epochs is None else np.asarray(acc_epochs, dtype=float)
        for i in range(c):
            style = styles[i]
            ax_acc.plot(x_acc, 100 * acc[:, i], color=style["color"], lw=style["lw"], zorder=style["zorder"],
                        marker="." if len(acc) < 30 else None)
        _integer_epochs(ax_acc, x_acc)
        ax_acc.set_ylabel(r"test accuracy CCR$_i$ (%)")
        ax_acc.set_title("per-class test accuracy")
        ax_acc.grid(alpha=0.3)
    fig.suptitle("Neglect score and per-class accuracy in phase 1 (paper Fig. 1)"
                 + (f"\n{caption} (" + ("dotted; " if window_index is not None else "")
                    + "selected classes thick" + (", starred)" if window_index is not None else ")")
                    if caption else ""))
    fig.tight_layout()
    _legend_outside(fig, ax_theta, columns=2 if 10 < c <= LEGEND_MAX_CLASSES else 1)
    return _save(fig, path)


def selecting_window(history: list[dict]) -> dict[str, Any] | None:
    """The θ window whose θ selects the classes (SPEC §2, as ``sdnn.neglect.last_window_theta``): the last
    complete window of phase 1, or the last one where none completed. ``index`` (0-based), ``count`` (of
    windows), ``complete``, ``epoch`` (0-based), ``first_batch``/``last_batch`` (the batches it averaged,
    counted from phase 1's start as Fig. 2's steps are) and ``theta`` (NaN for null); None for no history."""
    if not history:
        return None
    complete = [k for k, w in enumerate(history) if w.get("complete", True)]
    index = complete[-1] if complete else len(history) - 1
    first = int(sum(int(w.get("steps", 0)) for w in history[:index]))
    window = history[index]
    return {"index": index, "count": len(history), "complete": bool(complete), "epoch": int(window.get("epoch", index)),
            "first_batch": first, "last_batch": first + max(int(window.get("steps", 1)), 1) - 1,
            "theta": np.array([np.nan if t is None else float(t) for t in window["theta"]], dtype=float)}


def selection_caption(window: dict[str, Any] | None, k: int, fixed: bool = False) -> str:
    """One line saying which θ chose the selected classes (Fig. 1 and Fig. 2)."""
    if fixed:
        return "selected: fixed by subclass.classes, not chosen by θ"
    if window is None:
        return ""
    where = (f"window {window['index'] + 1} of {window['count']}, "
             + ("the last complete one" if window["complete"] else "partial: no window completed")
             + f" (epoch {window['epoch'] + 1}, batches {window['first_batch']}–{window['last_batch']})")
    return f"selected: the {k} largest θ of {where}"


def plot_gradient_norms(steps: np.ndarray, norms: dict[str, np.ndarray], class_names: Sequence[str],
                        path: str | Path, max_classes: int = 10, selected: Sequence[int] = (),
                        window: dict[str, Any] | None = None, caption: str = "") -> Path:
    """Fig. 2: ‖δ_i‖, ‖δ̂_i‖, ‖δ̃_i‖ over steps, one subplot per class.

    ``norms`` holds "delta", "delta_hat", "delta_tilde", each (T, c). The ``selected`` classes come first
    (in the order given), marked: a red frame, thick lines, a red bold title and a legend entry; then the
    classes with the largest mean ratio (‖δ̂‖ + ‖δ̃‖) / ‖δ‖ over the recorded steps, up to ``max_classes``
    panels (never fewer than the selected classes). ``window`` (:func:`selecting_window`): its batches are
    shaded and every title gives the class's θ there and its rank, so that a class with a higher mean
    ratio than a selected one shows why it was not picked; ``caption`` (:func:`selection_caption`) goes
    under the title.
    """
    steps = np.asarray(steps, dtype=float)
    parts = {key: np.asarray(norms[key], dtype=float) for key in ("delta", "delta_hat", "delta_tilde")}
    shapes = {a.shape for a in parts.values()}
    if len(shapes) != 1 or parts["delta"].ndim != 2 or parts["delta"].shape[0] != len(steps):
        raise ValueError(f"norms must all be (T={len(steps)}, c); got {[a.shape for a in parts.values()]}")
    c = parts["delta"].shape[1]
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} classes")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (parts["delta_hat"] + parts["delta_tilde"]) / np.maximum(parts["delta"], 1e-12)
        ratio[~np.isfinite(ratio)] = np.nan
    mean_ratio = np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in ratio.T])
    chosen = [int(i) for i in selected]
    rest = [i for i in (_top_indices(mean_ratio, c) or list(range(c))) if i not in chosen]
    shown = chosen + rest[:max(0, max_classes - len(chosen))]
    theta = None if window is None else np.asarray(window["theta"], dtype=float)
    theta_rank = {} if theta is None else {i: r + 1 for r, i in enumerate(_top_indices(theta, c))}

    ncols = min(len(shown), 5)
    nrows = math.ceil(len(shown) / ncols)
    fig = _figure(3.4 * ncols, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    labels = {"delta": r"$\|\delta_i\|$", "delta_hat": r"$\|\hat\delta_i\|$", "delta_tilde": r"$\|\tilde\delta_i\|$"}
    colors = {"delta": "black", "delta_hat": "tab:blue", "delta_tilde": "tab:red"}
    for k, ax in enumerate(axes.flat):
        if k >= len(shown):
            ax.set_visible(False)
            continue
        i = shown[k]
        is_selected = i in chosen
        if window is not None:
            ax.axvspan(window["first_batch"], window["last_batch"], color="gold", alpha=0.18, lw=0, zorder=0)
        for key, values in parts.items():
            ax.plot(steps, values[:, i], color=colors[key], lw=2.0 if is_selected else 1.0, label=labels[key])
        about = f"mean ratio {mean_ratio[i]:.2f}"
        if theta is not None:
            about = (f"θ {theta[i]:.2f} (rank {theta_rank[i]}), " if np.isfinite(theta[i]) else
                     "θ n/a (no positive), ") + about
        ax.set_title(f"{class_names[i]}" + (": selected" if is_selected else "") + f"\n{about}", fontsize="small",
                     color="tab:red" if is_selected else "black", fontweight="bold" if is_selected else "normal")
        if is_selected:
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:red")
                spine.set_linewidth(2.0)
        ax.grid(alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("length")
        if k >= len(shown) - ncols:
            ax.set_xlabel("step (batch of phase 1)")
    handles = [Line2D([], [], color=colors[key], lw=1.2) for key in parts]
    legend_labels = [labels[key] for key in parts]
    if chosen:
        handles.append(Patch(facecolor="none", edgecolor="tab:red", lw=2.0))
        legend_labels.append("selected class")
    if window is not None:
        handles.append(Patch(facecolor="gold", alpha=0.3))
        legend_labels.append("batches of the θ window that selected")
    order = "the selected classes first (red frame), then " if chosen else ""
    title = (f"Gradient lengths in phase 1 (paper Fig. 2): {order}the highest mean ratio "
             r"$(\|\hat\delta_i\| + \|\tilde\delta_i\|) / \|\delta_i\|$ over the recorded steps")
    if caption:
        title += f"\n{caption}" + ("; θ there, not the mean ratio, decides" if window is not None and
                                    not caption.startswith("selected: fixed") else "")
    height = 3.0 * nrows + 0.4
    top = 1 - (0.62 if caption else 0.42) / height  # the legend's top, under the title's lines
    fig.tight_layout(rect=(0, 0, 1, top - 0.3 / height))  # before the title, which it would make room for again
    fig.suptitle(title, fontsize="medium", y=1 - 0.05 / height, va="top")
    fig.legend(handles, legend_labels, loc="upper center", bbox_to_anchor=(0.5, top), ncol=len(handles),
               fontsize="small", frameon=False)
    return _save(fig, path)


def plot_neglect_vs_error(theta: np.ndarray, test_error: np.ndarray, class_names: Sequence[str], path: str | Path,
                          rho: float, selected: Sequence[int] = ()) -> Path:
    """Final θ_i against the per-class test error (1 − CCR_i), the correlation of paper Fig. 1.

    Selected classes are highlighted; points are named when c ≤ 20; the title gives Spearman's ρ
    (``sdnn.stats.spearman``).
    """
    theta = np.asarray(theta, dtype=float).ravel()
    error = np.asarray(test_error, dtype=float).ravel()
    if theta.shape != error.shape or len(class_names) != len(theta):
        raise ValueError(f"theta {theta.shape}, test_error {error.shape} and {len(class_names)} names differ")
    is_selected = np.zeros(len(theta), dtype=bool)
    is_selected[[int(i) for i in selected]] = True
    shown = ~(np.isnan(theta) | np.isnan(error))

    fig = _figure(6, 4.5)
    ax = fig.subplots()
    rest = shown & ~is_selected
    ax.scatter(theta[rest], 100 * error[rest], s=28, color="tab:blue", alpha=0.8, label="other classes")
    chosen = shown & is_selected
    if chosen.any():
        ax.scatter(theta[chosen], 100 * error[chosen], s=70, color="tab:red", marker="D", edgecolor="black",
                   zorder=3, label="selected classes")
    if len(theta) <= LEGEND_MAX_CLASSES:
        for i in np.flatnonzero(shown):
            ax.annotate(class_names[i], (theta[i], 100 * error[i]), textcoords="offset points", xytext=(4, 4),
                        fontsize="small")
    missing = int((~shown).sum())
    rho_text = "n/a" if math.isnan(rho) else f"{rho:.3f}"
    ax.set_title(f"θ vs per-class test error: Spearman ρ = {rho_text}"
                 + (f" ({missing} class(es) without θ)" if missing else ""))
    if math.isnan(rho):
        why = _no_rank_correlation(theta[shown], 100 * error[shown])
        ax.text(0.5, 0.75, f"Spearman's ρ is not defined here:\n{why}", transform=ax.transAxes, ha="center",
                va="center", fontsize="small", bbox={"boxstyle": "round", "facecolor": "lightyellow", "alpha": 0.9})
        if shown.any() and np.ptp(error[shown]) == 0:  # one value: the points low on a 10-point scale, no hairline
            low = max(-1.0, 100 * error[shown][0] - 2)
            ax.set_ylim(low, low + 10)
    ax.set_xlabel(r"neglect score $\theta_i$ (last window of phase 1)")
    ax.set_ylabel("test error 1 − CCR$_i$ (%)")
    ax.grid(alpha=0.3)
    if chosen.any():
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _no_rank_correlation(theta: np.ndarray, error_percent: np.ndarray) -> str:
    """Why a rank correlation of these values is undefined (``sdnn.stats.spearman`` gave NaN)."""
    if len(theta) < 3:
        return f"{len(theta)} class(es) with both θ and a test error (3 needed)"
    if np.ptp(error_percent) == 0:
        return f"every class has the same test error ({error_percent[0]:.3g}%), nothing to rank"
    if np.ptp(theta) == 0:
        return "every class has the same θ, nothing to rank"
    return "too few distinct values to rank"


def plot_phase1(run_dir: str | Path, history: list[dict], epoch_test_acc: list[dict], norms: dict | None,
                theta: np.ndarray, error: np.ndarray | None, rho: float, selected: Sequence[int],
                class_names: Sequence[str], fixed: bool = False) -> dict[str, Path]:
    """A run's phase-1 figures in ``run_dir``: Fig. 1 (θ_i and, per epoch, CCR_i), Fig. 2 (the three
    norms, if recorded; the ``selected`` classes first) and final θ against the per-class test ``error``
    (if known) with ``rho``. Fig. 1 and 2 mark the selected classes and say which window's θ chose them
    (``fixed``: the user's ``subclass.classes``, not θ)."""
    window = selecting_window(history)
    caption = selection_caption(window, len(selected), fixed)
    run_dir = Path(run_dir)
    epochs, theta_per_window = theta_from_history(history)
    if len(set(epochs.tolist())) == len(epochs):  # one window per epoch (phase1.tau=null): epochs 1..E
        x, x_label = epochs + 1, "epoch"
    else:  # several windows per epoch (phase1.tau): the step each window ended at
        x, x_label = np.array([float(w.get("step", k)) for k, w in enumerate(history)]), "step (end of θ window)"
    accuracy = np.array([a["per_class_acc"] for a in epoch_test_acc], dtype=float) if epoch_test_acc else None
    acc_epochs = np.array([a["epoch"] + 1 for a in epoch_test_acc], dtype=float) if epoch_test_acc else None
    drawn = {"fig1_neglect_and_accuracy": plot_neglect_and_accuracy(
        theta_per_window, accuracy, class_names, run_dir / "fig1_neglect_and_accuracy.png", epochs=x,
        x_label=x_label, acc_epochs=acc_epochs, selected=selected,
        window_index=None if window is None or fixed else window["index"], caption=caption)}
    if norms is not None and len(norms["steps"]):
        drawn["fig2_gradient_norms"] = plot_gradient_norms(
            norms["steps"], {k: norms[k] for k in ("delta", "delta_hat", "delta_tilde")}, class_names,
            run_dir / "fig2_gradient_norms.png", selected=selected, window=None if fixed else window,
            caption=caption)
    if error is not None:
        drawn["neglect_vs_error"] = plot_neglect_vs_error(theta, error, class_names, run_dir / "neglect_vs_error.png",
                                                          rho, selected=selected)
    return drawn


def plot_accuracy_per_epoch(phases: dict[str, list[dict]], class_names: Sequence[str], path: str | Path,
                            selected: Sequence[int] = (), titles: dict[str, str] | None = None) -> Path:
    """The per-class test accuracy after each epoch, one panel per trained phase (``phases``: name →
    ``[{"epoch" (0-based), "acc", "per_class_acc"}, ...]``, as ``results.json``'s ``epoch_test_acc``),
    overall accuracy dashed, the ``selected`` classes drawn thick. Up to 20 classes every class has a
    colour and a legend entry (outside the panels); above, the selected classes and the 5 lowest at the
    end of the last phase, the others thin grey. Epochs 1..E on the x axis."""
    phases = {name: history for name, history in phases.items() if history}
    if not phases:
        raise ValueError("no phase has per-epoch test accuracy")
    c = len(class_names)
    last = np.array(list(phases.values())[-1][-1]["per_class_acc"], dtype=float)
    worst = [i for i in np.argsort(np.nan_to_num(last, nan=np.inf), kind="stable")[:TOP_HIGHLIGHT]
             if np.isfinite(last[i])]
    chosen = [int(i) for i in selected]
    styles = _class_styles(c, chosen + [int(i) for i in worst if i not in chosen])
    for i in chosen:
        styles[i] = {**styles[i], "lw": 2.6, "zorder": 4}
    fig = _figure(4.6 * len(phases) + 0.6, 4.0)
    axes = fig.subplots(1, len(phases), squeeze=False, sharey=True)[0]
    for ax, (name, history) in zip(axes, phases.items()):
        x = np.array([h["epoch"] + 1 for h in history], dtype=float)
        acc = np.array([h["per_class_acc"] for h in history], dtype=float).reshape(len(history), c)
        marker = "." if len(x) < 30 else None
        for i in range(c):
            style = styles[i]
            label = (class_names[i] + (" (selected)" if i in chosen else "")) if style["legend"] else None
            ax.plot(x, 100 * acc[:, i], color=style["color"], lw=style["lw"], zorder=style["zorder"], marker=marker,
                    label=label)
        ax.plot(x, [100 * h["acc"] for h in history], color="black", ls="--", lw=1.4, zorder=5, label="all classes")
        ax.set_title((titles or {}).get(name, name), fontsize="medium")
        _integer_epochs(ax, x)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    notes = (["selected classes thick"] if chosen else []) + (
        [f"in colour: {'the selected and ' if chosen else ''}the {len(worst)} lowest at the end"]
        if c > LEGEND_MAX_CLASSES else [])
    fig.suptitle("Per-class test accuracy after each epoch" + (f" ({'; '.join(notes)})" if notes else ""))
    fig.tight_layout()
    _legend_outside(fig, axes[0], columns=2 if 10 < c <= LEGEND_MAX_CLASSES else 1)
    return _save(fig, path)


def plot_sweep(rows: list[dict], x_key: str, path: str | Path, y_key: str = "acc_mean", err_key: str = "acc_std",
               group_key: str = "method", scale: float = 100.0, y_label: str = "test accuracy (%)") -> Path:
    """Mean ± std (error bars) of ``y_key`` against a swept ``x_key``, one line per ``group_key`` value.

    A group whose rows have no ``x_key`` value (e.g. the baseline, where the number of
    repartitioned classes does not apply) is drawn as a horizontal line with a ±std band. A row whose
    std is None (one seed) has no error bar; where no row has one, the title says so.
    Values are multiplied by ``scale`` (fractions → percent).
    """
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        if row.get(y_key) is not None:
            groups.setdefault(row.get(group_key), []).append(row)
    fig = _figure(6.5, 4.5)
    ax = fig.subplots()
    xs_all = sorted({row[x_key] for row in rows if row.get(x_key) is not None})
    cmap = colormaps["tab10"]
    for k, (group, members) in enumerate(sorted(groups.items(), key=lambda item: sort_key(item[0]))):
        color = cmap(k % 10)
        label = str(group)
        with_x = sorted((r for r in members if r.get(x_key) is not None), key=lambda r: r[x_key])
        for row in members:
            if row.get(x_key) is None and xs_all:
                mean = scale * row[y_key]
                std = scale * (row.get(err_key) or 0.0)
                ax.axhline(mean, color=color, ls="--", lw=1.2, label=label)
                ax.axhspan(mean - std, mean + std, color=color, alpha=0.12)
        if with_x:
            x = np.array([r[x_key] for r in with_x], dtype=float)
            y = scale * np.array([r[y_key] for r in with_x], dtype=float)
            err = scale * np.array([r.get(err_key) or 0.0 for r in with_x], dtype=float)
            ax.errorbar(x, y, yerr=err, color=color, marker="o", capsize=3, lw=1.5, label=label)
    if xs_all and all(float(v).is_integer() for v in xs_all):
        ax.set_xticks(xs_all)
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_label)
    one_seed = all(row.get(err_key) is None for rows_ in groups.values() for row in rows_)
    ax.set_title(f"{y_label} vs {x_key} " + ("(one seed: no error bars)" if one_seed else "(mean ± std over seeds)"))
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_setting_bars(bars: list[dict], path: str | Path, panels: dict[str, str], pair_seeds: bool = True,
                      note: str = "", scale: float = 100.0) -> Path:
    """One bar per setting (``sdnn.report.bar_values``): mean ± std over seeds (bar and error bar) with each
    seed's value as a dot on it, coloured by seed (up to 10 seeds), and, with ``pair_seeds``, a thin line
    joining a seed's dots across the bars (the seeds pair: same data split and initialisation).

    ``panels`` maps a metric of ``bar["values"]`` to its axis label (e.g. ``{"acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)"}``); a panel is drawn for each metric some bar has, on one shared
    y axis. Bars are coloured by ``bar["method"]``; the mean ± std is written under each bar's label;
    ``note`` (settings every bar shares) goes in the title. Values are multiplied by ``scale``.
    """
    names = [name for name in panels if any(name in bar["values"] for bar in bars)]
    seeds = sorted({seed for bar in bars for name in names for seed in bar["values"].get(name, {}).get("per_seed", {})},
                   key=sort_key)
    coloured = len(seeds) <= 10
    seed_colour = {seed: colormaps["tab10"](k) if coloured else "0.3" for k, seed in enumerate(seeds)}
    slots = np.linspace(-0.27, 0.27, len(seeds) + len(seeds) % 2)  # an even number: none on the error bar
    offset = dict(zip(seeds, slots if len(seeds) > 1 else [0.0]))  # one seed: no error bar, the dot centred
    methods = list(dict.fromkeys(str(bar.get("method")) for bar in bars))
    method_colour = {m: colormaps["tab10"](k % 10) for k, m in enumerate(methods)}
    lines = pair_seeds and len(bars) > 1 and any(
        sum(seed in bar["values"].get(name, {}).get("per_seed", {}) for bar in bars) > 1 for name in names
        for seed in seeds)
    one_seed = all(bar["values"].get(name, {}).get("std") is None for bar in bars for name in names)
    longest = max((len(line) for bar in bars for line in bar["label"].split("\n")), default=0)
    per_bar = max(0.95, 0.075 * longest + 0.25)  # inches: the x labels (small font) never touch
    fig = _figure(max(4.2, per_bar * len(bars) + 1.8) * len(names) + (1.2 if coloured else 0.2), 4.6)
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    x = np.arange(len(bars), dtype=float)
    shown: list[float] = []
    for ax, name in zip(axes, names):
        ticks = []
        for k, bar in enumerate(bars):
            value = bar["values"].get(name)
            if value is None or value["n"] == 0 or not math.isfinite(value["mean"]):
                ticks.append(f"{bar['label']}\n(none)")
                continue
            mean = scale * value["mean"]
            std = None if value["std"] is None else scale * value["std"]
            ax.bar(x[k], mean, width=0.7, color=method_colour[str(bar.get("method"))], alpha=0.35, zorder=1,
                   edgecolor="0.3", lw=0.8)
            if std is not None:
                ax.errorbar(x[k], mean, yerr=std, color="black", capsize=6, lw=1.6, zorder=3)
            shown += [mean] if std is None else [mean - std, mean + std]
            for seed, v in value["per_seed"].items():
                ax.scatter(x[k] + offset[seed], scale * v, s=26, color=seed_colour[seed], edgecolor="white",
                           lw=0.5, zorder=4, label=f"seed {seed}" if coloured else None)
                shown.append(scale * v)
            ticks.append(f"{bar['label']}\n{mean:.2f}" + (f" ± {std:.2f}" if std is not None else " (1 seed)"))
        if lines:
            for seed in seeds:
                ys = [scale * bar["values"][name]["per_seed"][seed] if seed in bar["values"].get(name, {}).get(
                    "per_seed", {}) else np.nan for bar in bars]
                ax.plot(x + offset[seed], ys, color=seed_colour[seed], lw=0.8, alpha=0.5, zorder=2)
        ax.set_xticks(x, ticks, fontsize="small")
        ax.set_xlim(-0.6, len(bars) - 0.4)
        ax.set_ylabel(panels[name])
        ax.tick_params(axis="y", labelleft=True)
        ax.grid(axis="y", alpha=0.3)
    if shown:
        low, high = min(shown), max(shown)
        pad = max(0.5, 0.15 * (high - low))
        axes[0].set_ylim(max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
    if coloured:  # one legend entry per seed, beside the panels
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        fig.legend(unique.values(), unique.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small",
                   frameon=False)
    how = "one seed, no error bars" if one_seed else "bar and error bar: mean ± std over seeds"
    if len(seeds) > 1:
        how += "; a dot per seed" + ("; a line joins a seed across the settings" if lines else "")
    fig.suptitle(f"{' and '.join(panels[n].replace(' (%)', '') for n in names)} per setting\n({how}"
                 + (f"; every run: {note}" if note else "") + ")", fontsize="medium")
    fig.tight_layout()
    return _save(fig, path)


def plot_paired_differences(diffs: dict[str, Sequence[float]], path: str | Path, title: str = "",
                            scale: float = 100.0) -> Path:
    """One row per variant: each seed's paired difference (a dot) and their mean ± std (a bar),
    against a zero line (``python -m sdnn.study``)."""
    names = [name for name, values in diffs.items() if len(values)]
    fig = _figure(7.0, 0.45 * max(len(names), 2) + 1.4)
    ax = fig.subplots()
    for row, name in enumerate(names):
        values = scale * np.asarray(diffs[name], dtype=float)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.errorbar(values.mean(), row, xerr=std, fmt="s", color="black", capsize=3, zorder=3)
        ax.scatter(values, np.full(len(values), row), color="tab:blue", alpha=0.6, s=18, zorder=2)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("SDNN − baseline, same seed (accuracy points)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_regime_map(diffs: dict[str, dict[str, Sequence[float]]], path: str | Path, scale: float = 100.0,
                    columns: int = 4) -> Path:
    """The regime map (``python -m sdnn.study map``): one panel per study (regime), ``columns`` a row,
    one row per variant: each seed's paired difference (a dot) and their mean ± std (a bar), zero
    dashed; one accuracy scale for all panels, so sizes compare."""
    regimes = list(diffs)
    variants = list(dict.fromkeys(v for per in diffs.values() for v in per))
    columns = max(1, min(columns, len(regimes)))
    rows = max(1, math.ceil(len(regimes) / columns))
    fig = _figure(3.0 * columns + 1.6, rows * (0.42 * max(len(variants), 2) + 1.4) + 0.6)  # room for two-line titles
    axes = np.atleast_2d(fig.subplots(rows, columns, sharey=True, sharex=True, squeeze=False))
    for index, ax in enumerate(axes.flat):
        if index >= len(regimes):
            ax.set_visible(False)
            continue
        regime = regimes[index]
        for row, variant in enumerate(variants):
            values = scale * np.asarray(diffs[regime].get(variant, []), dtype=float)
            if not len(values):
                continue
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            colour = "tab:green" if values.mean() - std > 0 else ("tab:red" if values.mean() + std < 0 else "black")
            ax.errorbar(values.mean(), row, xerr=std, fmt="s", color=colour, capsize=3, zorder=3)
            ax.scatter(values, np.full(len(values), row), color="tab:blue", alpha=0.5, s=14, zorder=2)
        ax.axvline(0.0, color="grey", lw=1, ls="--")
        ax.set_title(textwrap.fill(regime, 36), fontsize=9)  # long regime names would run into the next panel
        ax.tick_params(labelsize=8)
        if index >= len(regimes) - columns:
            ax.set_xlabel("Δ test accuracy (points)", fontsize=8)
        ax.tick_params(axis="x", labelbottom=True)
    axes[0, 0].set_yticks(range(len(variants)), variants)
    axes[0, 0].invert_yaxis()
    fig.suptitle("variant − baseline of the same seed, per regime (green: mean − std > 0, red: mean + std < 0)",
                 fontsize=9)
    return _save(fig, path)


def plot_hierarchy_tree(codes: Sequence[str], class_names: Sequence[str], path: str | Path) -> Path:
    """Class2Str's latent hierarchy: the binary tree of the classes' codes (``method=class2str``).

    Root on the left, one column per bit; a node is a prefix that some class's code starts with, its
    branches are labelled by the next bit, and each leaf (a full code) names its classes. Classes
    that share a code (a collision) are named together on one leaf, in red.
    """
    if len(codes) != len(class_names):
        raise ValueError(f"{len(codes)} codes for {len(class_names)} class names")
    length = max((len(code) for code in codes), default=0)
    by_code: dict[str, list[str]] = {}
    for code, name in zip(codes, class_names):
        by_code.setdefault(code, []).append(str(name))
    leaves = sorted(by_code)
    row = {code: k for k, code in enumerate(leaves)}
    # Every prefix's rows (its leaves), hence its y: the middle of its first and last leaf.
    span: dict[str, list[int]] = {}
    for code in leaves:
        for depth in range(len(code) + 1):
            span.setdefault(code[:depth], []).append(row[code])
    y = {prefix: (min(rows) + max(rows)) / 2 for prefix, rows in span.items()}
    many = len(leaves) > 30  # then the branches are not labelled: 0 is always the upper branch, 1 the lower
    font = 7.5 if many else 9
    fig = _figure(1.1 * length + 3.4, max(2.5, (0.19 if many else 0.3) * len(leaves) + 1.0))
    ax = fig.subplots()
    for prefix in sorted(span, key=len):
        depth = len(prefix)
        children = [prefix + bit for bit in "01" if prefix + bit in span]
        if not children:
            continue
        ys = [y[child] for child in children]
        ax.plot([depth, depth], [min(ys + [y[prefix]]), max(ys + [y[prefix]])], color="0.35", lw=1)
        for child, bit in zip(children, (child[-1] for child in children)):
            ax.plot([depth, depth + 1], [y[child], y[child]], color="0.35", lw=1)
            if not many:
                ax.text(depth + 0.5, y[child], bit, fontsize=font - 1, color="tab:blue", ha="center", va="bottom")
        ax.plot(depth, y[prefix], "o", color="0.2", ms=2.5)
    for code in leaves:
        names = by_code[code]
        collided = len(names) > 1
        ax.text(len(code) + 0.12, row[code], f"{code}  {', '.join(names)}", fontsize=font, va="center",
                color="tab:red" if collided else "black", fontweight="bold" if collided else "normal")
    ax.set_xlim(-0.2, length + 2.4)
    ax.set_ylim(len(leaves) - 0.5, -0.7)
    ax.set_xticks([k + 0.5 for k in range(length)], [f"bit {k + 1}" for k in range(length)], fontsize=8)
    ax.tick_params(axis="x", length=0)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    shared = sum(len(names) for names in by_code.values() if len(names) > 1)
    ax.set_title(f"Class2Str latent hierarchy: {len(codes)} classes, {length}-bit codes"
                 + (f"; {shared} classes share a code (red)" if shared else "; all codes distinct")
                 + ("\n(upper branch: bit 0, lower branch: bit 1)" if many else ""), fontsize=10)
    return _save(fig, path)


def plot_payoff(sdnn: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                reweight: Sequence[tuple[str, Sequence[float], Sequence[float]]], path: str | Path) -> Path:
    """Predicting the payoff (``python -m sdnn.study payoff``): per cell, the held-out prediction (its 80% interval
    as a horizontal bar) against the measured Δ (mean ± seed std, vertical), one panel per method; on the
    diagonal the prediction is exact, in the shaded quadrants its sign is wrong."""
    fig = _figure(11.0, 5.2)
    axes = fig.subplots(1, 2)
    for ax, (title, points) in zip(axes, (("SDNN (k-means, k = 2) vs baseline", sdnn),
                                          ("reweight vs baseline", reweight))):
        every = [v for _, (low, _, high), (mean, std) in points for v in (low, high, mean - std, mean + std)]
        lo, hi = min(every + [-1.0]) - 0.5, max(every + [1.0]) + 0.5
        ax.fill_between([lo, 0], 0, hi, color="tab:red", alpha=0.06)
        ax.fill_between([0, hi], lo, 0, color="tab:red", alpha=0.06)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        for name, (low, mid, high), (mean, std) in points:
            ax.errorbar(mid, mean, xerr=[[mid - low], [high - mid]], yerr=std, fmt="o", capsize=2, ms=4,
                        color="tab:blue", ecolor="tab:blue", elinewidth=0.8, alpha=0.85)
            ax.annotate(name, (mid, mean), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("predicted Δ test accuracy (points; 80% interval), cell held out", fontsize=8)
        ax.set_ylabel("measured Δ test accuracy (points; mean ± seed std)", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle("sdnn.advise on the regime map, leave one study out (shaded: the sign is wrong)", fontsize=9)
    return _save(fig, path)
