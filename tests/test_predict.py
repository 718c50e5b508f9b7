"""Using a finished run's model (SPEC §7b): model/ in every run folder, python -m sdnn.predict on raw
inputs, image folders and the run's own split, python -m sdnn.export to ONNX (run by ONNX Runtime) and
TorchScript, and every bad input as a one-line error that writes nothing.

Two tiny npz runs are trained once for the module: SDNN with two split classes on uint8 NHWC images
(S = c + 2 units: the class-level max over subclasses is exercised; the preprocessing inside the
model transposes, scales by 1/255 and standardises), and a softmax baseline on float vectors."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdnn import export as sdnn_export
from sdnn import predict as sdnn_predict
from sdnn.artifact import CARD, MODEL_DIR, WEIGHTS, load_model
from sdnn.errors import DataError
from tests.conftest import FAST, QUICK_GUARD, ROOT, compose_config

CLASSES = 3
needs_onnx = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")),
                                reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")


def hard_npz(path: Path, kind: str, seed: int = 0) -> Path:
    """Overlapping classes (noise as large as the spread of the class centres), so the accuracy is far
    from 1 and a changed prediction would change it; each class is a union of two modes."""
    rng = np.random.default_rng(seed)
    shape = {"nhwc": (8, 8, 3), "vectors": (20,)}[kind]
    modes = rng.normal(0, 1.0, size=(CLASSES, 2, *shape))

    def make(n):
        y = np.arange(n) % CLASSES
        x = modes[y, rng.integers(0, 2, n)] + rng.normal(0, 1.6, size=(n, *shape))
        if kind == "nhwc":
            x = np.clip(128 + 40 * x, 0, 255).astype(np.uint8)
        return x.astype(np.uint8 if kind == "nhwc" else np.float32), y.astype(np.int64)

    arrays = {}
    for split, n in (("train", 240), ("test", 150)):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = make(n)
    np.savez(path, **arrays)
    return path


def train(run_dir: Path, cache: Path, overrides: list[str]) -> dict:
    from sdnn.app import run

    cfg = compose_config([*FAST, f"phase1.cache_dir={cache}", "observe.figures=false", "observe.norms_every=0",
                          *overrides])
    return run(cfg, run_dir).to_json()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("use_model")
    images, vectors = hard_npz(base / "images.npz", "nhwc"), hard_npz(base / "vectors.npz", "vectors", seed=1)
    sdnn = train(base / "sdnn", base / "cache", ["dataset=npz", f"dataset.path={images}", "dataset.batch_size=16",
                                                 "model=cnn", "model.backbone.channels=[8]", "model.backbone.hidden=16",
                                                 "subclass.classes=[0,2]", "trainer.max_epochs=3"])
    baseline = train(base / "baseline", base / "cache", ["dataset=npz", f"dataset.path={vectors}", "method=baseline",
                                                         "loss=ce", "model=mlp", "model.backbone.hidden=[32]",
                                                         "dataset.batch_size=16"])
    return {"base": base, "images": images, "vectors": vectors, "sdnn": (base / "sdnn", sdnn),
            "baseline": (base / "baseline", baseline)}


def predict(args: list[str], capsys) -> tuple[int, str, str]:
    """python -m sdnn.predict in this process (the CLI's own function); (status, stdout, stderr)."""
    try:
        code = sdnn_predict.main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def float32_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Correct / total as torchmetrics computes it (float32), which results.json stores."""
    return float(np.float32((pred == truth).sum()) / np.float32(len(truth)))


# ----------------------------------------------------------------------------- model/

@pytest.mark.parametrize("which", ["sdnn", "baseline"])
def test_every_run_keeps_a_self_contained_model(runs, which):
    run_dir, results = runs[which]
    card = json.loads((run_dir / MODEL_DIR / CARD).read_text())
    state = torch.load(run_dir / MODEL_DIR / WEIGHTS, weights_only=True)  # plain tensors: no code to run
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert {k.split(".")[0] for k in state} == {"backbone", "head"}
    assert card["subclass_to_class"] == results["subclass_to_class"] and card["num_classes"] == CLASSES
    assert card["method"] == which and card["multilabel"] is False
    assert card["backbone"] == results["config"]["model"]["backbone"] and card["config"] == results["config"]
    assert state["head.weight"].shape[0] == len(card["subclass_to_class"])
    prep = card["preprocessing"]
    if which == "sdnn":
        assert len(results["subclass_to_class"]) == CLASSES + 2  # two split classes
        assert (card["score"], prep["kind"], prep["layout"], prep["shape"], prep["divide"], prep["standardize"]) == \
            ("sigmoid", "uint8", "nhwc", [8, 8, 3], 255.0, "loaded")
        assert card["input_shape"] == [3, 8, 8] and len(prep["mean"]) == len(prep["std"]) == 3
    else:
        assert (card["score"], prep["kind"], prep["layout"], prep["shape"], prep["divide"]) == \
            ("softmax", "float", "nf", [20], 1.0)
        assert len(prep["mean"]) == 20


def test_preprocessing_of_digits_and_of_uint8_images_kept_as_uint8():
    """Digits: raw inputs are scikit-learn's images (0-16); CIFAR-style uint8 data: the device-side
    multiply-add. Both give the network's training inputs bit for bit."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sdnn.data.batch_augment import InputPipeline
    from sdnn.data.preprocess import Preprocess
    from sdnn.data.sources import Digits
    from sdnn.data.tensors import TensorSplits, standardize

    loaded = Digits(name="digits").load()
    bunch = load_digits()
    _, raw_test = train_test_split(bunch.images, test_size=0.3, random_state=0, stratify=bunch.target)
    assert raw_test.dtype == np.float64 and raw_test.max() == 16
    assert torch.equal(Preprocess(loaded.preprocessing)(torch.from_numpy(raw_test)), loaded.x_test)

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (20, 3, 5, 5), dtype=np.uint8))
    splits = standardize(TensorSplits(x[:12], torch.zeros(12, dtype=torch.long), x[12:], torch.zeros(8, dtype=torch.long),
                                      num_classes=1))
    assert splits.x_test.dtype == torch.uint8 and splits.preprocessing.standardize == "device"
    network_input = InputPipeline(None, splits.norm_mean, splits.norm_std).normalize(splits.x_test)
    assert torch.equal(Preprocess(splits.preprocessing)(splits.x_test), network_input)


