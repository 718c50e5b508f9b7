"""A run folder someone sends you is data, never code; no output lands on what it must not (issue 29).

One SDNN run on digits is trained for the module; each test works on a copy of its folder (``model/model.json``
edited, files planted). Marker files prove that nothing ran: a planted module whose import would write one,
a ``_target_`` whose call would write one, a ``${oc.create:...}`` payload that would write one.

| part | input or fault                                                                   | expected                                       |
|------|----------------------------------------------------------------------------------|------------------------------------------------|
| 1    | backbone ``dropout: ${oc.create:{_target_: builtins.open, _args_: [M, w]}}`` beside a nested ``_target_`` (predict --input) | exit 2, one line, no marker |
| 1    | the same with ``pathlib.Path.write_text`` of a ``.pth`` file                     | exit 2, one line, no ``.pth`` file             |
| 1    | ``config.dataset.name: ${oc.create:...}`` (predict --split)                       | a plain string: exit 0, no marker              |
| 1    | ``config.dataset.augment: {_target_: builtins.open, _args_: [M, w]}`` (--split)   | refused before anything is imported, no marker |
| 1    | ``config.dataset._target_: builtins.open``, ``sdnn.artifact.save_model``, ``sdnn.data.sources.torch.utils.data.TensorDataset`` (reached through an attribute) | refused (not allowed / not a dataset class / defined outside) |
| 1    | ``evilnet.py`` planted in the run folder, card ``_target_: evilnet.Net``; ``python -m sdnn.predict`` from the folder | exit 2, "--trust", no marker |
| 1    | the same from the parent folder, ``_target_: run.evilnet.Net``                    | exit 2, no marker                              |
| 1    | ``--trust evilnet`` from the run folder; with PYTHONPATH=the run folder           | not importable / "from the run folder", no marker |
| 1    | ``numpy.py`` planted in the run folder, ``python -m sdnn.predict . --split test`` run there | exit 0, no marker                 |
| 1    | ``_target_: this.Net`` (import prints the Zen of Python), ``antigravity.Net``, ``subprocess.Popen``, ``os.system`` | refused, nothing printed, not imported |
| 1    | a user's backbone package (outside the run folder): without and with ``--trust``  | one line naming --trust; then predicts         |
| 1    | ``working_directory`` (predict --split's chdir to the card's launch_dir)          | no relative entry on sys.path inside it        |
| 2    | ``--output`` a FIFO, a link to /dev/null, a folder (predict); a FIFO (export)     | one line, nothing replaced, nothing blocks     |
| 2    | ``--output -``                                                                    | the CSV on standard output, the same rows      |
| 2    | a run into a folder of other files; with ``overwrite=true``                       | one line; then the run, the files kept         |
| 2    | a finished ``method=sdnn`` folder run again with ``method=baseline``              | one line naming method: 'sdnn' → 'baseline'    |
| 2    | the same with ``overwrite=true``                                                  | the folder holds exactly a baseline run        |
| 2    | the same configuration again                                                      | "this run is complete"                         |
| 2    | ``hydra.run.dir=`` (empty)                                                        | exit 2, one line, nothing written              |
| 2    | two runs into one folder at once                                                  | the second stops at once naming the first's pid |
| 2    | a DDP rank other than 0 (LOCAL_RANK=1)                                            | takes no lock, checks and writes nothing       |
| 3    | preprocessing std 0, divide 0, NaN mean, std -1, a wrong-length mean; shape [-3, 8], [10**6, 10**6] | one line naming preprocessing |
| 3    | float64 inputs of 1e300 (finite, infinite as float32)                             | one line: NaN or Inf as float32                |
| 3    | class names ``=HYPERLINK(..)``, ``+1``, ``-2``, ``@SUM(A1)``, ``a,"b"``; an image file ``=cmd.png`` | cells quoted with a leading ' |
| 3    | 3 million classes; ``hidden: [10**9]`` (peak < 100 MB); eval_batch_size 0; a class map not starting 0..c-1; ``hidden: [17]`` | one line, before any allocation |
| 3    | the class map of 200 000 classes (was quadratic); the scatter and sum paths       | built; the same as a loop over classes         |
| 4    | an npz whose unused member expands to 400 MB (predict, and the training reader)   | read: only the used arrays (peak < 100 MB)     |
| 4    | an .npy whose header claims 2 GB in a small file; an npz member the same          | one line, nothing allocated                    |
| 4    | an image over ``--max-image-mb``                                                  | one line naming the file                       |
| 4    | ``weights.pt`` a link to /dev/zero, a FIFO, a 17 GB sparse file; NaN weights      | one line, nothing read                         |
| 4    | ``model.json`` a FIFO; ``"version": "x"``; nested 100 000 deep                    | one line                                       |
| 5    | ``optim._target_=builtins.print``, ``scheduler.`` / ``logger._target_=builtins.print`` | one line: not an optimiser / schedule / logger |
| 5    | ``loss._target_=os.system`` (+loss.command=touch MARKER)                          | one line about what a loss must be, no marker  |
| 5    | ``dataset.name=${oc.env:SDNN_TEST_UNSET}``                                        | one line naming the variable                   |
| 5    | a 300-character folder name: hydra.run.dir, predict RUN_DIR, --output            | one line: File name too long                   |
| 5    | results.json cannot be written (disk full); and with nothing saved                | names results.json, says what was saved        |
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from sdnn import export as sdnn_export
from sdnn import predict as sdnn_predict
from sdnn.artifact import CARD, MODEL_DIR, WEIGHTS, ClassLevelModel, ModelCard, save_model
from sdnn.data.preprocess import Preprocess, Preprocessing
from sdnn.errors import ConfigError, DiskError
from tests.conftest import FAST, QUICK_GUARD, ROOT, RUN_GUARD, compose_config, run_cli

ARGS = ["model=mlp", "model.backbone.hidden=[16]", "observe.figures=false", "observe.norms_every=0",
        "trainer.max_epochs=1"]
PAYLOAD = "${{oc.create:{{_target_: builtins.open, _args_: [{marker}, w]}}}}"


def _config(cache: Path, *extra: str):
    return compose_config([*FAST, f"phase1.cache_dir={cache}", *ARGS, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SDNN on digits with a small MLP (S = 12 units): a run folder to copy, and its phase-1 cache."""
    from sdnn.app import run

    base = tmp_path_factory.mktemp("sharing")
    run(_config(base / "cache"), base / "run")
    np.savez(base / "digits.npz", x=_digits()[:40])
    return base


