"""Files the program reads back, and disks that fail (issue 18, items 1, 5, 6, 8 and 9).

| input or fault                                                         | expected                                        |
|------------------------------------------------------------------------|-------------------------------------------------|
| ``last.ckpt`` planted: unpickling it would create a marker file        | never loaded: one line naming it, no marker     |
| the same, loaded at fit time (``AtomicCheckpointIO.load_checkpoint``)  | refused by the weights-only loader, no marker   |
| the same through the CLI (``checkpoint.resume=force``)                 | exit 2, one line, no traceback, no marker       |
| ``last.ckpt`` truncated to a third                                     | one line naming it and checkpoint.resume=false  |
| ``checkpoint.resume=false`` after that                                 | the phase starts over and the run finishes      |
| ``checkpoints/config.json`` garbled                                    | one line naming it (force continues)            |
| phase-1 cache: ``model.pt``, ``theta.json``, ``meta.json``, ``norms.npz`` truncated; ``theta.json`` valid JSON of the wrong shape | a warning naming the file; the entry is computed again |
| a cached partition truncated, or valid npz without the partition's arrays | a warning naming it; computed again         |
| phase-1 cache full (every write: ENOSPC)                               | a warning, the run finishes uncached            |
| phase-1 cache folder read-only (a real one; as root: under /sys)       | the same                                        |
| run folder full at the second epoch's checkpoint (ENOSPC)              | one line naming last.ckpt; the rerun resumes    |
| ``hydra.run.dir`` a file, or a folder that cannot be written           | exit 2, one line naming it, no traceback        |
| a damaged YT8M record read by a DataLoader worker (on_corrupt=error)   | our one-line message, not the worker traceback  |
| a checkpoint written at every epoch                                    | no "`weights_only` was not set" line            |
| a class without test samples                                           | per_class_acc null (not 0.0); summary prints -  |
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import sdnn.cache
from sdnn.cache import Phase1Cache
from sdnn.errors import CheckpointError, DataError, DiskError, user_message, worker_message
from tests.conftest import FAST, QUICK_GUARD, compose_config, read_results, run_cli, write_npz

CHECKPOINTS = ["checkpoint.every_n_epochs=1"]  # FAST turns them off
BASELINE = ["method=baseline", "model=mlp", "trainer.max_epochs=1", "observe.figures=false"]


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a file appears if the checkpoint is ever unpickled as code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _run(overrides: list[str], run_dir: Path, cache: Path):
    from sdnn.app import run

    return run(compose_config([*FAST, f"phase1.cache_dir={cache}", *overrides]), run_dir).to_json()


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A baseline run with a checkpoint per epoch (a copy of its run folder per test), and what Lightning logged."""
    base = tmp_path_factory.mktemp("trained")
    lines = _Lines()
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        _run([*BASELINE, *CHECKPOINTS], base / "run", base / "cache")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return base, lines.lines