# ----------------------------------------------------------------------------- sdnn.predict

@pytest.mark.parametrize("which", ["sdnn", "baseline"])
def test_preprocessing_from_raw_inputs_is_bit_identical_to_the_training_path(runs, which):
    """The card's preprocessing (transpose, 1/255, standardise) applied to the file's raw arrays gives
    exactly the tensors the run tested on (read again through the dataset's own loader)."""
    from sdnn.data.sources import Npz

    run_dir, results = runs[which]
    source = runs["images" if which == "sdnn" else "vectors"]
    loaded = Npz(path=str(source), name="npz").load()
    model = load_model(run_dir)
    assert loaded.preprocessing == model.card.preprocessing
    raw = torch.from_numpy(np.load(source)["x_test"])
    assert torch.equal(model.net.preprocess(raw), loaded.x_test)



@pytest.mark.parametrize("which", ["sdnn", "baseline"])
def test_predict_on_the_runs_own_test_inputs_gives_its_test_accuracy(runs, which, capsys, tmp_path):
    run_dir, results = runs[which]
    data = np.load(runs["images" if which == "sdnn" else "vectors"])
    out = tmp_path / "pred.csv"
    code, stdout, _ = predict([run_dir, "--input", runs["images" if which == "sdnn" else "vectors"], "--key", "x_test",
                               "--labels", "y_test", "--output", out, "--quiet"], capsys)
    assert code == 0
    head, rows = read_csv(out)
    assert head == ["index", "class", "score"]  # npz runs have no class names
    assert [int(r[0]) for r in rows] == list(range(len(data["y_test"])))
    pred = np.array([int(r[1]) for r in rows])
    acc = results["test"]["acc"]
    assert 0.4 < acc < 1.0  # far from trivial: a changed prediction would show
    assert float32_accuracy(pred, data["y_test"]) == acc
    assert f"acc {acc!r}" in stdout
    scores = np.array([float(r[2]) for r in rows])
    assert ((0 <= scores) & (scores <= 1)).all()
    # the score is the predicted class's: sigmoid of its max unit logit (sdnn), softmax probability (baseline)
    model = load_model(run_dir)
    x = torch.from_numpy(data["x_test"][:8])
    with torch.no_grad():
        units = model.net.unit_logits(x)
    if which == "sdnn":
        s2c = torch.tensor(results["subclass_to_class"])
        expected = torch.stack([torch.sigmoid(units[i, s2c == int(pred[i])].max()) for i in range(8)])
    else:
        expected = torch.softmax(units, 1)[torch.arange(8), torch.from_numpy(pred[:8])]
    np.testing.assert_allclose(scores[:8], expected.numpy(), rtol=1e-6)


