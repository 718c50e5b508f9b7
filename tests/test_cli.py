"""The CLI end to end: default job (its output to a pipe, run.log, the README's sample of it), phase-1 reuse,
baseline, npz data, --help."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from sdnn.results import REQUIRED_KEYS
from tests.conftest import (FAST, FOREIGN_LINE, QUICK_GUARD, ROOT, TWO_CORES, compose_config, loop_ratios,
                            read_results, run_cli, write_npz)
from tests.machine import fingerprint_of_runs


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python run.py` with no overrides except where to write (run folder, cache)."""
    base = tmp_path_factory.mktemp("default")
    args = [f"hydra.run.dir={base / 'run'}", f"phase1.cache_dir={base / 'cache'}"]
    return base, run_cli(args)


def test_default_run_writes_every_results_key(default_run):
    base, proc = default_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(base / "run")
    assert set(REQUIRED_KEYS) <= set(results)
    assert results["method"] == "sdnn" and results["dataset"] == "digits" and results["model"] == "cnn"
    assert len(results["theta"]) == 10 and all(t >= 1 for t in results["theta"])
    # The selected classes are the two largest θ of the last window.
    ranked = sorted(range(10), key=lambda i: -results["theta"][i])
    assert results["selected_classes"] == sorted(ranked[:2])
    assert len(results["subclass_to_class"]) == 12
    assert 0.8 < results["test"]["acc"] <= 1.0 and len(results["test"]["per_class_acc"]) == 10
    assert results["config"]["subclass"]["per_class"] == 2
    # The readable summary lists every class and the test accuracy.
    assert "test accuracy (phase 2):" in proc.stdout and "most neglected" in proc.stdout


EPOCH_LINE = re.compile(r"^(phase 1: neglect scores|phase 2: subclass training) · epoch (\d+)/(\d+) · loss \S+ · "
                        r"[\d,]+ samples/s · ETA \d+:\d\d:\d\d$")


def test_output_to_a_pipe_is_a_line_per_epoch_and_run_log_is_the_runs_record(default_run):
    base, proc = default_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = [(m[1], int(m[2]), int(m[3])) for m in map(EPOCH_LINE.match, proc.stdout.splitlines()) if m]
    assert epochs == ([("phase 1: neglect scores", e, 5) for e in range(1, 6)]
                      + [("phase 2: subclass training", e, 30) for e in range(1, 31)])
    assert "━" not in proc.stdout + proc.stderr and "v_num" not in proc.stdout + proc.stderr  # no bar redrawn
    assert "weights_only" not in proc.stdout + proc.stderr
    log = (base / "run" / "run.log").read_text()
    record = [line for line in proc.stdout.splitlines() if line.startswith(("phase", "partition", "results:"))]
    assert record and all(line in log for line in record)  # every progress line, cache use, where results are
    summary = proc.stdout[proc.stdout.index("SDNN run:"):proc.stdout.index("\nresults: ")]
    assert summary in log  # the summary table, whole


SUMMARY_MASKS = [(r"cached in \S+/([0-9a-f]{16})$", r"cached in <cache>/\1"),  # the folder, not the cache key
                 (r"^results: \S+$", "results: <run folder>/results.json"),
                 (r"train time \(phase 2\) [\d.]+ s", "train time (phase 2) <seconds> s")]


def _summary(text: str) -> str:
    """From "SDNN run:" to the "results:" line, with the paths and the training time masked."""
    lines = text[text.index("SDNN run:"):].splitlines()
    lines = lines[:next(i for i, line in enumerate(lines) if line.startswith("results: ")) + 1]
    summary = "\n".join(lines)
    for pattern, replacement in SUMMARY_MASKS:
        summary = re.sub(pattern, replacement, summary, flags=re.M)
    return summary


NUMBERS = [(r"[-+]?\d+\.\d+", "<x>"), (r"\b\d+/\d+\b", ""), (r"(?<=\s)yes(?=\s)", ""),
           (r"(most neglected[^:]*:) .*$", r"\1 <classes>"), (r"(split indicators[^:]*:) [^;]*;", r"\1 <classes>;"),
           (r"[ \t]+", " ")]  # which, how many, how much
