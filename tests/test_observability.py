"""What a run shows: figures in the run folder (per method), θ vs error in results.json, phase-named progress
(rich bars on a terminal, one plain line per epoch elsewhere)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.stats import spearmanr

PNG = b"\x89PNG\r\n\x1a\n"


def test_sdnn_run_writes_the_paper_figures_and_spearman(run_pipeline, tmp_path):
    run_dir, cache = tmp_path / "a", tmp_path / "cache"
    results = run_pipeline(["model=mlp", "phase1.epochs=2", "observe.norms_every=3"], run_dir=run_dir, cache=cache)
    assert set(results["figures"]) == {"fig1_neglect_and_accuracy", "fig2_gradient_norms", "neglect_vs_error",
                                       "test_accuracy_per_class"}
    for name in results["figures"].values():
        assert (run_dir / name).read_bytes()[:8] == PNG
    phase1_acc = results["epoch_test_acc"]["phase1"]
    assert [a["epoch"] for a in phase1_acc] == [0, 1] and len(results["epoch_test_acc"]["phase2"]) == 2
    # θ against the phase-1 network's final per-class test error, recomputed here with scipy.
    error = 1 - np.asarray(phase1_acc[-1]["per_class_acc"])
    expected = spearmanr(np.asarray(results["theta"], dtype=float), error).statistic
    assert results["neglect_vs_error"]["spearman"] == pytest.approx(expected, abs=1e-9)
    norms = np.load(run_dir / "gradient_norms.npz")
    assert list(norms["steps"][:3]) == [0, 3, 6] and norms["delta"].shape[1] == 10

    reused = run_pipeline(["model=mlp", "phase1.epochs=2", "observe.norms_every=3",
                           "subclass.num_classes_to_repartition=3"], run_dir=tmp_path / "b", cache=cache)
    assert reused["phase1"]["cached"] and set(reused["figures"]) == set(results["figures"])
    assert np.array_equal(np.load(tmp_path / "b" / "gradient_norms.npz")["delta"], norms["delta"])


def test_observation_can_be_turned_off(run_pipeline, tmp_path):
    results = run_pipeline(["model=mlp", "observe.figures=false", "observe.norms_every=0",
                            "observe.per_class_test_acc=false"], run_dir=tmp_path / "r")
    assert "figures" not in results and not list((tmp_path / "r").glob("*.png"))
    assert results["epoch_test_acc"] == {"phase1": [], "phase2": []}


def test_baseline_and_fixed_class_runs_write_the_figures_that_apply(run_pipeline, tmp_path):
    """Without phase 1 there is no θ to draw; the per-class test accuracy after each epoch is drawn for
    every method (reweight and class2str: tests/test_regimes.py, tests/test_class2str.py)."""
    for overrides, phases in ((["method=baseline"], {"baseline"}), (["subclass.classes=[3,5]"], {"phase2"})):
        run_dir = tmp_path / overrides[0].split("=")[0]
        results = run_pipeline(["model=mlp", *overrides], run_dir=run_dir)
        assert results["figures"] == {"test_accuracy_per_class": "test_accuracy_per_class.png"}, overrides
        assert (run_dir / "test_accuracy_per_class.png").read_bytes()[:8] == PNG
        assert {k for k, v in results["epoch_test_acc"].items() if v} == phases
        assert not (run_dir / "fig1_neglect_and_accuracy.png").exists()


def test_progress_bars_are_named_by_phase_on_a_terminal(run_pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sdnn.lit.progress.terminal", lambda *a: True)
    monkeypatch.setenv("COLUMNS", "200")  # rich sizes the bar to the terminal: a wide one shows every column
    run_pipeline(["model=mlp", "trainer.enable_progress_bar=true", "trainer.max_epochs=1"], run_dir=tmp_path / "p")
    out = capsys.readouterr()
    text = out.out + out.err
    for name in ("phase 1: neglect scores · epoch 1/1", "phase 2: subclass training · epoch 1/1",
                 "phase 1: neglect scores · testing"):
        assert name in text, text[-2000:]
    assert "samples/s" in text and "v_num" not in text
    assert "· loss" not in text  # the plain per-epoch lines are for files and pipes


def test_plain_progress_lines():
    from sdnn.runlog import PlainProgress

    lines, what = [], "partition: reading training videos"
    progress = PlainProgress(lines.append, what, total=1000, unit="videos")
    for _ in range(40):
        progress.advance(25)
    progress.finish()
    assert [line[len(what) + 2:].split(" ")[0] for line in lines[:-1]] == [f"{p}%" for p in range(10, 100, 10)]
    assert "(500/1,000 videos, " in lines[4] and "videos/s, ETA " in lines[4]
    assert lines[-1].startswith("partition: reading training videos: done, 1,000 videos in ")


def test_the_summary_says_which_network_each_column_is_of():
    """θ is phase 1's, the accuracy the final network's (phase 2, the baseline, …); an undefined ρ is said."""
    from sdnn.results import Results, format_summary

    common = dict(dataset="toy", model="mlp", seed=0, val=None, train_seconds=1.0, epoch_test_acc={},
                  class_names=["a", "b", "c"], config={}, data_skipped={"count": 0, "items": []},
                  test={"acc": 0.5, "per_class_acc": [1.0, 0.5, None]})
    sdnn = format_summary(Results(method="sdnn", subclass_to_class=[0, 0, 1, 2], selected_classes=[0],
                                  theta=[2.0, 1.5, None], phase1={"origin": "trained"}, subclass_sizes={"0": [3, 4]},
                                  neglect_vs_error={"spearman": None}, **common)).splitlines()
    assert re.split(r"\s{2,}", sdnn[2].strip()) == ["class", "θ after phase 1", "selected", "subclass sizes",
                                                   "test acc (phase 2)"]
    assert sdnn[3].split() == ["a", "2.000", "yes", "3/4", "100.00%"] and sdnn[5].split() == ["c", "-", "-"]
    assert sdnn[6].startswith("test accuracy (phase 2): 50.00%")
    assert sdnn[8].endswith("test error: n/a (undefined: the classes' errors or θ cannot be ranked, e.g. every "
                            "error is 0)")
    baseline = format_summary(Results(method="baseline", subclass_to_class=[0, 1, 2], **common)).splitlines()
    assert re.split(r"\s{2,}", baseline[1].strip()) == ["class", "test acc (baseline)"]
    assert "θ" not in "".join(baseline)
    assert baseline[-1].startswith("test accuracy (baseline): 50.00%")


def test_other_packages_lines_are_dropped_and_warnings_are_one_line_without_a_path(tmp_path, capsys):
    """``quiet()``: the INFO lines of Lightning's DDP set-up and start-up, alembic's and optuna's in the Optuna
    sweeper, hydra.utils' ERROR before our own error: none reaches a handler; a warning is ``warning: <message>``
    on stderr and in run.log (a root FileHandler, as Hydra opens it), once per text, without the file that
    raised it."""
    import logging
    import warnings

    from sdnn.runlog import quiet

    root, log = logging.getLogger(), tmp_path / "run.log"
    handler, level = logging.FileHandler(log), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # as Hydra's job logging sets it
    try:
        quiet()
        import pytorch_lightning  # noqa: F401  (its import resets its logger's level; a job calls quiet() after it)

        quiet()
        for name, level in (("lightning_fabric.utilities.distributed", logging.INFO),
                            ("pytorch_lightning.utilities.rank_zero", logging.INFO),
                            ("alembic.runtime.plugins", logging.INFO), ("optuna.storages._in_memory", logging.INFO),
                            ("hydra.utils", logging.ERROR)):
            logging.getLogger(name).log(level, "foreign line from %s", name)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            quiet()
            for _ in range(2):
                warnings.warn_explicit("The number of training batches (9) is smaller\nthan the logging interval",
                                       UserWarning, "/site-packages/pytorch_lightning/loops/fit_loop.py", 321)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: The number of training batches (9) is smaller than the logging interval"]
    recorded = log.read_text()
    assert "foreign line" not in recorded and "fit_loop.py" not in recorded
    assert recorded.count("warning: The number of training batches (9)") == 1
