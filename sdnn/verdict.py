"""From label-free indicators to a verdict (issue 25): the expected Δ test accuracy of SDNN and of the
reweight control against the baseline, with an interval, and a recommendation.

The map from the probe (``sdnn.indicators.ridge_probe``: subclass heads against class heads on the frozen
phase-1 features) to the Δ of a full run is a straight line fitted on the cells of the regime map
(docs/reproduction.md, "Predicting the payoff"); ``conf/advise/calibration.yaml`` holds it, with the cells it
was fitted on. The interval adds the cells' scatter around the line and the probe's own standard error. Pure:
no torch, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sdnn.errors import ConfigError
from sdnn.stats import signed, signed_interval

CALIBRATION = Path(__file__).resolve().parents[1] / "conf" / "advise" / "calibration.yaml"
Z80 = 1.2816  # two-sided 80% normal interval
METHODS = ("sdnn", "reweight")


@dataclass(frozen=True)
class Line:
    """Δ test (points) ≈ ``intercept`` + ``slope`` × probe Δ (points); ``residual_sd``: the cells' scatter around it."""

    intercept: float
    slope: float
    residual_sd: float
    cells: int

    def interval(self, probe: float, probe_se: float) -> tuple[float, float, float]:
        """(low, mid, high): the 80% interval of a new cell's Δ given its probe and the probe's standard error."""
        mid = self.intercept + self.slope * probe
        spread = Z80 * math.sqrt(self.residual_sd ** 2 + (self.slope * probe_se) ** 2)
        return mid - spread, mid, mid + spread

    @classmethod
    def fit(cls, probes: Sequence[float], deltas: Sequence[float]) -> Line:
        """Least squares over cells (each a mean over its seeds); residual sd with n − 2 degrees of freedom."""
        x, y = np.asarray(probes, dtype=float), np.asarray(deltas, dtype=float)
        if len(x) < 3:
            raise ValueError(f"a line needs at least 3 cells, got {len(x)}")
        spread = ((x - x.mean()) ** 2).sum()
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / spread) if spread > 0 else 0.0  # one x: a level
        intercept = float(y.mean() - slope * x.mean())
        residual = y - (intercept + slope * x)
        return cls(float(intercept), float(slope), float(np.sqrt((residual ** 2).sum() / (len(x) - 2))), len(x))


@dataclass(frozen=True)
class Calibration:
    """One line per method (``sdnn``, ``reweight``) and where it came from."""

    lines: dict[str, Line]
    source: str = ""
    cells: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "cells": list(self.cells),
                "lines": {m: {"intercept": round(v.intercept, 6), "slope": round(v.slope, 6),
                              "residual_sd": round(v.residual_sd, 6), "cells": v.cells} for m, v in self.lines.items()}}

    @classmethod
    def from_json(cls, payload: Any, where: str = "calibration") -> Calibration:
        try:
            lines = {m: Line(float(v["intercept"]), float(v["slope"]), float(v["residual_sd"]), int(v["cells"]))
                     for m, v in payload["lines"].items()}
            if set(lines) != set(METHODS) or not all(map(math.isfinite, (x for v in lines.values()
                                                                           for x in (v.intercept, v.slope,
                                                                                     v.residual_sd)))):
                raise ValueError(f"needs finite lines for {', '.join(METHODS)}")
            return cls(lines, str(payload.get("source", "")), tuple(str(c) for c in payload.get("cells", [])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{where} is not a calibration ({exc}); restore it from the repository "
                              "(git checkout conf/advise/calibration.yaml)") from None


def load_calibration(path: Path = CALIBRATION) -> Calibration:
    """``conf/advise/calibration.yaml`` (read as data: ``yaml.safe_load``)."""
    try:
        payload = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the advise calibration ({type(exc).__name__}); restore it from "
                          "the repository (git checkout conf/advise/calibration.yaml)") from None
    return Calibration.from_json(payload, str(path))


@dataclass
class Verdict:
    """The expected Δ (points, against the baseline) of each method as (low, mid, high), the recommendation and
    why, in words."""

    expected: dict[str, tuple[float, float, float]]
    recommendation: str
    why: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"recommendation": self.recommendation, "why": self.why,
                "expected_delta": {m: [round(v, 3) for v in self.expected[m]] for m in self.expected},
                "notes": list(self.notes)}


def judge(calibration: Calibration, probe: float, probe_se: float, reweight: float | None,
          reweight_se: float | None) -> Verdict:
    """A method is recommended over the baseline only when its whole 80% interval is above 0; between two such,
    the one with the higher expected Δ. ``reweight`` None (too many classes to probe): its line at probe 0."""
    expected = {"sdnn": calibration.lines["sdnn"].interval(probe, probe_se),
                "reweight": calibration.lines["reweight"].interval(reweight or 0.0, reweight_se or 0.0)}
    notes = [] if reweight is not None else ["reweight was not probed (too many selected classes): its interval is "
                                             "the map's spread around a probe of 0"]
    paying = [m for m in METHODS if expected[m][0] > 0]
    if not paying:
        best = max(METHODS, key=lambda m: expected[m][1])
        return Verdict(expected, "baseline", f"neither interval lies above 0 (the best, {best}, expects "
                                             f"{signed_interval(expected[best])} points)", notes)
    choice = max(paying, key=lambda m: expected[m][1])
    low, mid, high = expected[choice]
    return Verdict(expected, choice, f"{choice} expects {signed(mid)} points, 80% interval "
                                     f"[{signed(low)}, {signed(high)}], above 0", notes)


def leave_one_out(probes: dict[str, float], deltas: dict[str, float]) -> dict[str, Line]:
    """For each cell, the line fitted on every other cell (its own runs never inform its prediction)."""
    names = sorted(probes)
    return {name: Line.fit([probes[n] for n in names if n != name], [deltas[n] for n in names if n != name])
            for name in names}
