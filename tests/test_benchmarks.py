"""The benchmark command runs (tiny sizes) and writes its Markdown table; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, RUN_GUARD


@pytest.mark.slow  # every section at tiny sizes, about 30 s; test_smoke_runs_leave_the_docs_alone runs the command
def test_benchmark_command_runs_and_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=RUN_GUARD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for title in ("θ during training", "θ for one batch", "Subclass CE", "Training throughput", "Partitioners",
                  "Image input pipeline", "YouTube-8M", "Bad input", "sdnn.advise", "sdnn.advise's indicators"):
        assert f"## {title}" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.endswith("× |")]
    assert len(rows) == 2 + 3 + 2 + 1 + 5 + 1 + 6 + 5 + 3 + 2
    assert "python -m benchmarks --smoke" in text and "machine:" in text


def test_smoke_runs_leave_the_docs_alone(tmp_path, monkeypatch):
    """--smoke and --quick numbers are not the documented ones: without --out they write no file."""
    import benchmarks.__main__ as bench

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(bench.SECTIONS, "fake", ("Fake", lambda scale: [("case", "base", 2.0, "ours", 1.0)]))
    assert bench.main(["--smoke", "--only", "fake"]) == 0
    assert not (tmp_path / "docs").exists()
    assert bench.main(["--smoke", "--only", "fake", "--out", "x.md"]) == 0 and (tmp_path / "x.md").is_file()



def test_only_replaces_its_own_sections_and_keeps_the_rest():
    from benchmarks.__main__ import merge, render

    rows = [("case", "base", 2.0, "ours", 1.0)]
    text = render({"a": ("Section A", rows), "b": ("Section B", rows)}, "python -m benchmarks") + "\nBy hand.\n"
    merged = merge(text, {"b": ("Section B", [("new case", "base", 3.0, "ours", 1.0)]),
                          "c": ("Section C", rows)}, "python -m benchmarks --only b c")
    assert "By hand." in merged and merged.count("## Section B") == 1 and "new case" in merged
    assert "| case | base | 2.0000 | ours | 1.0000 | 2.00× |" in merged.split("## Section B")[0]  # A kept
    assert merged.index("## Section A") < merged.index("## Section B") < merged.index("## Section C")
    assert "--only b c" in merged
