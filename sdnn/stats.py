"""Statistics of runs and sweeps, in numpy: ranks, Spearman's ρ, mean ± std, the order of swept values; a signed
number as text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks), over the pairs where neither is NaN.

    NaN when fewer than 3 valid pairs remain or either side has no spread.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equal lengths, got {a.shape} and {b.shape}")
    valid = ~(np.isnan(a) | np.isnan(b))
    if valid.sum() < 3:
        return float("nan")
    ra = _average_ranks(a[valid])
    rb = _average_ranks(b[valid])
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denominator == 0.0:
        return float("nan")
    return float(np.clip((ra @ rb) / denominator, -1.0, 1.0))


def sort_key(value: Any) -> tuple:
    """Orders mixed sweep values: None first, then numbers, then everything else as text."""
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value)
    return (2, str(value))


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0.0 for one value) of the finite values; NaN, NaN for none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def seed_mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof 1) of per-seed values, as ``sdnn.report`` states them: std None for one
    seed (no spread to estimate); NaN, None for none."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def signed(value: float, places: int = 2) -> str:
    """``value`` with its sign at ``places`` decimals; one that rounds to zero is ``+0.00``, never ``-0.00``."""
    text = f"{value:+.{places}f}"
    return "+" + text[1:] if text.startswith("-") and float(text) == 0 else text


def signed_interval(values: Sequence[float]) -> str:
    """An interval (low, middle, high) as ``middle [low, high]``, each ``signed``."""
    low, mid, high = values
    return f"{signed(mid)} [{signed(low)}, {signed(high)}]"