PRINTED_ON = re.compile(r"<!-- printed on: (.+?) -->")


def readme_sample(after: str) -> tuple[str, str]:
    """The README's first code block after the text ``after``, and the machine it was printed on (the
    ``<!-- printed on: ... -->`` line after it: tests/machine.py)."""
    _, block, tail = (ROOT / "README.md").read_text().split(after, 1)[1].split("```", 2)
    sample = block.partition("\n")[2]  # after the opening fence's line
    machine = PRINTED_ON.search(tail.split("```", 1)[0])  # before the next code block
    assert machine, f"the README's sample after {after!r} says which machine printed it: {PRINTED_ON.pattern}"
    return sample, machine.group(1)


def same_output(sample: str, printed: str, machine: str, numbers: list[tuple[str, str]]) -> None:
    """``printed`` is ``sample``: whole on the machine that printed the sample; elsewhere every line, column,
    class and key, with the numbers that hang on the CPU's float kernels masked by ``numbers`` (tests/machine.py:
    the rounding of float sums depends on the CPU, torch's kernels for it and the number of threads)."""
    if fingerprint_of_runs() == machine:
        assert printed == sample
    for pattern, replacement in numbers:
        sample, printed = (re.sub(pattern, replacement, text, flags=re.M) for text in (sample, printed))
    assert printed == sample


def test_the_readme_shows_the_default_runs_summary_as_it_prints(default_run):
    """The Quickstart's sample is what `python run.py` prints (the run is deterministic on one machine): after a
    change to the default job or the summary, paste the new one there with the line of
    `python -m tests.machine` under it. Its lines, columns, classes and cache key are compared everywhere; its
    numbers (θ, the selection, subclass sizes, accuracies, ρ) on the machine that printed it (the run is a
    subprocess with this process's environment, so the same kernels and number of threads)."""
    _, proc = default_run
    sample, machine = readme_sample("and ends with this summary")
    same_output(_summary(sample), _summary(proc.stdout), machine, NUMBERS)


