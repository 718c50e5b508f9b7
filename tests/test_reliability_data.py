"""Damaged CIFAR batches (issue 6, item 3): detection that names the file, and dataset.on_corrupt=skip,
which leaves damaged training batches out and reports how many, at load and at the end of the run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from sdnn.data.cifar import load_cifar, write_cifar_batches
from sdnn.errors import DataError
from tests.conftest import read_results, run_cli


def _write(root: Path, per_batch: int = 40) -> Path:
    rng = np.random.default_rng(0)
    n = 5 * per_batch
    return write_cifar_batches(root, "cifar10", rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                               np.arange(n) % 10, rng.integers(0, 256, (60, 3, 32, 32), dtype=np.uint8),
                               np.arange(60) % 10)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _flip_bytes(path: Path) -> None:
    """Overwrite the middle of the pickle: inside the pixel bytes this is silent, so damage the header."""
    data = bytearray(path.read_bytes())
    data[2:40] = b"\xff" * 38
    path.write_bytes(bytes(data))


def _label_out_of_range(path: Path) -> None:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["labels"][3] = 42
    path.write_bytes(pickle.dumps(batch, protocol=2))


DAMAGE = {"truncated": (_truncate, "not a readable pickle"), "overwritten header": (_flip_bytes, "corrupt"),
          "label 42": (_label_out_of_range, "labels span 0..42")}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_batch_is_named_and_skip_leaves_it_out(tmp_path, kind):
    damage, problem = DAMAGE[kind]
    folder = _write(tmp_path)
    damage(folder / "data_batch_2")
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path, "cifar10")
    assert str(folder / "data_batch_2") in str(err.value) and problem in str(err.value)
    assert "dataset.on_corrupt=skip" in str(err.value)
    arrays = load_cifar(tmp_path, "cifar10", on_corrupt="skip")
    assert len(arrays["x_train"]) == 4 * 40 and len(arrays["skipped"]) == 1
    assert str(folder / "data_batch_2") in arrays["skipped"][0] and problem in arrays["skipped"][0]
    clean = load_cifar(_write(tmp_path / "clean").parent, "cifar10")
    keep = np.r_[0:40, 80:200]  # batches 1, 3, 4, 5
    assert np.array_equal(arrays["x_train"], clean["x_train"][keep])
    assert np.array_equal(arrays["y_train"], clean["y_train"][keep])


def test_skip_counts_every_damaged_batch_but_never_skips_the_test_batch(tmp_path):
    folder = _write(tmp_path)
    _truncate(folder / "data_batch_1")
    _label_out_of_range(folder / "data_batch_5")
    arrays = load_cifar(tmp_path, "cifar10", on_corrupt="skip")
    assert len(arrays["skipped"]) == 2 and len(arrays["x_train"]) == 3 * 40
    _truncate(folder / "test_batch")
    with pytest.raises(DataError, match="test_batch is corrupt"):
        load_cifar(tmp_path, "cifar10", on_corrupt="skip")
    for name in ("data_batch_2", "data_batch_3", "data_batch_4"):
        _truncate(folder / name)
    _write(tmp_path / "other")
    with pytest.raises(DataError, match="every training batch .* is damaged"):
        load_cifar(tmp_path, "cifar10", on_corrupt="skip")
    with pytest.raises(DataError, match="on_corrupt='ignore'"):
        load_cifar(tmp_path / "other", "cifar10", on_corrupt="ignore")


def test_cli_fails_on_a_damaged_batch_and_skip_reports_the_count_at_the_end(tmp_path):
    folder = _write(tmp_path / "data")
    _truncate(folder / "data_batch_4")
    args = ["dataset=cifar10", f"dataset.root={tmp_path / 'data'}", "model=cnn", "phase1.epochs=1",
            "trainer.max_epochs=1", "observe.figures=false", "trainer.enable_progress_bar=false",
            f"phase1.cache_dir={tmp_path / 'cache'}"]
    failed = run_cli([*args, f"hydra.run.dir={tmp_path / 'fail'}"])
    assert failed.returncode == 2
    assert f"error: {folder / 'data_batch_4'} is corrupt or truncated" in failed.stderr + failed.stdout
    assert not (tmp_path / "fail" / "results.json").exists()
    run = run_cli([*args, "dataset.on_corrupt=skip", f"hydra.run.dir={tmp_path / 'skip'}"])
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout + run.stderr
    assert "warning: skipped 1 damaged file(s) (dataset.on_corrupt=skip)" in out  # at load
    assert out.rindex("1 damaged file(s) were skipped") > out.index("test accuracy")  # repeated at the end
    skipped = read_results(tmp_path / "skip")["data_skipped"]
    assert skipped["count"] == 1 and "data_batch_4" in skipped["items"][0]
