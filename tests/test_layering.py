"""Floor-1 modules (pure math, data, models) import neither Lightning nor Hydra."""

from __future__ import annotations

import subprocess
import sys

PURE = ["sdnn.neglect", "sdnn.losses", "sdnn.partition", "sdnn.augment", "sdnn.subclass", "sdnn.repartition",
        "sdnn.models", "sdnn.data", "sdnn.validate", "sdnn.cache", "sdnn.results", "sdnn.metrics"]


def test_pure_modules_do_not_import_lightning_or_hydra():
    code = ("import sys\n"
            f"for name in {PURE!r}: __import__(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pytorch_lightning', 'lightning', 'lightning_fabric', 'hydra'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"floor-1 modules pulled in: {out}"
