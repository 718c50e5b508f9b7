"""dataset=image_folder: class-per-folder trees (and archives of them), decoded once, cached."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdnn.data import image_folder
from sdnn.data.image_folder import load_image_folder
from sdnn.errors import DataError
from tests.conftest import ROOT, read_results, run_cli

SHARED_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def _tree(root: Path, classes=("cat", "ant", "dog"), n_train=4, n_test=2, size=6, seed=0, val=False) -> dict:
    """PNG (lossless) images; returns {split: [(class name, pixels HWC)]} in the written order."""
    rng = np.random.default_rng(seed)
    written: dict = {}
    for split, n in (("train", n_train), ("test", n_test)) + ((("val", 1),) if val else ()):
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:03d}.png")
                written.setdefault(split, []).append((cls, pixels))
    return written


def test_folder_tree_is_read_pixel_for_pixel_with_sorted_class_indices(tmp_path):
    written = _tree(tmp_path / "tree", val=True)
    splits = load_image_folder(str(tmp_path / "tree"), cache_file=str(tmp_path / "c.pt"))
    assert splits.class_names == ["ant", "cat", "dog"] and splits.num_classes == 3
    assert splits.x_train.dtype.is_floating_point is False and splits.x_train.shape == (12, 3, 6, 6)
    for split, x, y in (("train", splits.x_train, splits.y_train), ("test", splits.x_test, splits.y_test),
                        ("val", splits.x_val, splits.y_val)):
        per_class = {}
        for cls, pixels in written[split]:
            per_class.setdefault(cls, []).append(pixels)
        k = 0
        for index, cls in enumerate(splits.class_names):  # sorted classes, files in name order
            for pixels in per_class[cls]:
                assert int(y[k]) == index
                assert np.array_equal(x[k].numpy().transpose(1, 2, 0), pixels)
                k += 1
        assert k == len(x)


def test_archive_gives_the_same_tensors_as_the_folder(tmp_path):
    _tree(tmp_path / "data" / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data" / "tree", arcname="tree")
    a = load_image_folder(str(tmp_path / "data" / "tree"), cache_file=str(tmp_path / "a.pt"))
    b = load_image_folder(str(archive), cache_file=str(tmp_path / "b.pt"))
    assert a.class_names == b.class_names
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, name).numpy(), getattr(b, name).numpy()), name


def test_decoded_once_then_cached_next_to_the_data_and_rebuilt_when_files_change(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    _tree(root)
    first = load_image_folder(str(root))
    cache = root / ".sdnn-images-native.pt"
    assert cache.is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(image_folder, "decode_image_tree", no_decoding)
    again = load_image_folder(str(root))
    assert np.array_equal(first.x_train.numpy(), again.x_train.numpy())

    monkeypatch.undo()
    changed = root / "train" / "ant" / "000.png"
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))
    rebuilt = load_image_folder(str(root))
    assert int(rebuilt.x_train[0].sum()) == 0  # the new all-black image, not the cached one


def test_damaged_cache_is_rebuilt_not_trusted(tmp_path):
    root = tmp_path / "tree"
    _tree(root)
    cache = tmp_path / "cache.pt"
    cache.write_bytes(b"not a tensor file")
    splits = load_image_folder(str(root), cache_file=str(cache))
    assert splits.x_train.shape[0] == 12 and cache.stat().st_size > 1000


def test_resize_to_a_square_and_size_mismatch_message(tmp_path):
    root = tmp_path / "tree"
    _tree(root)
    Image.fromarray(np.zeros((9, 7, 3), dtype=np.uint8)).save(root / "test" / "dog" / "999.png")
    with pytest.raises(DataError, match=r"999.png: image size 7×9 .*dataset.image_size"):
        load_image_folder(str(root), cache_file=str(tmp_path / "c.pt"))
    splits = load_image_folder(str(root), image_size=5, cache_file=str(tmp_path / "d.pt"))
    assert splits.x_test.shape[1:] == (3, 5, 5)


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    root = tmp_path / "tree"
    _tree(root)
    (root / "train" / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"bad.png: not a readable image.*dataset.on_corrupt=skip"):
        load_image_folder(str(root), cache_file=str(tmp_path / "c.pt"))
    splits = load_image_folder(str(root), cache_file=str(tmp_path / "c.pt"), on_corrupt="skip")
    assert splits.x_train.shape[0] == 12
    assert len(splits.skipped) == 1 and "bad.png" in splits.skipped[0]
    cached = load_image_folder(str(root), cache_file=str(tmp_path / "c.pt"), on_corrupt="skip")
    assert cached.skipped == splits.skipped  # still reported when the decoded tree comes from the cache


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "no such folder"),
    (lambda root: (root / "train" / "a").mkdir(parents=True), "no images found under train"),
    (lambda root: _tree(root, n_test=0), "no test images"),
    (lambda root: root.with_suffix(".tar.gz").write_bytes(b"\x1f\x8b garbage"), "corrupt or truncated"),
])
def test_tree_errors_name_the_problem(tmp_path, make, message):
    root = tmp_path / "tree"
    make(root)
    target = root.with_suffix(".tar.gz") if message == "corrupt or truncated" else root
    with pytest.raises(DataError, match=message):
        load_image_folder(str(target), cache_file=str(tmp_path / "c.pt"))


def test_unknown_test_class_and_missing_root(tmp_path):
    root = tmp_path / "tree"
    _tree(root)
    (root / "test" / "zebra").mkdir()
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(root / "test" / "zebra" / "0.png")
    with pytest.raises(DataError, match=r"test/ has class folder\(s\) \['zebra'\]"):
        load_image_folder(str(root), cache_file=str(tmp_path / "c.pt"))
    with pytest.raises(DataError, match="dataset.root=/path/to/tree"):
        load_image_folder(None)


@pytest.mark.slow  # decodes the 60,000 JPEGs (~40 s); the small folders above cover the same code by default
@pytest.mark.skipif(not SHARED_JPEG.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz")
def test_short_cpu_run_on_the_shared_cifar10_jpeg_archive(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["dataset=image_folder", f"dataset.root={SHARED_JPEG}", f"dataset.cache_file={tmp_path / 'c.pt'}",
                    "model=cnn", "partitioner=random", "phase1.epochs=1", "trainer.max_epochs=1",
                    "+trainer.limit_train_batches=4",
                    "+trainer.limit_test_batches=4", "logger=none", "trainer.enable_progress_bar=false",
                    "observe.per_class_test_acc=false", "observe.figures=false",
                    f"phase1.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run_dir)
    assert results["dataset"] == "image_folder" and len(results["test"]["per_class_acc"]) == 10
    assert len(results["selected_classes"]) == 2 and len(results["subclass_to_class"]) == 12