def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images  # the run's raw inputs: float (N, 8, 8), 0–16


def _copy(trained, tmp_path, name: str = "run") -> Path:
    run_dir = tmp_path / name
    shutil.copytree(trained / "run", run_dir)
    return run_dir


def _edit_card(run_dir: Path, change) -> None:
    path = run_dir / MODEL_DIR / CARD
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


@contextmanager
def _guard(seconds: int = QUICK_GUARD):
    """A hang guard for calls that would block on a FIFO if they opened it."""
    def stop(*_):
        raise TimeoutError("blocked")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def predict(args, capsys) -> tuple[int, str, str]:
    with _guard():
        try:
            code = sdnn_predict.main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def export(args, capsys) -> tuple[int, str]:
    with _guard():
        code = sdnn_export.main([str(a) for a in args])
    return code, capsys.readouterr().err


def predict_module(args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m sdnn.predict`` run in ``cwd`` (which ``-m`` puts on the import path)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "sdnn.predict", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=QUICK_GUARD, env=env, check=False)


def one_line(code, err, *words) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- 1: no code runs from a run folder

@pytest.mark.parametrize("payload", ["open", "pth"])
def test_an_interpolation_in_the_backbone_is_a_string_not_a_call(trained, tmp_path, capsys, payload):
    run_dir = _copy(trained, tmp_path)
    marker = tmp_path / ("marker" if payload == "open" else "evil.pth")
    text = (PAYLOAD.format(marker=marker) if payload == "open" else
            f"${{oc.create:{{_target_: pathlib.Path.write_text, _args_: [{marker}, 'import os']}}}}")
    _edit_card(run_dir, lambda card: card["backbone"].update(dropout=text, extra={"_target_": "torch.nn.ReLU"}))
    code, _, err = predict([run_dir, "--input", trained / "digits.npz", "--output", tmp_path / "p.csv"], capsys)
    one_line(code, err, "cannot rebuild the network")
    assert not marker.exists() and not (tmp_path / "p.csv").exists()


def test_an_interpolation_in_the_dataset_is_a_plain_name(trained, tmp_path, capsys):
    run_dir, marker = _copy(trained, tmp_path), tmp_path / "marker"
    _edit_card(run_dir, lambda card: card["config"]["dataset"].update(name=PAYLOAD.format(marker=marker)))
    code, out, err = predict([run_dir, "--split", "test", "--quiet"], capsys)
    assert code == 0 and "the same" in out, err
    assert not marker.exists()


