"""A user's own LightningDataModule (``dataset=custom dataset._target_=pkg.Module``, SPEC §7c): written here, on
scikit-learn's digits, and run through the composed configuration and through the CLI, as a user would."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sdnn.build import build_job
from sdnn.data.custom import content_keys, read_module
from sdnn.errors import ConfigError, DataError
from tests.conftest import FAST, QUICK_GUARD, ROOT, RUN_GUARD, compose_config, read_results, run_cli

MY_DATA = '''
import os

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


def digits(order_seed=None):
    """Digits as (1, 8, 8) float images, every fourth one held out for test; the training set in a permuted
    order when ``order_seed`` is given; SDNN_TEST_SHIFT (an environment variable) shifts every input."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16 + float(os.environ.get("SDNN_TEST_SHIFT", 0))
    y = torch.as_tensor(data.target)
    test = torch.arange(len(y)) % 4 == 0
    train = (x[~test], y[~test])
    if order_seed is not None:
        order = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(order_seed))
        train = (train[0][order], train[1][order])
    return train, (x[test], y[test])


class Digits(pl.LightningDataModule):
    """The least a user writes: num_classes, input_shape and the loaders (the training one shuffles)."""

    def __init__(self, batch_size=64, val=False, order_seed=None):
        super().__init__()
        self.batch_size, self.val, self.order_seed = batch_size, val, order_seed
        self.num_classes, self.input_shape = 10, (1, 8, 8)

    def setup(self, stage):
        (x, y), self.test = digits(self.order_seed)
        cut = len(y) - 200 if self.val else len(y)
        self.train, self.validation = (x[:cut], y[:cut]), (x[cut:], y[cut:])

    def train_dataloader(self):
        return DataLoader(TensorDataset(*self.train), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(*self.validation), batch_size=self.batch_size) if self.val else None

    def test_dataloader(self):
        return DataLoader(TensorDataset(*self.test), batch_size=self.batch_size)


class Bytes(Digits):
    """uint8 images, numpy batches, class names."""

    class_names = [f"digit {k}" for k in range(10)]

    def setup(self, stage):
        super().setup(stage)
        self.train = ((self.train[0] * 255).to(torch.uint8), self.train[1])
        self.test = ((self.test[0] * 255).to(torch.uint8), self.test[1])

    def train_dataloader(self):
        return ((x.numpy(), y.numpy()) for x, y in super().train_dataloader())

    def test_dataloader(self):
        return iter([(x.numpy(), y.numpy()) for x, y in super().test_dataloader()])


class Batches(Digits):
    """A module whose test batches are made by ``batch(x, y)``."""

    def test_dataloader(self):
        return (self.batch(x, y) for x, y in super().test_dataloader())


class Singles(Batches):
    def batch(self, x, y):
        return [x]


class Triples(Batches):
    def batch(self, x, y):
        return x, y, y


class Dicts(Batches):
    def batch(self, x, y):
        return {"image": x, "label": y}


class FloatLabels(Batches):
    def batch(self, x, y):
        return x, y.float()


class OneHot(Batches):
    def batch(self, x, y):
        return x, torch.nn.functional.one_hot(y, 10).float()


class Flat(Batches):
    def batch(self, x, y):
        return x.flatten(1), y


class NaNs(Batches):
    def batch(self, x, y):
        return x * float("nan"), y


class ByteTest(Batches):
    def batch(self, x, y):
        return (x * 255).to(torch.uint8), y


class FiveClasses(Digits):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = 5


class NoClassCount(Digits):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.num_classes


class GrayShape(Digits):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_shape = (8, 8)


class EmptyTest(Digits):
    def test_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)))


class TwoTestLoaders(Digits):
    def test_dataloader(self):
        return [super().test_dataloader(), super().test_dataloader()]


class NoTest(pl.LightningDataModule):
    num_classes, input_shape = 10, (1, 8, 8)

    def train_dataloader(self):
        return []


class Plain:
    pass
