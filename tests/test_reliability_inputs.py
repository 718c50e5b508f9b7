"""Bad input: each fails in seconds, before any training, with one line that names the key or file and the fix,
no traceback and no results.json (issues 6 and 18).

Through the real CLI (exit status 2): every override of ``test_bad_value_fails_fast_naming_the_key`` and every file
of ``BAD_FILES`` below. In-process (``validate_config``, ``sdnn.build.build_job``, the loaders), issue 18:

| item | input                                                                  | named in the message               |
|------|------------------------------------------------------------------------|------------------------------------|
| 2    | CIFAR labels 0.5, "3", True, [1, True], a float array, None             | the batch file and 'labels'        |
| 2    | npz x complex, timedelta, bool; y float, bool, timedelta               | the file and the array             |
| 3    | seed=-1, seed=2**40, optim.momentum=-1, optim.name=foo (already one line before) | the key                  |
| 3    | +optim.name=foo, +optim.name=adam with optim=sgd, +scheduler.name=x     | the key and the option to choose   |
| 3    | scheduler.milestones=[abc], [0]; scheduler.gamma=-1                      | scheduler.milestones / .gamma      |
| 3    | trainer.devices=0, -2, [0,0], abc; trainer.precision=abc, 8; trainer.accelerator=warp | the key          |
| 3    | trainer.accelerator=gpu without a GPU (or trainer.devices beyond the GPUs) | trainer.accelerator / .devices  |
| 3    | a one-class npz with method=baseline and method=sdnn                    | "at least 2 classes"               |
| 3    | hydra.run.dir a file or unwritable: tests/test_reliability_faults.py     | hydra.run.dir                      |
| 4    | dataset.train_per_class=1 (SDNN), subclass.per_class=200, subclass.classes=[1,2] with per_class=300 | the key and the class, before phase 1 |
| 4    | dataset.val_fraction=0.999 (was blamed on phase1.epochs after phase 1)   | dataset.val_fraction               |
| 7    | an image-folder .tar.gz member, or an image file, over dataset.max_image_mb | the member and dataset.max_image_mb |
| 7    | an image over Pillow's pixel limit (a decompression bomb)                | the image                          |
| 7    | an npz label 100000 (was a 689 KB message), 20 unknown subclass.classes  | "first 10 of N", under 400 chars   |
| 28   | trainer.devices above the CPU cores, or > 1 without a DDP strategy (CPU and GPU) | the cores, trainer=ddp_cpu / ddp |

Issue 28 through the CLI: ``+key`` without a value and another override Hydra cannot parse, a value of the wrong
type (shown as typed), a misspelled group name or key (with and without ``+``, a Trainer argument: "did you
mean"), more DDP processes
than cores and more than one without DDP; every one of them, and every other case through the CLI, is exactly one
line on stderr, and run.log has no other package's line (tests/test_config.py: the wording of each kind).
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile

import numpy as np
import pytest
import torch

from sdnn.build import build_job as prepare
from sdnn.checks import check_devices as check_trainer_devices
from sdnn.checks import cpu_cores
from sdnn.config import trainer_settings
from sdnn.config import validate_config
from sdnn.data.cifar import load_cifar, write_cifar_batches
from sdnn.data.image_folder import load_image_folder
from sdnn.data.npz import load_npz_splits
from sdnn.errors import ConfigError, DataError
from tests.conftest import FOREIGN_LINE, QUICK_GUARD, TWO_CORES, compose_config, run_cli, write_npz


def check_devices(node):
    """``trainer`` as the typed settings, checked against this machine's devices."""
    check_trainer_devices(trainer_settings(node))


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
    (["dataset=cifar10", "dataset.root=/nonexistent", "dataset.download=false"], "dataset.download=true"),
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
    (["+trainer.gradient_clip_val"], "+trainer.gradient_clip_val=<value>"),   # Hydra cannot parse it
    (["seed=[1"], "seed=[1: Hydra cannot parse this override"),
    (["trainer.max_epochs=1.5"], "trainer.max_epochs=1.5:"),                  # the value as typed
    (["modle=cnn"], "did you mean model=cnn?"),
    (["+subclass.per_clas=3"], "did you mean subclass.per_class?"),
    (["+trainer.gradient_clip_vall=1"], "did you mean trainer.gradient_clip_val?"),      # a Trainer argument
    (["trainer=ddp_cpu", f"trainer.devices={cpu_cores() + 1}"], f"this machine has {cpu_cores()} CPU core"),
    pytest.param(["trainer.devices=2", "trainer.accelerator=cpu"], "needs a DDP strategy", marks=TWO_CORES),
])
def test_bad_value_fails_fast_naming_the_key(tmp_path, override, named):
    _fails_fast(tmp_path, override, named)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_file_fails_fast_naming_the_problem(tmp_path, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    _fails_fast(tmp_path, ["dataset=npz", f"dataset.path={path}", "model=mlp"], message)


def _fails_fast(tmp_path, override, named):
    proc = run_cli([*override, f"hydra.run.dir={tmp_path / 'r'}", f"phase1.cache_dir={tmp_path / 'c'}"],
                   timeout=QUICK_GUARD)  # these stop in seconds
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]  # one line, nothing around it
    log = tmp_path / "r" / "run.log"
    assert not FOREIGN_LINE.search(log.read_text() if log.exists() else "")
    assert not (tmp_path / "r" / "results.json").exists()
    assert "phase 1:" not in proc.stdout and "baseline:" not in proc.stdout  # before any training