@pytest.mark.parametrize("where, target, words", [
    ("augment", "builtins.open", ["dataset.augment._target_=builtins.open", "not allowed in a model card"]),
    ("top", "builtins.open", ["dataset._target_=builtins.open", "not allowed in a model card"]),
    ("top", "sdnn.artifact.save_model", ["dataset._target_=sdnn.artifact.save_model", "not a dataset class"]),
    ("top", "sdnn.data.sources.torch.utils.data.TensorDataset", ["is defined in torch.utils.data.dataset, outside"]),
])
def test_a_target_in_the_cards_dataset_is_refused_before_split_runs_anything(trained, tmp_path, capsys, where,
                                                                             target, words):
    run_dir, marker = _copy(trained, tmp_path), tmp_path / "marker"
    node = {"_target_": target, "_args_": [str(marker), "w"]}
    if where == "augment":
        _edit_card(run_dir, lambda card: card["config"]["dataset"].update(augment=node))
    else:
        _edit_card(run_dir, lambda card: card["config"]["dataset"].update(_target_=target))
    code, _, err = predict([run_dir, "--split", "test"], capsys)
    one_line(code, err, *words)
    assert not marker.exists()


def _plant(folder: Path, name: str, marker: Path) -> None:
    (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                       "import torch\nclass Net(torch.nn.Module):\n    pass\n")


def test_a_module_planted_in_the_run_folder_never_runs(trained, tmp_path):
    run_dir, marker = _copy(trained, tmp_path), tmp_path / "marker"
    _plant(run_dir, "evilnet", marker)
    _edit_card(run_dir, lambda card: card["backbone"].update(_target_="evilnet.Net"))
    inputs = ["--input", trained / "digits.npz", "--output", tmp_path / "p.csv"]
    proc = predict_module([".", *inputs], cwd=run_dir)
    one_line(proc.returncode, proc.stderr, "model.backbone._target_=evilnet.Net", "not allowed", "--trust evilnet")
    _edit_card(run_dir, lambda card: card["backbone"].update(_target_="run.evilnet.Net"))
    proc = predict_module(["run", *inputs], cwd=tmp_path)  # from the parent: run/ is a namespace package
    one_line(proc.returncode, proc.stderr, "run.evilnet.Net", "not allowed")
    _edit_card(run_dir, lambda card: card["backbone"].update(_target_="evilnet.Net"))
    proc = predict_module([".", *inputs, "--trust", "evilnet"], cwd=run_dir)
    one_line(proc.returncode, proc.stderr, "cannot import evilnet", "not installed")
    proc = predict_module(["run", *inputs, "--trust", "evilnet"], cwd=tmp_path,
                          env={"PYTHONPATH": f"{ROOT}{os.pathsep}{run_dir}"})
    one_line(proc.returncode, proc.stderr, "would be imported from the run folder")
    assert not marker.exists() and not (tmp_path / "p.csv").exists()
    _edit_card(run_dir, lambda card: card["backbone"].update(_target_="sdnn.models.MLP"))
    _plant(run_dir, "numpy", marker)  # python -m puts the current folder first on the import path
    proc = predict_module([".", "--split", "test", "--quiet"], cwd=run_dir)
    assert proc.returncode == 0 and "the same" in proc.stdout, proc.stderr
    assert not marker.exists()


