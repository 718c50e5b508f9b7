"""Summarise a Hydra multirun: ``python -m sdnn.report <multirun dir> [--by KEY ...] [--out DIR]``.

Every run writes ``results.json`` (SPEC §7) into its own folder; this module collects them
(recursively), groups the runs by method and the swept settings, and reports per group the
mean ± sample std over seeds of the test metrics, the paired difference to the baseline with the
same seed (the comparison of the paper's Tables 1 and 2; a baseline trained with another loss,
e.g. ``loss=focal``, is compared with the plain baseline, ``loss=bce``), and the training time. It writes
``report.md``, ``report.csv`` and ``report.png``: the main metric against the swept setting when a numeric
one was swept (:func:`sdnn.plots.plot_sweep`), else one bar per row of the table with each seed's value on it
(:func:`bar_values`, :func:`sdnn.plots.plot_setting_bars`). Nothing here imports torch, Lightning or Hydra.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdnn.plots import plot_setting_bars, plot_sweep
from sdnn.results import Results
from sdnn.stats import seed_mean_std, signed, sort_key

import numpy as np

METRICS = ("acc", "hit_at_1", "perr", "map", "gap")  # multiclass: acc; multilabel (YT8M): the other four
METRIC_NAMES = {"acc": "accuracy", "hit_at_1": "Hit@1", "perr": "PERR", "map": "mAP", "gap": "GAP@20"}
# Swept settings: row key -> path in the resolved config; the SDNN-only ones are None for the baseline.
SHARED_SETTINGS = {"loss": ("loss", "name"), "max_epochs": ("trainer", "max_epochs")}
SDNN_SETTINGS = {
    "num_classes_to_repartition": ("subclass", "num_classes_to_repartition"),
    "partitioner": ("partitioner", "name"),
    "augmenter": ("augmenter", "name"),
    "sibling_weight": ("subclass", "sibling_weight"),
    "per_class": ("subclass", "per_class"),
    "phase1_epochs": ("phase1", "epochs"),
}
SWEEP_KEYS = ("dataset", "model", *SHARED_SETTINGS, *SDNN_SETTINGS)
PAIR_KEYS = ("dataset", "model", *SHARED_SETTINGS)  # a baseline is paired on these and the seed
PLAIN_LOSS = "bce"  # the plain baseline's loss (eq. 3): a baseline with another loss is compared with it
PREFERRED_X = "num_classes_to_repartition"
VAL_METRIC = "val_acc"  # results.json val.acc: the accuracy on the validation split, where the run has one
BASELINE = "baseline"


def _config_value(config: dict, path: tuple[str, ...]) -> Any:
    value: Any = config
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _natural_key(path: Path) -> list:
    """Sort ``.../2/results.json`` before ``.../10/results.json``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def _row(payload: dict, run_dir: str) -> dict[str, Any]:
    results = Results.from_json(payload)
    config, test, method = results.config, results.test, results.method
    row: dict[str, Any] = {"run_dir": run_dir, "method": method, "dataset": results.dataset,
                           "model": results.model, "seed": results.seed}
    row["acc"] = test.get("acc")
    row["val_acc"] = results.val.get("acc") if isinstance(results.val, dict) else None
    for metric in METRICS[1:]:
        if metric in test:
            row[metric] = test[metric]
    row["train_seconds"] = results.train_seconds
    row["selected_classes"] = results.selected_classes
    for key, path in SHARED_SETTINGS.items():
        row[key] = _config_value(config, path)
    for key, path in SDNN_SETTINGS.items():
        row[key] = None if method == BASELINE else _config_value(config, path)
    row["phase1_cached"] = results.phase1.get("cached") if isinstance(results.phase1, dict) else None
    return row


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One flat row per ``results.json`` under ``root`` (recursive, natural order).

    Unreadable or incomplete files (a run that crashed or is still writing) are skipped with a
    warning on stderr. Settings that do not apply to the baseline (the number of repartitioned
    classes, partitioner, augmenter, sibling weight, subclasses per class, phase-1 epochs) are None there.
    """
    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"{root} is not a folder: give the Hydra multirun folder (multirun/<date>/<time>)")
    paths = sorted(root.rglob("results.json"), key=_natural_key)
    if not paths:
        raise SystemExit(f"no results.json under {root}: is this a Hydra multirun folder? runs still going?")
    rows = []
    for path in paths:
        try:
            results = json.loads(path.read_text())
            rows.append(_row(results, path.parent.relative_to(root).as_posix()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"warning: skipping {path}: unreadable or incomplete ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
    if not rows:
        raise SystemExit(f"no readable results.json under {root} ({len(paths)} skipped): runs still going?")
    return rows


def swept_keys(rows: list[dict]) -> list[str]:
    """Settings that take more than one (non-None) value across the runs."""
    return [key for key in SWEEP_KEYS if len({_hashable(r.get(key)) for r in rows if r.get(key) is not None}) > 1]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _mean_by_seed(rows: list[dict], metric: str) -> dict[Any, float]:
    """Per seed, the metric (averaged over repeated runs of the same seed)."""
    by_seed: dict[Any, list[float]] = {}
    for row in rows:
        if row.get(metric) is not None:
            by_seed.setdefault(row["seed"], []).append(float(row[metric]))
    return {seed: float(np.mean(values)) for seed, values in by_seed.items()}


def primary_metric(rows: list[dict]) -> str:
    """``acc`` for multiclass runs, else the first multilabel metric present (Hit@1)."""
    return next((m for m in METRICS if any(r.get(m) is not None for r in rows)), "acc")


def summarize(rows: list[dict], by: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Group the runs by ``by`` (default: method + every swept setting) and summarise each group.

    Per group: n (distinct seeds; repeated runs of a seed are averaged first), runs, seeds,
    ``<metric>_mean/_std/_min/_max`` (std with ddof=1; None for one seed), train_seconds_mean, and
    ``delta_vs_baseline``: the mean over seeds of (metric − the baseline's metric with the same seed,
    dataset, model, loss and max_epochs; for a baseline of another loss, the plain baseline's, ``loss=bce``),
    None where no such baseline exists or for the plain baseline itself.
    """
    by = list(by) if by else ["method", *swept_keys(rows)]
    known = set().union(*(row.keys() for row in rows))
    unknown = [key for key in by if key not in known]
    if unknown:
        raise ValueError(f"unknown --by key(s) {unknown}; available: {sorted(known)}")
    metric = primary_metric(rows)
    baseline: dict[tuple, list[float]] = {}
    for row in rows:
        if row["method"] == BASELINE and row.get(metric) is not None:
            key = (*(_hashable(row.get(k)) for k in PAIR_KEYS), row["seed"])
            baseline.setdefault(key, []).append(float(row[metric]))

    groups = _groups(rows, by)
    summary = []
    for key, members in groups.items():
        entry: dict[str, Any] = dict(zip(by, key))
        seeds = sorted({row["seed"] for row in members}, key=sort_key)
        entry.update(n=len(seeds), runs=len(members), seeds=seeds)
        for name in METRICS:
            per_seed = list(_mean_by_seed(members, name).values())
            if not per_seed:
                continue
            entry[f"{name}_mean"] = float(np.mean(per_seed))
            entry[f"{name}_std"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None  # one seed: none
            entry[f"{name}_min"] = float(np.min(per_seed))
            entry[f"{name}_max"] = float(np.max(per_seed))
        seconds = [float(r["train_seconds"]) for r in members if r.get("train_seconds") is not None]
        entry["train_seconds_mean"] = float(np.mean(seconds)) if seconds else None
        entry["delta_vs_baseline"] = _delta(members, metric, baseline)
        summary.append(entry)
    return summary


def _groups(rows: list[dict], by: Sequence[str]) -> dict[tuple, list[dict]]:
    """The runs of each combination of the ``by`` values, in the table's order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(_hashable(row.get(k)) for k in by), []).append(row)
    return {key: groups[key] for key in sorted(groups, key=lambda values: tuple(sort_key(v) for v in values))}


def _is_plain_baseline(row: dict) -> bool:
    return row["method"] == BASELINE and row.get("loss") in (PLAIN_LOSS, None)


def _pair(row: dict) -> tuple:
    """The key of the baseline ``row`` is compared with: same settings and seed; the plain loss for a baseline."""
    values = {k: _hashable(row.get(k)) for k in PAIR_KEYS}
    if row["method"] == BASELINE:
        values["loss"] = PLAIN_LOSS
    return (*values.values(), row["seed"])


def _delta(members: list[dict], metric: str, baseline: dict[tuple, list[float]]) -> float | None:
    if all(_is_plain_baseline(row) for row in members):
        return None
    differences: dict[Any, list[float]] = {}
    for row in members:
        pair = baseline.get(_pair(row))
        if pair and row.get(metric) is not None:
            differences.setdefault(row["seed"], []).append(float(row[metric]) - float(np.mean(pair)))
    if not differences:
        return None
    return float(np.mean([np.mean(values) for values in differences.values()]))


def _group_keys(summary: list[dict]) -> list[str]:
    """The grouping keys: those before ``n`` in a summary entry."""
    keys = list(summary[0]) if summary else []
    return keys[:keys.index("n")] if "n" in keys else []


def _metrics_in(summary: list[dict]) -> list[str]:
    return [m for m in METRICS if any(f"{m}_mean" in entry for entry in summary)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _percent(value: float | None, with_sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return signed(100 * value) if with_sign else f"{100 * value:.2f}"


def format_markdown(summary: list[dict]) -> str:
    """The summary as a Markdown table; metrics in percent, "mean ± std" over seeds ("value (n=1, no std)"
    for a group of one seed, whose min–max is "-")."""
    keys = _group_keys(summary)
    metrics = _metrics_in(summary)
    main = metrics[0] if metrics else "acc"
    header = [*keys, "n", "seeds", *(f"{m} (%)" for m in metrics), f"{main} min–max (%)",
              "Δ vs baseline (pp)", "train (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for entry in summary:
        cells = [_cell(entry.get(k)) for k in keys]
        cells += [str(entry["n"]), _cell(entry["seeds"])]
        for m in metrics:
            mean = entry.get(f"{m}_mean")
            std = entry.get(f"{m}_std")
            cells.append("-" if mean is None else f"{_percent(mean)} ± {_percent(std)}" if std is not None
                         else f"{_percent(mean)} (n=1, no std)")
        low, high = entry.get(f"{main}_min"), entry.get(f"{main}_max")
        cells.append("-" if low is None or entry["n"] < 2 else f"{_percent(low)}–{_percent(high)}")
        cells.append(_percent(entry.get("delta_vs_baseline"), with_sign=True))
        seconds = entry.get("train_seconds_mean")
        cells.append("-" if seconds is None else f"{seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(summary: list[dict], path: str | Path) -> Path:
    """Write :func:`format_markdown` to ``path``."""
    path = Path(path)
    path.write_text(format_markdown(summary))
    return path


def write_csv(summary: list[dict], path: str | Path) -> Path:
    """One CSV row per group; metrics as fractions, seeds space-separated, None as empty."""
    path = Path(path)
    columns: list[str] = []
    for entry in summary:
        columns += [key for key in entry if key not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for entry in summary:
            writer.writerow({key: "" if entry.get(key) is None else _csv_value(entry[key]) for key in columns})
    return path


def _csv_value(value: Any) -> Any:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_key(summary: list[dict]) -> str | None:
    """The setting to put on the x axis: ``num_classes_to_repartition`` if it is a grouping key and
    varies, else the first numeric grouping key that varies; None if there is none."""
    candidates = [key for key in _group_keys(summary) if key != "method"]
    numeric = []
    for key in candidates:
        values = {entry.get(key) for entry in summary if entry.get(key) is not None}
        if len(values) > 1 and all(_is_number(v) for v in values):
            numeric.append(key)
    if PREFERRED_X in numeric:
        return PREFERRED_X
    return numeric[0] if numeric else None


def bar_values(rows: list[dict], summary: list[dict]) -> list[dict[str, Any]]:
    """What report.png's bar chart draws: one bar per ``summary`` entry (a row of report.md, same order).

    Each bar: ``label`` (the settings that differ between the bars, one per line: the method, then
    ``key=value``; a setting that does not apply, None, is left out), ``method``, ``settings`` (every
    grouping key's value) and ``values``: for the main test metric and, where any run has a validation
    split, ``val_acc``, ``{"per_seed": {seed: value}, "mean", "std", "n"}`` over the seeds of the group
    (repeated runs of a seed averaged first; std with ddof 1, None for one seed), as report.md states them.
    """
    keys = _group_keys(summary)
    groups = _groups(rows, keys)
    metric = (_metrics_in(summary) or ["acc"])[0]
    drawn = [metric] + ([VAL_METRIC] if any(row.get(VAL_METRIC) is not None for row in rows) else [])
    varying = [key for key in keys if len({_hashable(entry.get(key)) for entry in summary}) > 1]
    bars = []
    for entry in summary:
        members = groups[tuple(_hashable(entry.get(key)) for key in keys)]
        values = {}
        for name in drawn:
            by_seed = _mean_by_seed(members, name)
            per_seed = {seed: by_seed[seed] for seed in sorted(by_seed, key=sort_key)}
            mean, std = seed_mean_std(list(per_seed.values()))
            values[name] = {"per_seed": per_seed, "mean": mean, "std": std, "n": len(per_seed)}
        lines = [str(entry[key]) if key == "method" else f"{key}={_cell(entry[key])}"
                 for key in varying if entry.get(key) is not None]
        bars.append({"label": "\n".join(lines) or str(entry.get("method") or "all runs"),
                     "method": entry.get("method"), "settings": {key: entry.get(key) for key in keys},
                     "values": values})
    return bars


def write_plot(summary: list[dict], path: str | Path, rows: list[dict]) -> Path:
    """report.png: with a numeric setting swept (:func:`plot_key`), mean ± std of the main metric against
    it, one line per other grouping; otherwise (methods, losses, partitioners, or only seeds) one bar per
    row of the table, mean ± std over seeds with each seed's value on it (:func:`bar_values`), the
    validation accuracy in a second panel where the runs have it."""
    metric = (_metrics_in(summary) or ["acc"])[0]
    x_key = plot_key(summary)
    if x_key is None:
        keys = _group_keys(summary)
        shared = [f"{key}={_cell(summary[0].get(key))}" for key in keys
                  if summary[0].get(key) is not None and len({_hashable(e.get(key)) for e in summary}) == 1]
        panels = {metric: f"test {METRIC_NAMES.get(metric, metric)} (%)", VAL_METRIC: "validation accuracy (%)"}
        return plot_setting_bars(bar_values(rows, summary), path, panels, pair_seeds="seed" not in keys,
                                 note=", ".join(shared))
    others = [key for key in _group_keys(summary) if key != x_key]
    labelled = []
    for entry in summary:
        label = " ".join(str(entry[k]) if k == "method" else f"{k}={_cell(entry[k])}"
                         for k in others if k == "method" or entry.get(k) is not None)
        labelled.append({**entry, "group": label or "all"})
    return plot_sweep(labelled, x_key, path, y_key=f"{metric}_mean", err_key=f"{metric}_std", group_key="group",
                      y_label=f"test {METRIC_NAMES.get(metric, metric)} (%)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: collect, summarise, print the Markdown table and write the report files."""
    parser = argparse.ArgumentParser(
        prog="python -m sdnn.report",
        description="Summarise the runs of a Hydra multirun (every results.json under a folder): mean ± std "
                    "over seeds per method and swept setting, paired difference to the baseline.")
    parser.add_argument("root", type=Path, help="the multirun folder, e.g. multirun/2026-11-25/10-00-00")
    parser.add_argument("--by", nargs="+", metavar="KEY",
                        help="group by these keys (default: method + every setting that takes more than one "
                             f"value; settings: {', '.join(SWEEP_KEYS)})")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.csv, report.png "
                                                 "(default: the multirun folder)")
    args = parser.parse_args(argv)

    rows = collect_runs(args.root)
    try:
        summary = summarize(rows, args.by)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    out = args.out or args.root
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(rows)} run(s) under {args.root}\n")
    print(format_markdown(summary))
    written = [write_markdown(summary, out / "report.md"), write_csv(summary, out / "report.csv")]
    written.append(write_plot(summary, out / "report.png", rows))
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    main()
