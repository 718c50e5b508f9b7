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


def test_config_validation_runs_before_torch_is_imported():
    """A wrong value is reported in about a second: sdnn.validate and sdnn.choices import no torch."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; from sdnn.validate import validate_config; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_choices_list_every_registered_option():
    from sdnn.choices import BACKBONE_NAMES, IMAGE_BACKBONES
    from sdnn.models import BACKBONES

    assert set(BACKBONE_NAMES) == set(BACKBONES) and set(IMAGE_BACKBONES) <= set(BACKBONES)