def test_split_test_prints_the_accuracy_of_results_json(runs):
    """The real command line, in a fresh process, from another folder."""
    run_dir, results = runs["sdnn"]
    proc = subprocess.run([sys.executable, "-m", "sdnn.predict", str(run_dir), "--split", "test"], cwd=runs["base"],
                          capture_output=True, text=True, timeout=QUICK_GUARD,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    acc = results["test"]["acc"]
    assert f"acc {acc!r}" in proc.stdout and "the same" in proc.stdout, proc.stdout


def test_split_test_of_the_baseline_and_its_missing_val_split(runs, capsys, tmp_path):
    run_dir, results = runs["baseline"]
    code, stdout, _ = predict([run_dir, "--split", "test", "--output", tmp_path / "t.csv", "--quiet"], capsys)
    assert code == 0 and f"acc {results['test']['acc']!r}" in stdout and "the same" in stdout
    assert len(read_csv(tmp_path / "t.csv")[1]) == 150
    code, _, err = predict([run_dir, "--split", "val"], capsys)
    assert code == 2 and "no validation split" in err and len(err.strip().splitlines()) == 1


def test_features_are_the_backbones_of_the_runs_own_validation_and_test_splits(runs, capsys, tmp_path):
    """--features: the penultimate features; the run's own head on them predicts what --split test predicts."""
    import torch

    run_dir = tmp_path / "with_val"
    train(run_dir, runs["base"] / "cache", ["dataset=npz", f"dataset.path={runs['vectors']}", "method=baseline",
                                            "model=mlp", "model.backbone.hidden=[32]", "dataset.batch_size=16",
                                            "dataset.val_fraction=0.25"])
    code, stdout, err = predict([run_dir, "--features", tmp_path / "f.npz"], capsys)
    assert code == 0, err
    features = np.load(tmp_path / "f.npz")
    vectors = np.load(runs["vectors"])
    assert features["x_test"].shape == (len(vectors["y_test"]), 32)
    assert features["x_train"].shape[1] == 32 and 0 < len(features["y_train"]) < len(vectors["y_train"])
    assert np.array_equal(features["y_test"], vectors["y_test"])
    weights = torch.load(run_dir / "model" / "weights.pt", weights_only=True)
    logits = features["x_test"] @ weights["head.weight"].numpy().T + weights["head.bias"].numpy()
    code, _, _ = predict([run_dir, "--split", "test", "--output", tmp_path / "t.csv", "--quiet"], capsys)
    assert code == 0 and [int(r[1]) for r in read_csv(tmp_path / "t.csv")[1]] == logits.argmax(1).tolist()
    code, _, err = predict([runs["baseline"][0], "--features", tmp_path / "g.npz"], capsys)
    assert code == 2 and "dataset.val_fraction" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.npz").exists()


def test_progress_on_a_non_terminal_is_plain_lines_and_quiet_silences_it(runs, capsys, tmp_path):
    """stderr is not a terminal here: a line per tenth of the inputs, then one at the end; none with --quiet
    or for an input of fewer than 4 batches."""
    run_dir, _ = runs["baseline"]
    arrays = np.load(runs["vectors"])
    np.savez(tmp_path / "x.npz", x=arrays["x_test"])  # 150 inputs
    code, _, err = predict([run_dir, "--input", tmp_path / "x.npz", "--output", tmp_path / "p.csv",
                            "--batch-size", "10"], capsys)
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) >= 5, err
    percents = [int(line.split(": ")[1].split("%")[0]) for line in lines[:-1]]
    assert all(line.startswith("predicting x.npz: ") and "inputs/s" in line for line in lines), err
    assert percents == sorted(percents) and len(set(percents)) == len(percents) and 0 < percents[0] <= 20 and percents[-1] < 100
    assert lines[-1].startswith("predicting x.npz: done, 150 inputs")
    for quiet in (["--quiet"], ["--batch-size", "50"]):
        code, _, err = predict([run_dir, "--input", tmp_path / "x.npz", "--output", tmp_path / "q.csv", *quiet],
                               capsys)
        assert code == 0 and err == ""


