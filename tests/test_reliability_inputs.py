"""Bad input through the real CLI: each fails in seconds, names the key or file and the fix,
prints no traceback and leaves no results.json behind."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.conftest import run_cli, write_npz


def _npz(tmp_path, **arrays):
    base = dict(np.load(write_npz(tmp_path / "ok.npz", "vectors")))
    base.update(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **base)
    return path


def _garbage(path):
    path.write_bytes(b"garbage")
    return path


BAD_FILES = {
    "npz_label_negative": (lambda t: _npz(t, y_train=np.full(120, -1)), "negative class label"),
    "npz_nan_features": (lambda t: _npz(t, x_test=np.full((60, 24), np.nan, dtype=np.float32)), "NaN or Inf"),
    "npz_empty_class": (lambda t: _npz(t, y_train=np.where(np.arange(120) % 3 == 1, 0, np.arange(120) % 3)),
                        "no training sample"),
    "npz_not_a_zip": (lambda t: _garbage(t / "bad.npz"), "not a readable .npz"),
}


@pytest.mark.parametrize("override, named", [
    (["model=resnet9000"], "model"),
    (["subclass.num_classes_to_repartition=10"], "subclass.num_classes_to_repartition"),
    (["subclass.num_classes_to_repartition=0"], "subclass.num_classes_to_repartition"),
    (["subclass.per_class=1"], "subclass.per_class"),
    (["subclass.sibling_weight=1.5"], "subclass.sibling_weight"),
    (["subclass.classes=[3,3]"], "subclass.classes"),
    (["subclass.classes=[4,12]"], "subclass.classes"),
    (["subclass.classes=[]"], "subclass.classes"),
    (["phase1.tau=0"], "phase1.tau"),
    (["phase1.epochs=-1"], "phase1.epochs"),
    (["method=sdn"], "method"),
    (["seed=abc"], "seed"),
    (["trainer.max_epochs=0"], "trainer.max_epochs"),
    (["dataset.batch_size=0"], "dataset.batch_size"),
    (["dataset.val_fraction=1.5"], "dataset.val_fraction"),
    (["dataset.augment.cutout=-1"], "dataset.augment.cutout"),
    (["optim.lr=-1"], "optim.lr"),
    (["augmenter.lam=2"], "augmenter.lam"),
    (["partitioner.space=pixels"], "partitioner.space"),
    (["dataset=npz"], "dataset.path"),
    (["dataset=npz", "dataset.path=/nonexistent/data.npz"], "dataset.path"),
    (["dataset=cifar10", "dataset.root=/nonexistent"], "dataset.download=true"),
    (["dataset=svhn", "dataset.root=/nonexistent"], "train_32x32.mat"),
    (["dataset=image_folder"], "dataset.root"),
    (["dataset=image_folder", "dataset.root=/tmp", "dataset.on_corrupt=maybe"], "dataset.on_corrupt"),
    (["model=wrn", "model.backbone.depth=27"], "model.backbone.depth"),
    (["model=wrn", "+model.backbone.width=3"], "model.backbone.width"),
    (["model=custom"], "model.backbone._target_"),
    (["model=custom", "model.backbone._target_=no_such_module.Net"], "model.backbone"),
    (["optim.milestones=[3]"], "scheduler.milestones"),   # a key of the earlier layout: where it went
    (["model.depth=16"], "model.backbone.depth"),
    (["optim=rmsprop"], "optim=rmsprop is not an option"),
    (["seed=-1"], "seed"),
    (["optim.momentum=-1"], "optim.momentum"),
    (["checkpoint.resume=maybe"], "checkpoint.resume"),
])
def test_bad_value_fails_fast_naming_the_key(tmp_path, override, named):
    _fails_fast(tmp_path, override, named)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_file_fails_fast_naming_the_problem(tmp_path, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    _fails_fast(tmp_path, ["dataset=npz", f"dataset.path={path}", "model=mlp"], message)


def _fails_fast(tmp_path, override, named):
    start = time.perf_counter()
    proc = run_cli([*override, f"hydra.run.dir={tmp_path / 'r'}", f"phase1.cache_dir={tmp_path / 'c'}"], timeout=60)
    assert proc.returncode != 0
    assert named in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "results.json").exists()
    assert time.perf_counter() - start < 10