def test_the_readme_shows_what_predict_prints_for_the_default_run(default_run, tmp_path):
    """"Use a trained model": `--split test` on the default run, and the first rows of the CSV for digits' raw
    images, as the README shows them (numbers compared as for the summary)."""
    from sklearn.datasets import load_digits

    base, first = default_run
    assert first.returncode == 0, first.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "sdnn.predict", str(base / "run"), "--split", "test"], cwd=ROOT,
                          capture_output=True, text=True, timeout=QUICK_GUARD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sample, machine = readme_sample("evaluates its model\n```\n")
    same_output(sample.strip(), proc.stdout.strip(), machine, [(r"\d+\.\d+", "<x>")])

    digits = load_digits()
    np.savez(tmp_path / "digits_raw.npz", x=digits.images[:100], y=digits.target[:100])
    csv = tmp_path / "predictions.csv"
    proc = subprocess.run([sys.executable, "-m", "sdnn.predict", str(base / "run"), "--input",
                           str(tmp_path / "digits_raw.npz"), "--labels", "y", "--output", str(csv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=QUICK_GUARD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sample, machine = readme_sample("head -3 predictions.csv\n```\n")
    head = "\n".join(csv.read_text().splitlines()[:3])
    same_output(sample.strip(), head, machine, [(r"(?<=,)[\d.e-]+$", "<score>")])


def test_help_opens_with_the_projects_own_header():
    proc = run_cli(["--help"], timeout=QUICK_GUARD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("SDNN: subclass deep neural networks (Gkalelis & Mezaris, MMM 2020)")
    assert "powered by Hydra" not in proc.stdout
    assert "dataset: cifar10, cifar100, custom, digits, image_folder, npz, svhn, yt8m" in proc.stdout
    sweeps = ", ".join(sorted(path.stem for path in (ROOT / "conf" / "sweep").glob("*.yaml")))
    assert f"\nsweep: {sweeps}\n" in proc.stdout and "sweep is chosen only with -m" in proc.stdout
    examples = re.findall(r"^  python run\.py(.*?)\s+#", proc.stdout, flags=re.M)
    assert len(examples) == 3
    for overrides in examples[:2]:  # they compose (the third is a sweep of them)
        compose_config(overrides.split())


def test_second_run_reuses_phase1_when_only_k_changes(default_run):
    base, first = default_run
    assert first.returncode == 0
    proc = run_cli([f"hydra.run.dir={base / 'run_k3'}", f"phase1.cache_dir={base / 'cache'}",
                    "subclass.num_classes_to_repartition=3", "trainer.max_epochs=2"])  # phase 2 is not the subject
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipping phase-1 training" in proc.stdout
    assert "phase 1: neglect scores" not in proc.stdout
    a, b = read_results(base / "run"), read_results(base / "run_k3")
    assert a["theta"] == b["theta"]
    assert b["phase1"]["cached"] is True and len(b["selected_classes"]) == 3
    assert set(a["selected_classes"]) < set(b["selected_classes"])


def test_baseline_and_npz_from_the_cli(tmp_path):
    proc = run_cli([*FAST, "method=baseline", f"hydra.run.dir={tmp_path / 'b'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path / "b")
    assert results["method"] == "baseline" and results["selected_classes"] == []
    assert results["subclass_to_class"] == list(range(10))

    path = write_npz(tmp_path / "data.npz", "nhwc")
    proc = run_cli([*FAST, "dataset=npz", f"dataset.path={path}", "subclass.num_classes_to_repartition=1",
                    f"hydra.run.dir={tmp_path / 'n'}", f"phase1.cache_dir={tmp_path / 'c'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path / "n")
    assert results["dataset"] == "npz" and len(results["theta"]) == 3 and len(results["subclass_to_class"]) == 4


@TWO_CORES
def test_ddp_cpu_theta_is_the_mean_of_per_rank_batch_ratios_and_ranks_agree(tmp_path):
    """Lightning DDP (gloo), both phases. SPEC §2: θ equals one process averaging the ratios of
    every rank's batches; both ranks train with the same subclass map; rank 0 alone writes. Warnings on: none of
    Lightning's set-up lines, and a warning as one line without a file path, on the console and in run.log."""
    dump = tmp_path / "dump"
    proc = run_cli([*FAST, "model=mlp", "trainer=ddp_cpu", "trainer.devices=2", "logger=csv",
                    f"+trainer.callbacks=[{{_target_: tests.ddp_probe.StepDump, folder: '{dump}'}}]",
                    f"hydra.run.dir={tmp_path / 'r'}", f"phase1.cache_dir={tmp_path / 'c'}"],
                   env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("results:") == 1
    for text in (proc.stdout + proc.stderr, (tmp_path / "r" / "run.log").read_text()):
        assert not FOREIGN_LINE.search(text), FOREIGN_LINE.search(text)
    results = read_results(tmp_path / "r")
    assert results["test"]["acc"] > 0
    steps = sorted(dump.glob("phase1_rank*_step*.pt"))
    assert {p.name.split("_")[1] for p in steps} == {"rank0", "rank1"}
    batches = [torch.load(p) for p in steps]
    ratios = torch.tensor(np.stack([loop_ratios(b["features"], b["logits"], b["targets"], 10) for b in batches]))
    expected = torch.nanmean(ratios, 0)  # steps where a class has no positive are left out
    theta = torch.tensor([float("nan") if v is None else v for v in results["theta"]], dtype=torch.float64)
    assert len(results["theta_history"]) == 1  # one window (one epoch) over both ranks' steps
    torch.testing.assert_close(theta, expected, rtol=1e-4, atol=1e-5, equal_nan=True)
    maps = [torch.load(dump / f"phase2_rank{r}_map.pt") for r in (0, 1)]
    assert torch.equal(maps[0], maps[1]) and maps[0].tolist() == results["subclass_to_class"]