def test_top_k_rows_and_other_layouts_of_the_same_images(runs, capsys, tmp_path):
    run_dir, _ = runs["sdnn"]
    x = np.load(runs["images"])["x_test"][:10]
    np.savez(tmp_path / "nchw.npz", x=x.transpose(0, 3, 1, 2))   # the other channel order is accepted too
    np.save(tmp_path / "nhwc.npy", x)
    for source in (tmp_path / "nchw.npz", tmp_path / "nhwc.npy"):
        code, _, err = predict([run_dir, "--input", source, "--output", tmp_path / f"{source.stem}.csv",
                                "--top-k", "3", "--batch-size", "4", "--quiet"], capsys)
        assert code == 0, err
    head, a = read_csv(tmp_path / "nchw.csv")
    assert head == ["index", "class_1", "score_1", "class_2", "score_2", "class_3", "score_3"]
    assert a == read_csv(tmp_path / "nhwc.csv")[1]
    for row in a:
        assert sorted(int(c) for c in row[1::2]) == [0, 1, 2]
        scores = [float(s) for s in row[2::2]]
        assert scores == sorted(scores, reverse=True)


def test_image_folder_input_png_and_jpeg(runs, capsys, tmp_path):
    from PIL import Image

    run_dir, _ = runs["sdnn"]
    data = np.load(runs["images"])
    x, y = data["x_test"][:12], data["y_test"][:12]
    tree = tmp_path / "tree"
    for i, (image, label) in enumerate(zip(x, y)):
        (tree / str(label)).mkdir(parents=True, exist_ok=True)  # folder names are the run's class names
        Image.fromarray(image).save(tree / str(label) / f"{i:02d}.png")
    code, stdout, err = predict([run_dir, "--input", tree, "--output", tmp_path / "tree.csv", "--quiet"], capsys)
    assert code == 0, err
    head, rows = read_csv(tmp_path / "tree.csv")
    assert head == ["index", "file", "class", "score"]
    np.savez(tmp_path / "same.npz", x=x)
    predict([run_dir, "--input", tmp_path / "same.npz", "--output", tmp_path / "same.csv", "--quiet"], capsys)
    by_file = {r[1]: r[2:] for r in rows}
    same = read_csv(tmp_path / "same.csv")[1]
    for i, label in enumerate(y):
        assert by_file[f"{label}/{i:02d}.png"] == same[i][1:]  # lossless PNG: the very same predictions
    accuracy = float32_accuracy(np.array([int(r[1]) for r in same]), y)
    assert f"acc {accuracy!r}" in stdout  # the folders named the classes: labels

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(x[i]).save(flat / f"{i}.jpg", quality=90)
    Image.fromarray(np.zeros((11, 9, 3), np.uint8)).save(flat / "z_other_size.png")  # resized to 8×8
    code, stdout, err = predict([run_dir, "--input", flat, "--output", tmp_path / "flat.csv", "--quiet"], capsys)
    assert code == 0, err
    head, rows = read_csv(tmp_path / "flat.csv")
    assert [r[1] for r in rows] == ["0.jpg", "1.jpg", "2.jpg", "z_other_size.png"] and "acc" not in stdout


# ----------------------------------------------------------------------------- sdnn.export

