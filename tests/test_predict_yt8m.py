"""A multilabel run's model (synthetic YouTube-8M shards): model/ records the per-video L2
normalisation, python -m sdnn.predict writes each video's top-k classes from shards or from raw
feature arrays and re-evaluates the four metrics exactly, and the ONNX and TorchScript exports rank the
classes as sdnn.predict does. One SDNN run with two split classes is trained for the module."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
import torch

from sdnn import export as sdnn_export
from sdnn import predict as sdnn_predict
from sdnn.artifact import load_model
from sdnn.data.tfrecord import decode_example, read_records
from sdnn.data.yt8m_synth import write_synthetic_shards
from tests.conftest import FAST, compose_config

CLASSES = 12
METRICS = ("hit_at_1", "perr", "map", "gap")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from sdnn.app import run as run_job

    base = tmp_path_factory.mktemp("yt8m_model")
    shards = base / "shards"
    write_synthetic_shards(shards, classes=CLASSES, train_shards=2, validate_shards=1, videos_per_shard=120, seed=1)
    cfg = compose_config([*FAST, "dataset=yt8m", f"dataset.train={shards}/train*.tfrecord",
                          f"dataset.validate={shards}/validate*.tfrecord", f"dataset.num_classes={CLASSES}",
                          "dataset.features=rgb_audio", "dataset.batch_size=32", "dataset.num_workers=0", "model=lr",
                          "optim=adam", "optim.lr=0.01", "scheduler=exponential", "subclass.classes=[0,3]",
                          "observe.figures=false", f"phase1.cache_dir={base / 'cache'}"])
    results = run_job(cfg, base / "run").to_json()
    return base, shards, base / "run", results


def predict(args, capsys):
    code = sdnn_predict.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def raw_features(shards) -> tuple[np.ndarray, np.ndarray]:
    """The validate videos' mean_rgb and mean_audio as stored (not normalised), in file order."""
    examples = [decode_example(data) for _, data in read_records(next(shards.glob("validate*.tfrecord")))]
    return np.stack([e["mean_rgb"] for e in examples]), np.stack([e["mean_audio"] for e in examples])


def top_k(path, k):
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    head, rows = rows[0], rows[1:]
    first = head.index("class_1")
    classes = np.array([[int(c) for c in r[first::2][:k]] for r in rows])
    scores = np.array([[float(s) for s in r[first + 1::2][:k]] for r in rows])
    return head, rows, classes, scores


def test_multilabel_model_card(run):
    _, _, run_dir, results = run
    card = load_model(run_dir).card
    assert card.multilabel and card.score == "sigmoid" and card.num_classes == CLASSES
    assert card.subclass_to_class == results["subclass_to_class"] and len(card.subclass_to_class) == CLASSES + 2
    prep = card.preprocessing
    assert (prep.kind, prep.layout, prep.shape, prep.l2_normalize, prep.mean) == ("float", "nf", (1152,), True, None)


def test_split_test_gives_the_four_metrics_of_results_json(run, capsys):
    _, _, run_dir, results = run
    out = predict([run_dir, "--split", "test", "--quiet"], capsys)
    for key in METRICS:
        assert f"{key} {results['test'][key]!r}" in out
    assert "the same" in out and "videos 120" in out


def test_shards_and_raw_feature_arrays_give_the_same_top_k(run, capsys, tmp_path):
    _, shards, run_dir, results = run
    out = predict([run_dir, "--input", f"{shards}/validate*.tfrecord", "--output", tmp_path / "shards.csv", "--quiet"],
                  capsys)
    for key in METRICS:  # the shards carry labels: the four metrics, as the run computed them
        assert f"{key} {results['test'][key]!r}" in out
    head, rows, classes, scores = top_k(tmp_path / "shards.csv", CLASSES)
    assert head[:2] == ["index", "id"] and len(head) == 2 + 2 * CLASSES  # default top-20 is all 12 classes
    assert len(rows) == 120 and rows[0][1] == f"{240:08x}"  # validate ids follow the training videos'
    assert (np.diff(scores, axis=1) <= 0).all() and ((0 < scores) & (scores < 1)).all()

    rgb, audio = raw_features(shards)
    np.savez(tmp_path / "raw.npz", mean_rgb=rgb, mean_audio=audio)
    np.savez(tmp_path / "x.npz", x=np.concatenate([rgb, audio], 1))
    predict([run_dir, "--input", tmp_path / "raw.npz", "--top-k", "5", "--output", tmp_path / "raw.csv", "--quiet"],
            capsys)
    predict([run_dir, "--input", tmp_path / "x.npz", "--top-k", "5", "--output", tmp_path / "x.csv", "--quiet"], capsys)
    head, _, raw_classes, raw_scores = top_k(tmp_path / "raw.csv", 5)
    assert head == ["index"] + [f"{c}_{r}" for r in range(1, 6) for c in ("class", "score")]
    assert (top_k(tmp_path / "x.csv", 5)[2] == raw_classes).all()
    # the model L2-normalises the raw features itself: the same ranking as the shards' path
    np.testing.assert_array_equal(raw_classes, classes[:, :5])
    np.testing.assert_allclose(raw_scores, scores[:, :5], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exports_rank_classes_as_sdnn_predict(run, fmt, capsys, tmp_path):
    if fmt == "onnx" and any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")):
        pytest.skip("the export extra is not installed")
    _, shards, run_dir, _ = run
    rgb, audio = raw_features(shards)
    x = np.concatenate([rgb, audio], 1)
    np.savez(tmp_path / "x.npz", x=x)
    predict([run_dir, "--input", tmp_path / "x.npz", "--top-k", "5", "--output", tmp_path / "p.csv", "--quiet"],
            capsys)
    _, _, classes, scores = top_k(tmp_path / "p.csv", 5)
    path = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert sdnn_export.main([str(run_dir), "--format", fmt, "--output", str(path)]) == 0
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        metadata = json.loads(session.get_modelmeta().custom_metadata_map["sdnn"])
        assert metadata["preprocessing"]["l2_normalize"] is True
        logits, got = session.run(None, {"input": x})
    else:
        with torch.no_grad():
            logits, got = (t.numpy() for t in torch.jit.load(str(path))(torch.from_numpy(x)))
    assert logits.shape == got.shape == (120, CLASSES)
    order = np.argsort(-got, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(order, classes)
    np.testing.assert_allclose(np.take_along_axis(got, order, 1), scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