def test_a_target_outside_the_allow_list_is_not_even_imported(trained, tmp_path):
    """`this` prints the Zen of Python when imported, `antigravity` opens a web browser; `subprocess` and `os`
    (imported by Python and torch anyway) are refused all the same. One process tries them all."""
    run_dir = _copy(trained, tmp_path)
    code = f"""
import contextlib, io, json, sys, sdnn.predict
card = {str(run_dir / MODEL_DIR / CARD)!r}
for target in ["this.Net", "antigravity.Net", "subprocess.Popen", "os.system"]:
    payload = json.loads(open(card).read())
    payload["backbone"]["_target_"] = target
    open(card, "w").write(json.dumps(payload))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = sdnn.predict.main([{str(run_dir)!r}, "--split", "test"])
    print(json.dumps([target, status, err.getvalue(), target.split(".")[0] in sys.modules]))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=QUICK_GUARD, check=False)
    assert proc.returncode == 0 and "Beautiful is better" not in proc.stdout + proc.stderr, proc.stderr
    tried = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [t[0] for t in tried] == ["this.Net", "antigravity.Net", "subprocess.Popen", "os.system"]
    for target, status, err, imported in tried:
        one_line(status, err, f"model.backbone._target_={target}", "not allowed in a model card")
        assert not imported or target.split(".")[0] in ("subprocess", "os")


def _user_package(folder: Path) -> Path:
    package = folder / "usernets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import math\nfrom torch import nn\n\n"
        "class TinyNet(nn.Module):\n"
        "    def __init__(self, input_shape, width=6):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU())\n"
        "        self.out_features = width\n\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n")
    return folder


def test_a_users_own_backbone_needs_trust(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(_user_package(tmp_path / "src")))
    from usernets import TinyNet  # the user's package, on the path like an installed one

    spec = Preprocessing.from_json(json.loads((trained / "run" / MODEL_DIR / CARD).read_text())["preprocessing"])
    torch.manual_seed(0)
    body, head = TinyNet(spec.input_shape), torch.nn.Linear(6, 10)
    weights = {**{f"backbone.{k}": v for k, v in body.state_dict().items()},
               **{f"head.{k}": v for k, v in head.state_dict().items()}}
    card = ModelCard(method="baseline", dataset="digits", model="custom", seed=0, num_classes=10, multilabel=False,
                     class_names=[str(i) for i in range(10)], subclass_to_class=list(range(10)), score="sigmoid",
                     preprocessing=spec, backbone={"_target_": "usernets.TinyNet", "width": 6}, eval_batch_size=16)
    run_dir = tmp_path / "custom"
    save_model(run_dir, card, weights)
    out = tmp_path / "p.csv"
    code, _, err = predict([run_dir, "--input", trained / "digits.npz", "--output", out], capsys)
    one_line(code, err, "usernets.TinyNet", "not allowed", "--trust usernets")
    code, _, err = predict([run_dir, "--input", trained / "digits.npz", "--output", out, "--trust", "usernets"],
                           capsys)
    assert code == 0 and out.is_file(), err
    with torch.no_grad():
        x = (torch.from_numpy(_digits()[:40]).float() / 16 - spec.mean[0]) / spec.std[0]
        expected = head(body(x.unsqueeze(1))).argmax(1)
    rows = list(csv.reader(out.open()))[1:]
    assert [int(r[1]) for r in rows] == expected.tolist()
    code = sdnn_export.main([str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "m.pt"),
                             "--trust", "usernets"])
    assert code == 0


def test_the_working_directory_of_split_is_not_on_the_import_path(tmp_path, monkeypatch):
    from sdnn.predict.sources import working_directory

    monkeypatch.syspath_prepend("")
    monkeypatch.syspath_prepend(".")
    with working_directory(tmp_path):
        assert Path.cwd() == tmp_path.resolve() and all(os.path.isabs(p) for p in sys.path)
    assert "" in sys.path and "." in sys.path


# ----------------------------------------------------------------------------- 2: outputs

def test_output_onto_a_fifo_a_device_or_a_folder_is_refused(trained, tmp_path, capsys):
    fifo, null = tmp_path / "fifo", tmp_path / "null"
    os.mkfifo(fifo)
    null.symlink_to(os.devnull)
    before = os.stat(os.devnull)
    for output, words in ((fifo, ["fifo", "not a regular file"]), (null, ["not a regular file"]),
                          (tmp_path, ["is a folder"])):
        code, _, err = predict([trained / "run", "--split", "test", "--output", output], capsys)
        one_line(code, err, *words)
        code, err = export([trained / "run", "--format", "torchscript", "--output", output], capsys)
        one_line(code, err, *words)
    assert fifo.is_fifo() and null.is_symlink() and os.stat(os.devnull).st_rdev == before.st_rdev
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "null"]  # no temporary file left


def test_output_dash_is_standard_output(trained, tmp_path, capsys):
    args = [trained / "run", "--input", trained / "digits.npz", "--quiet"]
    code, _, err = predict([*args, "--output", tmp_path / "p.csv"], capsys)
    assert code == 0, err
    code, out, err = predict([*args, "--output", "-"], capsys)
    assert code == 0 and "predictions:" not in out + err, err
    assert out.replace("\r\n", "\n") == (tmp_path / "p.csv").read_text().replace("\r\n", "\n")


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.startswith(".sdnn-run")}


def test_a_run_into_a_folder_of_other_files_needs_overwrite(trained, tmp_path):
    from sdnn.app import run

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    args = ["method=baseline", "checkpoint.every_n_epochs=0"]
    with pytest.raises(ConfigError) as err:
        run(_config(trained / "cache", *args), folder)
    assert "holds files that no run of this program wrote (notes.txt)" in str(err.value)
    assert "overwrite=true" in str(err.value) and "\n" not in str(err.value)
    assert _listing(folder) == {"notes.txt"}
    run(_config(trained / "cache", *args, "overwrite=true"), folder)
    assert (folder / "notes.txt").read_text() == "my notes" and (folder / "results.json").is_file()


def test_another_run_is_refused_and_overwrite_replaces_it(trained, tmp_path, capsys):
    from sdnn.app import run

    run_dir = _copy(trained, tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as err:
        run(_config(trained / "cache", "method=baseline"), run_dir)
    message = str(err.value)
    assert "holds another run (method: 'sdnn' → 'baseline')" in message and "overwrite=true" in message
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # nothing touched
    capsys.readouterr()
    run(_config(trained / "cache"), run_dir)  # the same configuration: complete, nothing trained
    assert "this run is complete" in capsys.readouterr().out
    run(_config(trained / "cache", "method=baseline", "overwrite=true"), run_dir)
    fresh = tmp_path / "fresh"
    run(_config(trained / "cache", "method=baseline"), fresh)
    assert _listing(run_dir) == _listing(fresh)  # no phase1/, phase2/, partition.npz of the sdnn run
    assert json.loads((run_dir / "results.json").read_text())["method"] == "baseline"


def test_an_empty_run_folder_is_one_line_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "hydra.run.dir="], cwd=tmp_path, capture_output=True,
                          text=True, timeout=QUICK_GUARD, env=env, check=False)
    one_line(proc.returncode, proc.stderr, "hydra.run.dir is empty", "hydra.run.dir=outputs/run1")
    assert list(tmp_path.iterdir()) == []


def test_a_second_process_into_the_same_folder_stops_at_once(tmp_path):
    run_dir, lock = tmp_path / "run", tmp_path / "run" / ".sdnn-run.lock"
    args = ["method=baseline", "model=mlp", "trainer.max_epochs=200", "observe.figures=false", "logger=none",
            f"phase1.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + RUN_GUARD  # a hang guard
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = run_cli([*args, "seed=1"], timeout=QUICK_GUARD)
        one_line(second.returncode, second.stderr, f"is in use by another run (pid {first.pid}")
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()
        first.wait(timeout=QUICK_GUARD)


def test_other_ranks_of_a_ddp_run_take_no_lock_and_check_nothing(tmp_path, monkeypatch):
    from sdnn.runfolder import IDENTITY, claimed

    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with claimed(tmp_path, {"seed": 0}):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="holds files that no run"), claimed(tmp_path, {"seed": 0}):
        pass
    assert not (tmp_path / IDENTITY).exists()


# ----------------------------------------------------------------------------- 3: values

@pytest.mark.parametrize("change, words", [
    ({"std": [0.0]}, ["std must be finite and > 0"]),
    ({"std": [-1.0]}, ["std must be finite and > 0"]),
    ({"divide": 0}, ["divide=0.0"]),
    ({"mean": [float("nan")]}, ["mean holds NaN"]),
    ({"mean": [0.1, 0.2], "std": [1.0, 1.0]}, ["mean and std need 1 value(s) each"]),
    ({"shape": [-3, 8]}, ["shape [-3, 8]"]),
    ({"shape": [10**6, 10**6]}, ["more than"]),
])
def test_impossible_preprocessing_constants_are_refused(trained, tmp_path, capsys, change, words):
    run_dir = _copy(trained, tmp_path)
    _edit_card(run_dir, lambda card: card["preprocessing"].update(change))
    code, _, err = predict([run_dir, "--input", trained / "digits.npz", "--output", tmp_path / "p.csv"], capsys)
    one_line(code, err, "model.json", "preprocessing", *words)


def test_inputs_are_checked_finite_as_float32(trained, tmp_path, capsys):
    x = _digits()[:10].astype(np.float64)
    x[3, 2, 2] = 1e300  # finite in float64, infinite once cast to the model's float32
    np.savez(tmp_path / "big.npz", x=x)
    code, _, err = predict([trained / "run", "--input", tmp_path / "big.npz", "--output", tmp_path / "p.csv"], capsys)
    one_line(code, err, "big.npz['x']", "NaN or Inf", "float32")


def _image_run(folder: Path, names: list[str]) -> Path:
    spec = Preprocessing("uint8", "nhwc", (8, 8, 3), divide=255.0)
    torch.manual_seed(0)
    from sdnn.models import SmallCNN

    body = SmallCNN((3, 8, 8), channels=(4,), hidden=8)
    head = torch.nn.Linear(body.out_features, len(names))
    weights = {**{f"backbone.{k}": v for k, v in body.state_dict().items()},
               **{f"head.{k}": v for k, v in head.state_dict().items()}}
    card = ModelCard(method="baseline", dataset="fake", model="cnn", seed=0, num_classes=len(names), multilabel=False,
                     class_names=names, subclass_to_class=list(range(len(names))), score="softmax",
                     preprocessing=spec, backbone={"_target_": "sdnn.models.SmallCNN", "channels": [4], "hidden": 8},
                     eval_batch_size=8)
    save_model(folder, card, weights)
    return folder


def test_formula_like_names_are_escaped_in_the_csv(tmp_path, capsys):
    from PIL import Image

    names = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", 'a,"b"']
    run_dir = _image_run(tmp_path / "run", names)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("=cmd.png", "plain.png"):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / name)
    x = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", x=x)
    out = tmp_path / "p.csv"
    code, _, err = predict([run_dir, "--input", tmp_path / "x.npz", "--output", out, "--top-k", "5"], capsys)
    assert code == 0, err
    raw = out.read_text()
    _, *rows = list(csv.reader(io.StringIO(raw)))
    cells = {cell for row in rows for cell in row[1:] if not cell.replace(".", "").replace("e-", "").isdigit()}
    assert cells == {"'" + n if n[0] in "=+-@" else n for n in names}
    for name in names[:4]:
        assert f"\"'{name[0]}" in raw and f",{name[0]}" not in raw  # quoted, with the ' first
    code, _, err = predict([run_dir, "--input", images, "--output", out], capsys)
    assert code == 0, err
    _, *rows = list(csv.reader(out.open()))
    assert sorted(r[1] for r in rows) == ["'=cmd.png", "plain.png"]


@pytest.mark.parametrize("change, words", [
    (lambda c: c.update(num_classes=3_000_000, class_names=[], subclass_to_class=list(range(3_000_000))),
     ["a size of 3000000", "weights hold only"]),
    (lambda c: c["backbone"].update(hidden=[10**9]), ["a size of 1000000000", "weights hold only"]),
    (lambda c: c.update(eval_batch_size=0), ["eval_batch_size=0"]),
    (lambda c: c.update(subclass_to_class=[1, 0, *c["subclass_to_class"][2:]]), ["subclass_to_class must list"]),
    (lambda c: c["backbone"].update(hidden=[17]), ["do not fit the backbone", "backbone.net.1.weight"]),
])
def test_sizes_in_the_card_are_bounded_by_the_weights(trained, tmp_path, capsys, change, words):
    run_dir = _copy(trained, tmp_path)
    _edit_card(run_dir, change)
    code, _, err = predict([run_dir, "--split", "test"], capsys)
    one_line(code, err, *words)


def test_a_claimed_size_is_refused_before_it_is_allocated(trained, tmp_path, capsys):
    run_dir = _copy(trained, tmp_path)
    _edit_card(run_dir, lambda c: c["backbone"].update(hidden=[10**9]))
    peak = _peak(lambda: predict([run_dir, "--split", "test"], capsys))
    assert peak < 100 * 2**20  # a 64 × 10⁹ first layer would be 256 GB


def _loop_class_level(units: torch.Tensor, s2c: list[int], c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class's max logit and summed softmax probability, one class at a time."""
    probabilities = torch.softmax(units, 1)
    owner = torch.tensor(s2c)
    logits = torch.stack([units[:, owner == k].max(1).values for k in range(c)], 1)
    sums = torch.stack([probabilities[:, owner == k].sum(1) for k in range(c)], 1)
    return logits, sums