def _predicted(run_dir: Path, source: Path, capsys, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    out = tmp_path / f"{run_dir.name}.csv"
    code, _, err = predict([run_dir, "--input", source, "--key", "x_test", "--output", out, "--quiet"], capsys)
    assert code == 0, err
    rows = read_csv(out)[1]
    return np.array([int(r[1]) for r in rows]), np.array([float(r[2]) for r in rows])


@needs_onnx
@pytest.mark.parametrize("which", ["sdnn", "baseline"])
def test_onnx_runtime_predicts_as_sdnn_predict(runs, which, capsys, tmp_path):
    import onnxruntime

    run_dir, _ = runs[which]
    source = runs["images" if which == "sdnn" else "vectors"]
    code = sdnn_export.main([str(run_dir), "--format", "onnx", "--output", str(tmp_path / "m.onnx")])
    assert code == 0
    assert "checked against PyTorch" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits", "scores"]
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["sdnn"])
    assert metadata["subclass_to_class"] == load_model(run_dir).card.subclass_to_class
    x = np.load(source)["x_test"]  # raw: uint8 NHWC images / float vectors, preprocessing is inside
    logits, scores = session.run(None, {"input": x})
    assert logits.shape == scores.shape == (len(x), CLASSES)
    classes, expected_scores = _predicted(run_dir, source, capsys, tmp_path)
    np.testing.assert_array_equal(logits.argmax(1), classes)
    np.testing.assert_allclose(scores[np.arange(len(x)), classes], expected_scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["sdnn", "baseline"])
def test_torchscript_predicts_as_sdnn_predict(runs, which, capsys, tmp_path):
    run_dir, _ = runs[which]
    source = runs["images" if which == "sdnn" else "vectors"]
    assert sdnn_export.main([str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "m.pt")]) == 0
    extra = {"sdnn.json": ""}
    module = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["sdnn.json"])["num_classes"] == CLASSES
    x = torch.from_numpy(np.load(source)["x_test"])
    with torch.no_grad():
        logits, scores = module(x)
    classes, expected_scores = _predicted(run_dir, source, capsys, tmp_path)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), classes)
    np.testing.assert_allclose(scores[torch.arange(len(x)), torch.from_numpy(classes)].numpy(), expected_scores,
                               rtol=1e-5, atol=1e-6)