def _copy(trained, tmp_path) -> Path:
    """The folder of a run killed after its last checkpoint: the checkpoints, no results.json (a finished run
    folder is reported complete, and nothing in it is loaded)."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0] / "run", run_dir)
    (run_dir / "results.json").unlink()
    return run_dir


# ----------------------------------------------------------------------------- item 1: checkpoints never run code

def test_a_planted_checkpoint_is_never_unpickled(trained, tmp_path):
    run_dir = _copy(trained, tmp_path)
    last = run_dir / "baseline" / "checkpoints" / "last.ckpt"
    marker = tmp_path / "marker"
    torch.save({"epoch": 0, "global_step": 10, "state_dict": {}, "payload": _WritesMarker(marker)}, last)
    with pytest.raises(CheckpointError) as err:
        _run([*BASELINE, *CHECKPOINTS], run_dir, trained[0] / "cache")
    message = str(err.value)
    assert str(last) in message and "checkpoint.resume=false" in message and "io.open" in message
    assert "\n" not in message and not marker.exists()
    # the load Lightning does at fit time refuses it too (a file replaced after the check above)
    from sdnn.lit.resume import AtomicCheckpointIO

    with pytest.raises(CheckpointError, match="io.open"):
        AtomicCheckpointIO().load_checkpoint(last, weights_only=False)
    assert not marker.exists()


def test_a_planted_checkpoint_through_the_cli_is_one_line(trained, tmp_path):
    run_dir = _copy(trained, tmp_path)
    last = run_dir / "baseline" / "checkpoints" / "last.ckpt"
    marker = tmp_path / "marker"
    torch.save({"epoch": 0, "payload": _WritesMarker(marker)}, last)
    proc = run_cli([*FAST, *BASELINE, *CHECKPOINTS, "checkpoint.resume=force", f"hydra.run.dir={run_dir}",
                    f"phase1.cache_dir={trained[0] / 'cache'}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not marker.exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(last) in errors[0] and "checkpoint.resume=false" in errors[0]


def test_a_truncated_checkpoint_names_the_file_and_resume_false_starts_over(trained, tmp_path):
    run_dir = _copy(trained, tmp_path)
    last = run_dir / "baseline" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    cache = trained[0] / "cache"
    with pytest.raises(CheckpointError) as err:
        _run([*BASELINE, *CHECKPOINTS], run_dir, cache)
    assert str(last) in str(err.value) and "checkpoint.resume=false" in str(err.value)
    assert "damaged, truncated" in str(err.value)
    config = run_dir / "baseline" / "checkpoints" / "config.json"
    good = config.read_text()
    config.write_text(good[:20])  # a garbled configuration record
    with pytest.raises(CheckpointError, match="config.json .* is damaged"):
        _run([*BASELINE, *CHECKPOINTS], run_dir, cache)
    results = _run([*BASELINE, *CHECKPOINTS, "checkpoint.resume=false"], run_dir, cache)
    assert results["test"]["acc"] > 0.5 and read_results(run_dir)["method"] == "baseline"


# ----------------------------------------------------------------------------- item 9: no INFO line per checkpoint

def test_saving_a_checkpoint_logs_no_weights_only_line(trained):
    base, lines = trained
    assert (base / "run" / "baseline" / "checkpoints" / "last.ckpt").is_file()
    assert not [line for line in lines if "weights_only" in line], lines


def test_a_class_without_test_samples_has_no_accuracy(tmp_path, capsys):
    path = write_npz(tmp_path / "d.npz", "vectors")
    arrays = dict(np.load(path))
    keep = arrays["y_test"] != 2
    arrays["x_test"], arrays["y_test"] = arrays["x_test"][keep], arrays["y_test"][keep]
    np.savez(path, **arrays)
    results = _run(["dataset=npz", f"dataset.path={path}", *BASELINE], tmp_path / "run", tmp_path / "cache")
    per_class = results["test"]["per_class_acc"]
    assert per_class[2] is None and all(isinstance(v, float) for v in per_class[:2])
    assert results["epoch_test_acc"]["baseline"][-1]["per_class_acc"][2] is None
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"]["per_class_acc"][2] is None
    row = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("2 ")]
    assert row and row[0].rstrip().endswith("-")
    from sdnn.study import compare  # the per-class comparison leaves the class out instead of failing

    out = compare({0: results}, {0: {**results, "selected_classes": [0]}})
    assert out["per_class_change"][:2] == [0.0, 0.0] and np.isnan(out["per_class_change"][2])


# ----------------------------------------------------------------------------- item 5: a damaged cache is recomputed

def _entry(tmp_path) -> Phase1Cache:
    said: list[str] = []
    cache = Phase1Cache(tmp_path / "cache", {"k": 1}, say=said.append)
    cache.said = said
    history = [{"window": 0, "theta": [1.5, 2.0]}]
    norms = {"steps": np.arange(3), "total": np.ones((3, 2))}
    assert cache.save_phase1(history, {"head.weight": torch.ones(2, 3)}, {"seconds": 1.0}, norms)
    cache.save_partition({"p": 1}, {"numbers": np.arange(4)})
    return cache


@pytest.mark.parametrize("name, damage", [
    ("model.pt", "truncate"), ("theta.json", "truncate"), ("meta.json", "truncate"), ("norms.npz", "truncate"),
    ("theta.json", '{"not": "a history"}'), ("meta.json", "[]"),
])
def test_a_damaged_phase1_file_is_named_and_the_entry_computed_again(tmp_path, name, damage):
    cache = _entry(tmp_path)
    assert cache.load_phase1() is not None and not cache.said
    path = cache.dir / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if damage == "truncate" else damage.encode())
    assert cache.load_phase1() is None
    assert len(cache.said) == 1 and str(path) in cache.said[0] and "computing phase 1 again" in cache.said[0]


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_a_damaged_partition_is_named_and_computed_again(tmp_path, damage):
    cache = _entry(tmp_path)
    parse = lambda arrays: arrays["numbers"]  # noqa: E731 — as Repartition.from_arrays, a KeyError if foreign
    assert cache.load_partition({"p": 1}, parse).tolist() == [0, 1, 2, 3]
    path = cache.partition_path({"p": 1})
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    else:
        np.savez(path, other=np.zeros(2))
    assert cache.load_partition({"p": 1}, parse) is None
    assert len(cache.said) == 1 and str(path) in cache.said[0] and "computing the partition again" in cache.said[0]


def _no_space(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_full_or_damaged_cache_never_loses_a_trained_phase1(tmp_path, monkeypatch, capsys):
    args = ["model=lr", "observe.figures=false", "trainer.max_epochs=1", "observe.per_class_test_acc=false"]
    cache, write = tmp_path / "cache", sdnn.cache.atomic_write_bytes

    def cache_full(path, data):  # every file of the cache: disk full (the run folder is written as usual)
        (_no_space if str(path).startswith(str(cache)) else write)(path, data)

    monkeypatch.setattr(sdnn.cache, "atomic_write_bytes", cache_full)
    full = _run(args, tmp_path / "full", tmp_path / "cache")
    out = capsys.readouterr().out
    assert "warning: cannot write the phase-1 cache" in out and "No space left on device" in out
    assert "not cached" in full["phase1"]["origin"] and (tmp_path / "full" / "results.json").is_file()
    monkeypatch.undo()
    first = _run(args, tmp_path / "first", tmp_path / "cache")
    assert first["theta"] == full["theta"] and first["test"] == full["test"]
    entry = Path(first["phase1"]["cache_dir"])
    for path in (entry / "model.pt", *entry.glob("partitions/*.npz")):
        path.write_bytes(path.read_bytes()[:100])
    capsys.readouterr()
    again = _run(args, tmp_path / "again", tmp_path / "cache")
    out = capsys.readouterr().out
    assert f"{entry / 'model.pt'} is damaged" in out and "computing phase 1 again (it is a cache)" in out
    assert not again["phase1"]["cached"] and again["theta"] == first["theta"] and again["test"] == first["test"]
    assert Phase1Cache(tmp_path / "cache", {}).dir.parent == entry.parent  # and the entry was written again:
    assert torch.load(entry / "model.pt", weights_only=True) and list(entry.glob("partitions/*.npz"))
    assert all(p.stat().st_size > 100 for p in (entry / "model.pt", *entry.glob("partitions/*.npz")))


def _unwritable(tmp_path) -> Path:
    """A folder this process cannot create anything in: a read-only one, or as root (whom modes do not stop)
    a place under /sys (sysfs refuses new entries)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder / "inside"
    folder = Path("/sys/sdnn-test-unwritable")
    try:
        folder.mkdir()
    except OSError:
        return folder / "inside"
    folder.rmdir()
    pytest.skip("no folder here refuses writes to root")