def test_the_class_map_is_linear_and_every_path_agrees_with_a_loop():
    c, rng = 7, np.random.default_rng(3)
    s2c = list(range(c)) + sorted(rng.integers(0, c, 9).tolist())
    spec = Preprocessing("float", "nf", (4,))
    units = torch.randn(5, len(s2c), generator=torch.Generator().manual_seed(0))
    logits, sums = _loop_class_level(units, s2c, c)
    net = ClassLevelModel(Preprocess(spec), torch.nn.Identity(), torch.nn.Identity(), torch.tensor(s2c), c, "softmax")
    assert net.padded and net.dense
    for padded, dense in ((True, True), (False, False)):
        net.padded, net.dense = padded, dense
        got = net.class_logits(units)
        assert torch.equal(got, logits)
        torch.testing.assert_close(net.scores(units, got), sums)
    code = ("import torch; from sdnn.artifact import ClassLevelModel; from sdnn.data.preprocess import Preprocess, "
            "Preprocessing; c = 200_000; s2c = torch.cat([torch.arange(c), torch.arange(0, c, 2)]); "
            "net = ClassLevelModel(Preprocess(Preprocessing('float', 'nf', (4,))), torch.nn.Identity(), "
            "torch.nn.Identity(), s2c, c, 'softmax'); print(net.padded, net.dense, tuple(net.class_units.shape))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=QUICK_GUARD, cwd=ROOT,
                          check=False)
    assert proc.stdout.split() == ["True", "False", "(200000,", "2)"], proc.stderr  # no (S, c) matrix, no loop