def test_an_export_that_disagrees_is_an_error_and_writes_nothing(runs, capsys, tmp_path, monkeypatch):
    """The check is real: a TorchScript module that computes something else is refused."""
    run_dir, _ = runs["baseline"]
    real = sdnn_export.export_torchscript

    def tampered(model, path, example):
        with torch.no_grad():
            model.net.head.bias.add_(5.0 * torch.arange(CLASSES))  # the file gets other weights
        real(model, path, example)
        with torch.no_grad():
            model.net.head.bias.sub_(5.0 * torch.arange(CLASSES))

    monkeypatch.setattr(sdnn_export, "export_torchscript", tampered)
    code = sdnn_export.main([str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "export check failed" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def fake_run(folder: Path, preprocessing, backbone: dict, subclass_to_class: list[int], score: str) -> Path:
    """A run folder holding only model/ (seeded untrained weights): the export paths without training."""
    from torch import nn

    from sdnn.artifact import ModelCard, build_backbone, save_model

    torch.manual_seed(0)
    body = build_backbone(backbone, preprocessing.input_shape)
    head = nn.Linear(body.out_features, len(subclass_to_class))
    weights = {**{f"backbone.{k}": v for k, v in body.state_dict().items()},
               **{f"head.{k}": v for k, v in head.state_dict().items()}}
    c = max(subclass_to_class) + 1
    card = ModelCard(method="sdnn", dataset="fake", model="fake", seed=0, num_classes=c, multilabel=False,
                     class_names=[f"c{i}" for i in range(c)], subclass_to_class=subclass_to_class, score=score,
                     preprocessing=preprocessing, backbone=backbone, eval_batch_size=8)
    save_model(folder, card, weights)
    return folder


FAKES = {
    # CIFAR / image folders: uint8 (N, 3, H, W) kept as uint8, normalised on the device (multiply-add)
    "uint8_nchw_device": (dict(kind="uint8", layout="nchw", shape=(3, 6, 6), mean=(120.0, 130.0, 125.0),
                               std=(50.0, 60.0, 55.0), standardize="device"),
                          {"_target_": "sdnn.models.SmallCNN", "channels": [4], "hidden": 8}, [0, 1, 2, 1], "sigmoid"),
    # digits-like: float gray (N, H, W) / 16, standardised when loaded; a softmax loss; class 0 in 3 units
    "float_nhw_loaded": (dict(kind="float", layout="nhw", shape=(8, 8), divide=16.0, mean=(0.3,), std=(0.4,),
                              standardize="loaded"),
                         {"_target_": "sdnn.models.MLP", "hidden": [8]}, [0, 1, 2, 0, 0], "softmax"),
}


@pytest.mark.parametrize("name", sorted(FAKES))
def test_class_level_model_and_its_exports_on_other_preprocessings(name, tmp_path):
    """The max over each class's units (uneven subclass counts), sigmoid or summed-softmax scores, and the
    uint8 device-side normalisation and the gray float layout, through ONNX Runtime and TorchScript."""
    from sdnn.data.preprocess import Preprocessing

    spec, backbone, s2c, score = FAKES[name]
    run_dir = fake_run(tmp_path / "run", Preprocessing(**spec), backbone, s2c, score)
    model = load_model(run_dir)
    x = sdnn_export.example_inputs(model, 7, seed=5)
    assert x.dtype == (torch.uint8 if spec["kind"] == "uint8" else torch.float32) and x.shape[1:] == spec["shape"]
    with torch.no_grad():
        units = model.net.unit_logits(x)
        logits, scores = model.net(x)
    unit_class = torch.tensor(s2c)
    expected = torch.stack([units[:, unit_class == k].max(1).values for k in range(len(set(s2c)))], 1)
    assert torch.equal(logits, expected)
    if score == "sigmoid":
        assert torch.equal(scores, torch.sigmoid(expected))
    else:
        probabilities = torch.softmax(units, 1)
        summed = torch.stack([probabilities[:, unit_class == k].sum(1) for k in range(len(set(s2c)))], 1)
        torch.testing.assert_close(scores, summed)
    assert sdnn_export.main([str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "m.pt")]) == 0
    with torch.no_grad():
        got = torch.jit.load(str(tmp_path / "m.pt"))(x)
    torch.testing.assert_close(got[0], logits, rtol=1e-5, atol=1e-6)
    if all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")):
        import onnxruntime

        assert sdnn_export.main([str(run_dir), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]) == 0
        session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        onnx_logits, onnx_scores = session.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(onnx_logits, logits.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(onnx_scores, scores.numpy(), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def other_methods(runs):
    """reweight and class2str on the vectors, sharing one phase 1 (the cache)."""
    base = runs["base"]
    common = ["dataset=npz", f"dataset.path={runs['vectors']}", "model=mlp", "model.backbone.hidden=[32]",
              "dataset.batch_size=16", "subclass.num_classes_to_repartition=1"]
    return {method: (base / method, train(base / method, base / "cache", [*common, f"method={method}"]))
            for method in ("reweight", "class2str")}


@pytest.mark.parametrize("method", ["reweight", "class2str"])
def test_other_methods_keep_their_model_too(other_methods, runs, method, capsys, tmp_path):
    """The writer is generic: reweight's linear head (eq. 3 with weights) and Class2Str's latent-hierarchy
    classifier (its own head, rebuilt from the card) predict and export like the others."""
    run_dir, results = other_methods[method]
    card = load_model(run_dir).card
    assert card.method == method and card.subclass_to_class == [0, 1, 2]
    if method == "class2str":
        assert card.head["_target_"] == "sdnn.class2str.LatentHierarchyClassifier" and card.score == "softmax"
        assert card.head["code_length"] == 2 and card.head["in_features"] == 32
    else:
        assert card.head is None and card.score == "sigmoid"
    code, stdout, _ = predict([run_dir, "--split", "test", "--quiet"], capsys)
    assert code == 0 and f"acc {results['test']['acc']!r}" in stdout and "the same" in stdout
    classes, scores = _predicted(run_dir, runs["vectors"], capsys, tmp_path)
    assert sdnn_export.main([str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "m.pt")]) == 0
    with torch.no_grad():
        logits, exported = torch.jit.load(str(tmp_path / "m.pt"))(torch.from_numpy(np.load(runs["vectors"])["x_test"]))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), classes)
    np.testing.assert_allclose(exported[torch.arange(len(classes)), torch.from_numpy(classes)].numpy(), scores,
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- bad input

def _one_line_error(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_bad_inputs_are_one_line_errors_that_write_nothing(runs, capsys, tmp_path):
    run_dir, _ = runs["sdnn"]
    x = np.load(runs["images"])["x_test"]
    np.savez(tmp_path / "wrong_shape.npz", x=x[:, :6])
    np.savez(tmp_path / "wrong_dtype.npz", x=x.astype(np.float32))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    (tmp_path / "notes.txt").write_text("hello")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "p.csv"
    no_model = tmp_path / "unfinished"
    no_model.mkdir()
    cases = [
        ([no_model, "--input", runs["images"], "--key", "x_test", "--output", out], ["no finished model", "model.json"]),
        ([tmp_path / "nowhere", "--split", "test"], ["no such run folder"]),
        ([run_dir, "--input", tmp_path / "wrong_shape.npz", "--output", out], ["wrong_shape.npz['x']", "(6, 8, 3)",
                                                                                "(8, 8, 3)"]),
        ([run_dir, "--input", tmp_path / "wrong_dtype.npz", "--output", out], ["wrong_dtype.npz['x']", "float32",
                                                                                "uint8"]),
        ([run_dir, "--input", runs["images"], "--key", "pixels", "--output", out], ["no array 'pixels'",
                                                                                     "x_test, x_train"]),
        ([run_dir, "--input", tmp_path / "two.npz", "--output", out], ["two.npz", "--key", "a, b"]),
        ([run_dir, "--input", runs["images"], "--key", "x_test", "--labels", "nope", "--output", out], ["'nope'"]),
        ([run_dir, "--input", tmp_path / "garbage.npz", "--output", out], ["garbage.npz", "not a readable"]),
        ([run_dir, "--input", tmp_path / "notes.txt", "--output", out], ["notes.txt", ".npz"]),
        ([run_dir, "--input", tmp_path / "missing.npz", "--output", out], ["missing.npz", "no such file"]),
        ([run_dir, "--input", runs["images"], "--key", "x_test", "--output", tmp_path / "no" / "p.csv"],
         ["cannot write", "does not exist"]),
        ([run_dir, "--input", runs["images"], "--key", "x_test", "--output", out_dir], ["is a folder"]),
        ([run_dir, "--input", runs["images"], "--key", "x_test"], ["--output"]),
        ([run_dir, "--input", runs["images"], "--split", "test"], ["not allowed with"]),
        ([run_dir, "--split", "train"], ["invalid choice"]),
        ([run_dir, "--input", runs["images"], "--key", "x_test", "--output", out, "--device", "tpu"],
         ["invalid choice"]),
    ]
    for args, words in cases:
        code, _, err = predict(args, capsys)
        _one_line_error(code, err, *words)
        assert list(out_dir.iterdir()) == [], args  # no CSV, no temporary file

    for args, words in [([run_dir, "--format", "tflite", "--output", out], ["invalid choice", "tflite"]),
                        ([no_model, "--format", "onnx", "--output", out], ["no finished model"]),
                        ([run_dir, "--format", "torchscript", "--output", tmp_path / "no" / "m.pt"],
                         ["cannot write", "does not exist"])]:
        try:
            code = sdnn_export.main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
        _one_line_error(code, capsys.readouterr().err, *words)
        assert list(out_dir.iterdir()) == [], args

    # a damaged or replaced weights file, and a damaged card
    broken = tmp_path / "broken"
    shutil.copytree(run_dir / MODEL_DIR, broken / MODEL_DIR)
    (broken / MODEL_DIR / WEIGHTS).write_bytes(b"\x80\x02not weights")
    code, _, err = predict([broken, "--input", runs["images"], "--key", "x_test", "--output", out], capsys)
    _one_line_error(code, err, "weights.pt", "checksum")
    (broken / MODEL_DIR / CARD).write_text("{not json")
    code, _, err = predict([broken, "--split", "test"], capsys)
    _one_line_error(code, err, "model.json", "not a readable model card")
    assert list(out_dir.iterdir()) == []


def test_a_run_made_with_save_model_false_says_so_in_one_line(runs, capsys, tmp_path):
    """checkpoint.save_model=false: no model/ and results.json's config says so; predict and export name the
    override. Without that config value a missing model/ keeps the usual message."""
    run_dir, _ = runs["sdnn"]
    kept_none = tmp_path / "kept_none"
    shutil.copytree(run_dir, kept_none)
    shutil.rmtree(kept_none / MODEL_DIR)
    results = json.loads((kept_none / "results.json").read_text())
    assert results["config"]["checkpoint"].get("save_model", True) is not False
    results["config"]["checkpoint"]["save_model"] = False
    (kept_none / "results.json").write_text(json.dumps(results))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    why = ["kept_none: this run kept no model", "checkpoint.save_model=false", "without that override"]
    for args in ([kept_none, "--input", runs["images"], "--key", "x_test", "--output", out_dir / "p.csv"],
                 [kept_none, "--split", "test"]):
        code, _, err = predict(args, capsys)
        _one_line_error(code, err, *why)
    code = sdnn_export.main([str(kept_none), "--format", "torchscript", "--output", str(out_dir / "m.pt")])
    _one_line_error(code, capsys.readouterr().err, *why)
    assert list(out_dir.iterdir()) == []

    results["config"]["checkpoint"]["save_model"] = True  # model/ lost some other way: the usual message
    (kept_none / "results.json").write_text(json.dumps(results))
    code, _, err = predict([kept_none, "--split", "test"], capsys)
    _one_line_error(code, err, "no finished model", "model.json")
    assert "save_model" not in err


def test_float_runs_take_integer_arrays_but_not_uint8(runs, capsys, tmp_path):
    """As the npz reader: integers are converted to float32; uint8 would have been divided by 255."""
    run_dir, _ = runs["baseline"]
    x = np.load(runs["vectors"])["x_test"]
    np.savez(tmp_path / "ints.npz", x=np.round(3 * x).astype(np.int32))
    code, _, err = predict([run_dir, "--input", tmp_path / "ints.npz", "--output", tmp_path / "i.csv", "--quiet"],
                           capsys)
    assert code == 0, err
    np.savez(tmp_path / "bytes.npz", x=np.clip(x, 0, 255).astype(np.uint8))
    code, _, err = predict([run_dir, "--input", tmp_path / "bytes.npz", "--output", tmp_path / "b.csv"], capsys)
    _one_line_error(code, err, "bytes.npz['x']", "uint8")
    assert not (tmp_path / "b.csv").exists()


def test_predict_and_export_import_neither_lightning_nor_hydra():
    code = "import sdnn.predict, sdnn.export, sdnn.artifact, sys; print(','.join(sorted(sys.modules)))"
    loaded = {m.split(".")[0] for m in subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                                       text=True, check=True, timeout=QUICK_GUARD
                                                       ).stdout.strip().split(",")}
    assert not loaded & {"pytorch_lightning", "lightning", "lightning_fabric", "hydra"}


@pytest.mark.parametrize("target", ["subprocess.Popen", "os.system", "builtins.print", "sdnn.artifact.build_part"])
def test_a_card_naming_anything_but_a_network_class_is_refused_before_any_call(target):
    """A model card is a file: its _target_ may name nn.Module classes only, never a function to call."""
    from sdnn.artifact import build_part

    for node in ({"_target_": target, "args": ["true"]},
                 {"_target_": "sdnn.models.MLP", "hidden": [8], "extra": {"_target_": target, "args": ["true"]}}):
        with pytest.raises(DataError, match="not allowed in a model card|not a torch.nn.Module class"):
            build_part(node, "model.backbone", input_shape=(4,))