def test_a_read_only_cache_folder_is_a_warning(tmp_path, capsys):
    results = _run(["model=lr", "observe.figures=false", "trainer.max_epochs=1", "observe.per_class_test_acc=false"],
                   tmp_path / "run", _unwritable(tmp_path))
    assert "warning: cannot write the phase-1 cache" in capsys.readouterr().out
    assert "not cached" in results["phase1"]["origin"] and (tmp_path / "run" / "results.json").is_file()


# ----------------------------------------------------------------------------- item 6: a full run folder

def test_a_full_run_folder_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch, capsys):
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    args = [*BASELINE, *CHECKPOINTS, "trainer.max_epochs=2"]
    save = TorchCheckpointIO.save_checkpoint
    saved = []

    def second_fails(self, checkpoint, path, storage_options=None):
        saved.append(path)
        if len(saved) == 2:
            with open(path, "wb") as half:  # a half-written file, then the disk is full
                half.write(b"PK")
            _no_space(path)
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", second_fails)
    run_dir = tmp_path / "run"
    with pytest.raises(DiskError) as err:
        _run(args, run_dir, tmp_path / "cache")
    last = run_dir / "baseline" / "checkpoints" / "last.ckpt"
    message = user_message(err.value)
    assert str(last) in message and "No space left on device" in message and "run the same command again" in message
    assert torch.load(last, weights_only=True)["epoch"] == 0 and not list(run_dir.rglob("*.partial"))
    assert not (run_dir / "results.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    results = _run(args, run_dir, tmp_path / "cache")
    assert "baseline: resuming from" in capsys.readouterr().out and len(results["epoch_test_acc"]["baseline"]) == 2


def test_user_message_for_disk_faults_and_others():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/a/results.json")
    assert user_message(full).startswith("cannot write /runs/a/results.json (No space left on device)")
    assert user_message(PermissionError(errno.EROFS, "Read-only file system", "/ro/x")).startswith("cannot write /ro/x")
    assert user_message(OSError(errno.ENOENT, "No such file")) is None  # not a disk fault: a bug, with its traceback
    assert user_message(ValueError("x")) is None


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path, where):
    if where == "file":
        target = tmp_path / "a-file"
        target.write_text("not a folder")
    else:
        target = _unwritable(tmp_path)
    proc = run_cli([f"hydra.run.dir={target}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"error: hydra.run.dir={target}: cannot create or write"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- item 8: errors in DataLoader workers

class _TwoArguments(DataError):
    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")


def _fails_in_worker(_):
    raise DataError("/data/train0001.tfrecord: the record at byte offset 0 is damaged (data checksum mismatch)")


def _fails_in_worker_two_arguments(_):
    raise _TwoArguments("/data/x.bin", "damaged")


def test_an_error_in_a_dataloader_worker_is_our_one_line():
    loader = torch.utils.data.DataLoader(range(2), batch_size=None, num_workers=1, collate_fn=_fails_in_worker)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert str(err.value) == "/data/train0001.tfrecord: the record at byte offset 0 is damaged (data checksum mismatch)"
    # a class torch cannot rebuild from one message comes back as a RuntimeError: the CLI finds our line in it
    loader = torch.utils.data.DataLoader(range(2), batch_size=None, num_workers=1,
                                         collate_fn=_fails_in_worker_two_arguments)
    with pytest.raises(RuntimeError) as wrapped:
        next(iter(loader))
    assert "Caught _TwoArguments in DataLoader worker process 0" in str(wrapped.value)
    assert user_message(wrapped.value) == worker_message(str(wrapped.value)) == "/data/x.bin: damaged"


def test_a_distributed_run_closes_its_process_group_once_before_the_interpreter_ends(tmp_path, monkeypatch):
    """Left open, gloo's threads can abort a finished DDP run at exit (status -6): train_phase registers, once per
    process, a close that destroys the group if one is open and does nothing otherwise."""
    import atexit

    import torch.distributed as dist

    from sdnn.lit import trainer as lit_trainer

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        lit_trainer.close_process_group()
        assert not dist.is_initialized()
        lit_trainer.close_process_group()  # nothing open: nothing to do
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    lit_trainer.close_process_group_at_exit.cache_clear()
    try:
        lit_trainer.close_process_group_at_exit()
        lit_trainer.close_process_group_at_exit()
        assert registered == [lit_trainer.close_process_group]
    finally:
        lit_trainer.close_process_group_at_exit.cache_clear()