# ----------------------------------------------------------------------------- issue 18, in-process

def _cifar_labels(tmp_path, labels):
    rng = np.random.default_rng(0)
    folder = write_cifar_batches(tmp_path, "cifar10", rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8),
                                 np.arange(50) % 10, rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8),
                                 np.arange(20) % 10)
    path = folder / "data_batch_3"
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["labels"] = labels(batch["labels"])
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


@pytest.mark.parametrize("labels", [
    lambda y: [0.5] + y[1:], lambda y: ["3"] + y[1:], lambda y: [True] + y[1:], lambda y: [1, True] + y[2:],
    lambda y: np.asarray(y, dtype=np.float64), lambda y: [None] + y[1:],
], ids=["float", "string", "bool", "int and bool", "float array", "None"])
def test_cifar_labels_that_are_not_integers_are_a_data_error(tmp_path, labels):
    path = _cifar_labels(tmp_path, labels)
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path, "cifar10")
    assert str(path) in str(err.value) and "'labels'" in str(err.value) and "integer" in str(err.value)


@pytest.mark.parametrize("key, value, named", [
    ("x_train", lambda x: x.astype(np.complex64) + 1j, "x_train must be integer or real"),
    ("x_train", lambda x: x.astype("timedelta64[s]"), "x_train must be integer or real"),
    ("x_train", lambda x: x > 0, "x_train must be integer or real"),
    ("y_train", lambda y: y.astype(np.float32), "y_train must be a 1-D array of integer"),
    ("y_train", lambda y: y > 0, "y_train must be a 1-D array of integer"),
    ("y_train", lambda y: y.astype("timedelta64[s]"), "y_train must be a 1-D array of integer"),
], ids=["x complex", "x timedelta", "x bool", "y float", "y bool", "y timedelta"])
def test_npz_arrays_that_would_be_converted_silently_are_a_data_error(tmp_path, key, value, named):
    path = write_npz(tmp_path / "d.npz", "vectors")
    arrays = dict(np.load(path))
    arrays[key] = value(arrays[key])
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=named) as err:
        load_npz_splits(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("override, named", [
    (["seed=-1"], "seed=-1"), ([f"seed={2**40}"], "seed="), (["optim.momentum=-1"], "optim.momentum"),
    (["+optim.name=foo"], "optim.name=foo does not choose the optimiser"),
    (["optim=sgd", "+optim.name=adam"], "optim=<adam|sgd>"),
    (["+scheduler.name=cosine"], "scheduler.name=cosine"),
    (["scheduler.milestones=[abc]"], "scheduler.milestones"), (["scheduler.milestones=[0]"], "scheduler.milestones"),
    (["scheduler.gamma=-1"], "scheduler.gamma"),
    (["trainer.devices=0"], "trainer.devices=0"), (["trainer.devices=-2"], "trainer.devices"),
    (["trainer.devices=[0,0]"], "trainer.devices"), (["trainer.devices=abc"], "trainer.devices"),
    (["trainer.precision=abc"], "trainer.precision"), (["trainer.precision=8"], "trainer.precision"),
    (["trainer.accelerator=warp"], "trainer.accelerator"),
])
def test_values_lightning_or_numpy_would_refuse_later_fail_in_validation(override, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("|", r"\|")) as err:
        validate_config(compose_config(override))
    assert "\n" not in str(err.value)


def test_good_trainer_values_pass():
    for override in (["trainer.devices=auto"], ["trainer.devices=-1"], ["trainer.devices=[0,2]"],
                     ["trainer.devices='0,1'"], ["trainer.devices=2"], ["trainer.precision=16"],
                     ["trainer.precision=bf16-mixed"], ["trainer.accelerator=cpu"], ["scheduler=exponential"]):
        validate_config(compose_config(override))


def test_an_accelerator_this_machine_lacks_fails_before_the_data_is_read():
    if torch.cuda.is_available():
        override, named = [f"trainer.devices={torch.cuda.device_count() + 1}", "trainer.accelerator=gpu"], "trainer.devices"
    else:
        override, named = ["trainer.accelerator=gpu"], "trainer.accelerator=gpu but no CUDA GPU"
    with pytest.raises(ConfigError, match=named):
        check_devices(compose_config(override).trainer)


def test_more_gpus_than_the_machine_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for devices in ("1", "-1", "auto", "[0]"):
        check_devices(compose_config(["trainer.accelerator=gpu", f"trainer.devices={devices}"]).trainer)
    for devices in ("2", "[1]", "'0,1'"):
        with pytest.raises(ConfigError, match="1 GPU\\(s\\) are visible here"):
            check_devices(compose_config(["trainer.accelerator=gpu", f"trainer.devices={devices}"]).trainer)


def test_cpu_processes_at_most_one_per_core_and_more_than_one_only_with_ddp(monkeypatch):
    import sdnn.checks

    monkeypatch.setattr(sdnn.checks, "cpu_cores", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for override in (["trainer.devices=1"], ["trainer.devices=auto"], ["trainer=ddp_cpu"],
                     ["trainer=ddp_cpu", "trainer.devices=-1"], ["trainer.devices=2", "+trainer.strategy=ddp_spawn"]):
        check_devices(compose_config(override).trainer)
    for override, named in (
            (["trainer=ddp_cpu", "trainer.devices=3"], "trainer.devices=3 but this machine has 2 CPU core(s)"),
            (["trainer.devices=3"], "choose trainer.devices=1..2"),
            (["trainer.devices=2"], "trainer.devices=2 starts 2 training processes, which needs a DDP strategy: use "
                                    "trainer=ddp_cpu trainer.devices=2"),
            (["trainer.devices=-1"], "starts 2 training processes"),
            (["trainer.devices=[0,1]"], "trainer.devices=[0,1] lists GPU indices, but this run is on the CPU")):
        with pytest.raises(ConfigError, match=re.escape(named)):
            check_devices(compose_config(override).trainer)


def test_more_than_one_gpu_only_with_ddp(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_devices(compose_config(["trainer=ddp"]).trainer)  # every GPU, strategy ddp
    for devices in ("2", "-1", "[0,1]"):
        with pytest.raises(ConfigError, match="needs a DDP strategy: use trainer=ddp"):
            check_devices(compose_config(["trainer.accelerator=gpu", f"trainer.devices={devices}"]).trainer)


def _prepare(tmp_path, override):
    cfg = compose_config([f"phase1.cache_dir={tmp_path / 'cache'}", *override])
    return prepare(cfg, tmp_path / "run")


@pytest.mark.parametrize("method", ["baseline", "sdnn"])
def test_a_one_class_dataset_is_a_data_error(tmp_path, method):
    path = write_npz(tmp_path / "one.npz", "vectors", classes=1)
    with pytest.raises(DataError, match="has 1 class: a classifier needs at least 2 classes"):
        _prepare(tmp_path, [f"method={method}", "dataset=npz", f"dataset.path={path}", "model=mlp"])


@pytest.mark.parametrize("override, named", [
    (["dataset.train_per_class=1"], "raise dataset.train_per_class \\(now 1\\) to at least 2"),
    (["subclass.per_class=200"], "subclass.per_class=200 but class 8 has 122 training sample"),
    (["subclass.classes=[1,2]", "subclass.per_class=300"], "class 2 has 124 training sample.* subclass.classes"),
    (["dataset.val_fraction=0.999"], "dataset.val_fraction=0.999 holds out so much of train"),
    (["method=baseline", "dataset.val_fraction=0.999"], "lower dataset.val_fraction"),
])
def test_what_phase_1_would_have_found_late_is_found_before_it(tmp_path, override, named):
    with pytest.raises(ConfigError, match=named):
        _prepare(tmp_path, override)
    _prepare(tmp_path, ["method=baseline", "dataset.train_per_class=1"])  # a baseline needs no split


def _tar_tree(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _png(side=6):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_oversized_image_is_refused_before_it_is_read(tmp_path):
    small = [(f"tree/{split}/{cls}/{i}.png", _png()) for split in ("train", "test") for cls in "ab" for i in range(2)]
    archive = _tar_tree(tmp_path / "tree.tar.gz", [*small, ("tree/train/a/big.png", bytes(200_000))])
    with pytest.raises(DataError) as err:
        load_image_folder(str(archive), cache_file=str(tmp_path / "c.pt"), max_image_mb=0.1)
    assert "member tree/train/a/big.png" in str(err.value) and "dataset.max_image_mb=0.1" in str(err.value)
    splits = load_image_folder(str(_tar_tree(tmp_path / "ok.tar.gz", small)), cache_file=str(tmp_path / "d.pt"),
                               max_image_mb=0.1)
    assert splits.x_train.shape == (4, 3, 6, 6) and splits.y_test.tolist() == [0, 0, 1, 1]
    folder = tmp_path / "folder"
    for name, data in [*small, ("tree/train/a/big.png", bytes(200_000))]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with pytest.raises(DataError, match="big.png: 0.2 MB, more than dataset.max_image_mb=0.1"):
        load_image_folder(str(folder / "tree"), cache_file=str(tmp_path / "e.pt"), max_image_mb=0.1)


def test_a_decompression_bomb_is_an_error_not_gigabytes(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 12 × 12 = 144 pixels: between 1× and 2× the limit
    members = [(f"tree/{split}/a/0.png", _png(12)) for split in ("train", "test")]
    archive = _tar_tree(tmp_path / "bomb.tar.gz", members)
    with pytest.raises(DataError, match="tree/train/a/0.png: not a readable image .*DecompressionBomb"):
        load_image_folder(str(archive), cache_file=str(tmp_path / "c.pt"))


def test_listed_values_are_capped(tmp_path):
    path = write_npz(tmp_path / "d.npz", "vectors")
    arrays = dict(np.load(path))
    arrays["y_train"][0] = 100_000
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        load_npz_splits(str(path))
    assert "(first 10 of 99997)" in str(err.value) and len(str(err.value)) < 400
    with pytest.raises(ConfigError) as err:
        _prepare(tmp_path, [f"subclass.classes=[{','.join(str(k) for k in range(100, 120))}]"])
    assert "(first 10 of 20)" in str(err.value) and len(str(err.value)) < 400