# ----------------------------------------------------------------------------- 4: reads are bounded

def _bomb(path: Path, arrays: dict[str, np.ndarray], big: str = "unused", mb: int = 400) -> Path:
    """An npz with ``arrays`` and a deflated member ``big`` of ``mb`` MB of zeros (about 0.4 MB on disk)."""
    np.savez(path, **arrays)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (mb * 2**18,)})
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open(f"{big}.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = bytes(2**20)
        for _ in range(mb):
            member.write(chunk)
    return path


def _peak(action) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_only_the_arrays_used_are_read(trained, tmp_path, capsys):
    from sdnn.data.npz import load_npz_splits

    bomb = _bomb(tmp_path / "bomb.npz", {"x": _digits()[:40]})
    assert bomb.stat().st_size < 5 * 2**20
    out = tmp_path / "p.csv"
    peak = _peak(lambda: predict([trained / "run", "--input", bomb, "--output", out, "--quiet"], capsys))
    assert out.is_file() and peak < 100 * 2**20
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(30, 4)).astype(np.float32), "y_train": np.arange(30) % 3,
              "x_test": rng.normal(size=(9, 4)).astype(np.float32), "y_test": np.arange(9) % 3}
    bomb = _bomb(tmp_path / "train.npz", arrays)
    peak = _peak(lambda: load_npz_splits(str(bomb)))
    assert peak < 100 * 2**20


