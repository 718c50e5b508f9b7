"""The benchmark command runs (tiny sizes) and writes its Markdown table; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_benchmark_command_runs_and_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for title in ("θ during training", "θ for one batch", "Subclass CE", "Training throughput", "Partitioners",
                  "Image input pipeline"):
        assert f"## {title}" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.endswith("× |")]
    assert len(rows) == 3 + 3 + 2 + 1 + 5 + 1
    assert "python -m benchmarks --smoke" in text and "machine:" in text

    hand_written = text + "\nA note kept by hand.\n"
    out.write_text(hand_written)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--only", "subclass_loss", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = out.read_text()
    assert "A note kept by hand." in merged and merged.count("## Subclass CE") == 1
    assert merged.count("## Partitioners") == 1 and "--only subclass_loss" in merged