'''

CUSTOM = ["dataset=custom"]


@pytest.fixture
def my_data(tmp_path, monkeypatch):
    """The module above as a user's file on the path (in-process runs; ``PYTHONPATH`` for the CLI)."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "my_data.py").write_text(MY_DATA)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("SDNN_TEST_SHIFT", raising=False)
    sys.modules.pop("my_data", None)
    yield folder
    sys.modules.pop("my_data", None)


def _custom(name: str, *overrides: str) -> list[str]:
    return [*CUSTOM, f"dataset._target_=my_data.{name}", *overrides]


def _loaded(tmp_path, *overrides: str):
    """The data of a run as built (read and checked, nothing trained)."""
    return build_job(compose_config([*FAST, f"phase1.cache_dir={tmp_path / 'cache'}", *overrides]),
                     tmp_path / "built").data


def _rows_sorted(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(label, input) rows in lexicographic order: the multiset of samples, by numpy alone."""
    rows = np.concatenate([y[:, None].astype(np.float64), x.reshape(len(x), -1).astype(np.float64)], 1)
    return rows[np.lexsort(rows.T[::-1])]


def test_the_splits_are_the_modules_samples_in_an_order_that_ignores_the_loader(my_data, tmp_path, monkeypatch):
    import my_data as user

    (x_train, y_train), (x_test, y_test) = user.digits()
    one, two = (_loaded(tmp_path, *_custom("Digits", f"+dataset.order_seed={seed}", "dataset.normalize=false")).splits
                for seed in (1, 2))
    assert one.num_classes == 10 and one.input_shape == (1, 8, 8) and one.x_val is None
    # every training sample exactly once (numpy's own sort of the rows as the reference), the test split as given
    np.testing.assert_array_equal(_rows_sorted(one.x_train.numpy(), one.y_train.numpy()),
                                  _rows_sorted(x_train.numpy(), y_train.numpy()))
    assert torch.equal(one.x_test, x_test) and torch.equal(one.y_test, y_test)
    # the shuffling loader and the permuted module give the same tensors in the same order, grouped by label
    assert torch.equal(one.x_train, two.x_train) and torch.equal(one.y_train, two.y_train)
    assert bool((one.y_train[1:] >= one.y_train[:-1]).all())
    assert one.fingerprint == two.fingerprint
    assert read_module(user.Digits(order_seed=1), "my_data.Digits").fingerprint == one.fingerprint
    monkeypatch.setenv("SDNN_TEST_SHIFT", "0.5")
    assert read_module(user.Digits(order_seed=1), "my_data.Digits").fingerprint != one.fingerprint


def test_content_keys_are_exact_integer_hashes_of_the_bytes():
    """Each key is ((Σ_j w_j r_1j) mod p)·p + (Σ_j w_j r_2j) mod p over the input's 32-bit words w_j, with the
    seeded weights r: recomputed here with Python's integers, one sample at a time."""
    x = torch.randn(7, 3, 2, 2)
    x[3] = x[1]
    keys = content_keys(x, chunk_bytes=64)  # a few rows per chunk
    prime = 2**31 - 1
    weights = torch.randint(1, prime, (12, 2), generator=torch.Generator().manual_seed(0), dtype=torch.int64).tolist()
    for row, key in zip(x.reshape(7, -1).view(torch.int32).tolist(), keys.tolist()):
        first = sum(w * r[0] for w, r in zip(row, weights)) % prime
        second = sum(w * r[1] for w, r in zip(row, weights)) % prime
        assert key == first * prime + second
    assert keys[3] == keys[1] and len(set(keys.tolist())) == 6
    flipped = x.clone()
    flipped[0, 0, 0, 0] = -flipped[0, 0, 0, 0]
    assert content_keys(flipped)[0] != keys[0]


def test_sdnn_on_a_users_data_module_and_the_same_numbers_whatever_the_loader_order(my_data, run_pipeline, tmp_path,
                                                                                      monkeypatch):
    import my_data as user

    (_, y_train), _ = user.digits()
    first = run_pipeline(_custom("Digits", "+dataset.order_seed=1", "model=mlp"), cache=tmp_path / "one")
    again = run_pipeline(_custom("Digits", "+dataset.order_seed=2", "model=mlp"), cache=tmp_path / "two")
    assert first["dataset"] == "custom" and first["phase1"]["cached"] is False and again["phase1"]["cached"] is False
    assert len(first["selected_classes"]) == 2 and len(first["subclass_to_class"]) == 12
    counts = np.bincount(y_train.numpy(), minlength=10)
    for cls, sizes in first["subclass_sizes"].items():
        assert len(sizes) == 2 and sum(sizes) == counts[int(cls)]  # a partition of the class's training samples
    assert len(first["test"]["per_class_acc"]) == 10 and first["val"] is None
    for key in ("theta", "selected_classes", "subclass_sizes", "test", "epoch_test_acc"):
        assert first[key] == again[key], key
    # the same configuration on changed data: phase 1 is not taken from the cache
    monkeypatch.setenv("SDNN_TEST_SHIFT", "0.25")
    shifted = run_pipeline(_custom("Digits", "+dataset.order_seed=1", "model=mlp"), cache=tmp_path / "one")
    assert shifted["phase1"]["cached"] is False


def test_baseline_with_a_validation_loader(my_data, run_pipeline, tmp_path):
    results = run_pipeline(_custom("Digits", "+dataset.val=true", "method=baseline", "model=mlp"),
                           run_dir=tmp_path / "baseline")
    assert results["method"] == "baseline" and results["val"] is not None and 0 <= results["val"]["acc"] <= 1
    assert (tmp_path / "baseline" / "model" / "model.json").is_file()


def test_the_shared_keys_apply_and_the_users_keys_pass_through(my_data, tmp_path):
    data = _loaded(tmp_path, *_custom("Digits", "dataset.val_fraction=0.2", "dataset.train_per_class=30",
                                      "dataset.merge=[0,0,1,1,2,2,3,3,4,4]", "dataset.batch_size=32"))
    splits = data.splits
    assert data.num_classes == 5 and data.batch_size == 32 and data.name == "custom"
    assert len(splits.x_val) == round(0.2 * 1347)  # held out of the 1,347 training samples before the subset
    assert np.bincount(splits.fine_train.numpy(), minlength=10).tolist() == [30] * 10
    assert splits.preprocessing.standardize == "loaded" and splits.preprocessing.source.endswith("loaders yield")
    assert abs(float(splits.x_train.mean())) < 1e-4
    validation = _loaded(tmp_path, *_custom("Digits", "+dataset.val=true", "dataset.normalize=false")).splits
    assert len(validation.x_val) == 200 and len(validation.x_train) == 1347 - 200  # the module's val_dataloader()
    with pytest.raises(ConfigError, match="dataset.colour is not an argument of my_data.Digits"):
        _loaded(tmp_path, *_custom("Digits", "+dataset.colour=1"))


def test_uint8_images_as_numpy_batches_with_class_names(my_data, tmp_path):
    data = _loaded(tmp_path, *_custom("Bytes", "dataset.augment.flip=true"))
    assert data.splits.x_train.dtype == torch.uint8 and data.names()[3] == "digit 3"
    card = data.preprocessing()
    assert card.kind == "uint8" and card.standardize == "device" and card.shape == (1, 8, 8)
    assert data.input_pipeline().augment is not None  # images: dataset.augment applies on the device


@pytest.mark.parametrize("name, error, message", [
    ("Plain", ConfigError, "is not a data module SDNN can read: it has no train_dataloader()"),
    ("NoTest", ConfigError, "has no test_dataloader()"),
    ("NoClassCount", ConfigError, "has no num_classes"),
    ("GrayShape", DataError, "input_shape=(8, 8) must be (C, H, W)"),
    ("Singles", DataError, "test_dataloader() yielded a list of 1 item(s); each batch must be a pair (x, y)"),
    ("Triples", DataError, "yielded a tuple of 3 item(s); each batch must be a pair (x, y)"),
    ("Dicts", DataError, "yielded a dict with keys ['image', 'label']"),
    ("FloatLabels", DataError, "labels of dtype torch.float32 and shape (64,); labels must be integer class indices"),
    ("OneHot", DataError, "labels of shape (64, 10) (one-hot or multi-hot)"),
    ("Flat", DataError, "inputs of shape (64,) (a batch of (64, 64)), but input_shape is (1, 8, 8)"),
    ("NaNs", DataError, "NaN or Inf"),
    ("ByteTest", DataError, "the splits' inputs have different dtypes (train: torch.float32, test: torch.uint8)"),
    ("FiveClasses", DataError, "outside 0..4 (num_classes=5)"),
    ("EmptyTest", DataError, "test_dataloader() yielded no samples"),
    ("TwoTestLoaders", DataError, "test_dataloader() returned a list of 2 item(s); return one DataLoader"),
])
def test_a_module_that_breaks_the_protocol_is_one_line_before_training(my_data, tmp_path, name, error, message):
    with pytest.raises(error) as caught:
        _loaded(tmp_path, *_custom(name))
    text = str(caught.value)
    assert message in text and "\n" not in text and f"my_data.{name}" in text


@pytest.mark.parametrize("override, message", [
    ([], "dataset=custom needs dataset._target_: your LightningDataModule"),
    (["dataset._target_=no_such_package.Data"], "dataset._target_=no_such_package.Data: cannot import it"),
    (["dataset._target_=my_data.FloatLabels"], "labels must be integer class indices"),
])
def test_the_cli_says_what_is_wrong_in_one_line(my_data, tmp_path, override, message):
    proc = run_cli([*CUSTOM, *override, *FAST, f"hydra.run.dir={tmp_path / 'r'}", f"phase1.cache_dir={tmp_path / 'c'}"],
                   timeout=QUICK_GUARD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [proc.stderr.strip()]
    assert not (tmp_path / "r" / "results.json").exists()


def test_the_cli_trains_on_it_and_predict_takes_what_the_loaders_yield(my_data, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*_custom("Digits", "model=mlp"), *FAST, f"hydra.run.dir={run_dir}",
                    f"phase1.cache_dir={tmp_path / 'cache'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run_dir)
    assert results["dataset"] == "custom" and results["config"]["dataset"]["_target_"] == "my_data.Digits"
    assert "data: dataset._target_=my_data.Digits: train_dataloader(): 1,347 samples in 22 batches" in proc.stdout
    import my_data as user

    _, (x_test, y_test) = user.digits()
    np.savez(tmp_path / "test.npz", x=x_test.numpy(), y=y_test.numpy())  # the x the test loader yields
    output = tmp_path / "predictions.csv"
    proc = subprocess.run([sys.executable, "-m", "sdnn.predict", str(run_dir), "--input", str(tmp_path / "test.npz"),
                           "--labels", "y", "--output", str(output)], cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_GUARD, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["index"]) for row in rows] == list(range(len(y_test)))
    right = np.mean([int(row["class"]) == int(label) for row, label in zip(rows, y_test.tolist())])
    assert f"({100 * right:.2f}%)" in proc.stdout + proc.stderr
    # --split test rebuilds the user's module, which a run folder may only import when its package is trusted
    split = [sys.executable, "-m", "sdnn.predict", str(run_dir), "--split", "test"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    refused = subprocess.run(split, cwd=ROOT, capture_output=True, text=True, timeout=RUN_GUARD, env=env)
    assert refused.returncode == 2 and "--trust my_data" in refused.stderr and "Traceback" not in refused.stderr
    trusted = subprocess.run([*split, "--trust", "my_data"], cwd=ROOT, capture_output=True, text=True,
                             timeout=RUN_GUARD, env=env)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert f"results.json test.acc {results['test']['acc']}: the same" in trusted.stdout


def test_a_split_too_big_for_the_free_memory_is_one_line_before_it_is_read(my_data, monkeypatch):
    import my_data as user
    from sdnn.data import custom

    read = []
    monkeypatch.setattr(custom, "checked_batch", lambda batch, *args: read.append(1) or batch)
    monkeypatch.setattr(custom, "available_memory", lambda: 500_000)  # 22 batches × 64 × 256 bytes, × 2 > 0.5 MB
    with pytest.raises(DataError, match=r"train_dataloader\(\): reading about 1,408 inputs of shape \(1, 8, 8\) "
                                        r"\(torch.float32\) needs about 0.7 MiB but 0.5 MiB of memory is free"):
        read_module(user.Digits(), "my_data.Digits")
    assert len(read) == 1  # the first batch only


def test_a_long_read_reports_its_progress_in_a_log_and_a_quick_one_stays_quiet(monkeypatch, capsys):
    from sdnn.data import custom

    monkeypatch.setattr(custom, "terminal", lambda stream=None: False)  # a log file, not a terminal
    monkeypatch.setattr(custom, "QUIET_SECONDS", 1e9)
    assert list(custom.counted(range(20), "my loader", 20, True)) == list(range(20))
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(custom, "QUIET_SECONDS", 0.0)  # as if every batch took long
    assert list(custom.counted(range(20), "my loader", 20, True)) == list(range(20))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("%")[0] for line in lines] == [f"reading my loader: {p}" for p in range(10, 100, 10)]