def test_a_header_that_claims_more_than_the_file_holds(trained, tmp_path, capsys):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**29, 1)})
    npy = tmp_path / "claims.npy"
    npy.write_bytes(header.getvalue() + bytes(1000))
    out = tmp_path / "p.csv"
    peak = _peak(lambda: predict([trained / "run", "--input", npy, "--output", out], capsys))
    assert peak < 100 * 2**20
    code, _, err = predict([trained / "run", "--input", npy, "--output", out], capsys)
    one_line(code, err, "claims.npy", "header says (536870912, 1) float32", "truncated or damaged")
    npz = tmp_path / "claims.npz"
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(1000))
    code, _, err = predict([trained / "run", "--input", npz, "--output", out], capsys)
    one_line(code, err, "claims.npz['x']", "header says", "truncated or damaged")
    assert not out.exists()


def test_an_image_over_the_size_cap_is_not_read(tmp_path, capsys):
    from PIL import Image

    run_dir = _image_run(tmp_path / "run", ["a", "b"])
    images = tmp_path / "images"
    images.mkdir()
    big = images / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 0.005 * 2**20
    code, _, err = predict([run_dir, "--input", images, "--output", tmp_path / "p.csv", "--max-image-mb", "0.005"],
                           capsys)
    one_line(code, err, "big.png", "more than --max-image-mb=0.005")


@pytest.mark.parametrize("fault", ["dev_zero", "fifo", "sparse_17gb", "nan"])
def test_weights_that_are_not_a_file_of_weights_are_not_read(trained, tmp_path, capsys, fault):
    run_dir = _copy(trained, tmp_path)
    weights = run_dir / MODEL_DIR / WEIGHTS
    words = ["weights.pt", "not a regular file"]
    if fault == "nan":
        state = torch.load(weights, weights_only=True)
        state["head.bias"][0] = float("nan")
        torch.save(state, weights)
        import hashlib

        _edit_card(run_dir, lambda card: card["weights"].update(sha256=hashlib.sha256(weights.read_bytes()).hexdigest()))
        words = ["head.bias holds NaN or infinite values"]
    else:
        weights.unlink()
        if fault == "dev_zero":
            weights.symlink_to("/dev/zero")
        elif fault == "fifo":
            os.mkfifo(weights)
        else:
            with open(weights, "wb") as handle:
                handle.truncate(17 * 2**30)  # sparse: no disk used
            words = ["weights.pt", "more than 16384 MB"]
    code, _, err = predict([run_dir, "--split", "test"], capsys)
    one_line(code, err, *words)


@pytest.mark.parametrize("fault, words", [
    ("fifo", ["model.json", "not a regular file"]),
    ("version", ['"version": "x" is not a card version']),
    ("nested", ["not a readable model card", "RecursionError"]),
])
def test_a_card_that_is_not_a_card_is_one_line(trained, tmp_path, capsys, fault, words):
    run_dir = _copy(trained, tmp_path)
    card = run_dir / MODEL_DIR / CARD
    if fault == "fifo":
        card.unlink()
        os.mkfifo(card)
    elif fault == "version":
        _edit_card(run_dir, lambda c: c.update(version="x"))
    else:
        text = card.read_text().rstrip()
        card.write_text(text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, _, err = predict([run_dir, "--split", "test"], capsys)
    one_line(code, err, *words)


# ----------------------------------------------------------------------------- 5: the configuration surface

@pytest.mark.parametrize("override, words", [
    ("optim._target_=builtins.print", ["optim._target_=builtins.print is not an optimiser"]),
    ("scheduler._target_=builtins.print", ["scheduler._target_=builtins.print is not a learning-rate schedule"]),
    ("logger._target_=builtins.print", ["logger._target_=builtins.print is not a logger"]),
    ("loss._target_=os.system", ["loss._target_=os.system is not a loss: a torch.nn.Module class"]),
])
def test_a_group_target_must_build_the_right_kind_of_object(tmp_path, override, words):
    from sdnn.build import build_job

    cfg = compose_config([*FAST, *ARGS, override, f"+loss.command=touch {tmp_path / 'marker'}"]
                         if override.startswith("loss") else [*FAST, *ARGS, override])
    with pytest.raises(ConfigError) as err:
        build_job(cfg, tmp_path / "run")
    message = str(err.value)
    assert all(word in message for word in words) and "\n" not in message and "relabel" not in message
    assert not (tmp_path / "marker").exists()


def test_config_surface_through_the_cli(tmp_path):
    marker = tmp_path / "marker"
    proc = run_cli(["loss._target_=os.system", f"+loss.command=touch {marker}", f"hydra.run.dir={tmp_path / 'a'}"],
                   timeout=QUICK_GUARD)
    one_line(proc.returncode, proc.stderr, "is not a loss")
    assert not marker.exists()
    proc = run_cli(["dataset.name=${oc.env:SDNN_TEST_UNSET}", f"hydra.run.dir={tmp_path / 'b'}"], timeout=QUICK_GUARD)
    one_line(proc.returncode, proc.stderr, "dataset.name", "SDNN_TEST_UNSET")
    long = tmp_path / ("x" * 300)
    proc = run_cli([f"hydra.run.dir={long}"], timeout=QUICK_GUARD)
    one_line(proc.returncode, proc.stderr, "File name too long")


def test_a_300_character_name_in_predict_is_one_line(trained, tmp_path, capsys):
    long = tmp_path / ("x" * 300)
    code, _, err = predict([long, "--split", "test"], capsys)
    one_line(code, err, "File name too long")
    code, _, err = predict([trained / "run", "--split", "test", "--output", long / "p.csv"], capsys)
    one_line(code, err, "File name too long")


def test_a_full_disk_names_the_file_and_what_was_saved(trained, tmp_path, monkeypatch):
    import sdnn.cache
    from sdnn.app import run

    fsync = os.fsync

    def results_full(fd):  # the disk fills up as results.json is written: the OSError names no file
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".results.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(sdnn.cache.os, "fsync", results_full)
    args = ["method=baseline", "checkpoint.every_n_epochs=1"]
    with pytest.raises(DiskError) as err:
        run(_config(trained / "cache", *args), tmp_path / "kept")
    last = tmp_path / "kept" / "baseline" / "checkpoints" / "last.ckpt"
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message and "results.json" in message
    assert f"Saved: baseline — epoch 1 of 1, in {last}. Free space" in message
    assert "it resumes from what was saved" in message
    with pytest.raises(DiskError) as err:
        run(_config(trained / "cache", "method=baseline"), tmp_path / "none")  # FAST: no checkpoints
    message = str(err.value)
    assert "Nothing was saved (checkpoint.every_n_epochs=0)" in message and "it starts the run over" in message
    assert "checkpoint" not in message.split("Nothing was saved")[1].replace("checkpoint.every_n_epochs=0", "")


def test_a_write_that_fails_without_a_file_name_is_named(tmp_path, monkeypatch):
    import sdnn.cache

    def fsync(_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sdnn.cache.os, "fsync", fsync)
    with pytest.raises(OSError) as err:
        sdnn.cache.atomic_write_bytes(tmp_path / "results.json", b"{}")
    assert err.value.filename == str(tmp_path / "results.json") and err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_refused_command_leaves_the_runs_hydra_files_as_they_were(tmp_path):
    """Hydra would write .hydra/ before the run folder is checked; run.py writes it once the folder is the run's,
    so a command refused for another run's folder leaves that run's configuration files alone."""

    folder = tmp_path / "r"
    common = [*FAST, "model=mlp", f"hydra.run.dir={folder}", f"phase1.cache_dir={tmp_path / 'c'}"]
    assert run_cli([*common, "method=baseline"]).returncode == 0
    hydra = {p.name: p.read_bytes() for p in (folder / ".hydra").iterdir()}
    assert set(hydra) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert b"- method=baseline" in hydra["overrides.yaml"] and b"method: baseline" in hydra["config.yaml"]
    proc = run_cli([*common, "method=sdnn"], timeout=QUICK_GUARD)
    one_line(proc.returncode, proc.stderr, "holds another run")
    assert {p.name: p.read_bytes() for p in (folder / ".hydra").iterdir()} == hydra
