"""dataset=yt8m end to end: Algorithm 1 over the stream, the subclass recipe keyed by video id,
the multilabel metrics of a trained module, the CLI (phase 1 over a fraction of an epoch, phase 2,
the four metrics), damaged shards, bad options and DDP."""

from __future__ import annotations

from functools import partial

import json
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from sdnn.data.tensors import TensorSplits
from sdnn.data.yt8m import YT8MData, YT8MStream
from sdnn.data.yt8m_synth import write_synthetic_shards
from sdnn.lit import SDNNModule
from sdnn.lit.streams import StreamEpochs
from sdnn.losses import SigmoidCrossEntropy
from sdnn.metrics import gap, hit_at_one, mean_ap, perr
from sdnn.models import build_backbone
from sdnn.augment import Extrapolation
from sdnn.partition import MedianDistanceSplit, StreamingMedianSplit
from sdnn.repartition import VideoSubclasses, stream_repartition
from sdnn.subclass import build_subclass_to_class
from tests.conftest import FAST, QUICK_GUARD, TWO_CORES, read_results, run_cli

CLASSES = 12


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yt8m")
    write_synthetic_shards(folder, classes=CLASSES, train_shards=3, validate_shards=1, videos_per_shard=120, seed=1)
    return folder


def yt8m_args(folder, *extra):
    return ["dataset=yt8m", f"dataset.train={folder}/train*.tfrecord", f"dataset.validate={folder}/validate*.tfrecord",
            f"dataset.num_classes={CLASSES}", "dataset.batch_size=32", "dataset.num_workers=0", "model=lr",
            "optim=adam", "optim.lr=0.01", "scheduler=exponential", "scheduler.gamma=0.95",
            "partitioner=median_split", "augmenter=extrapolation", "subclass.num_classes_to_repartition=3",
            "observe.figures=false", "observe.norms_every=0", *extra]


def all_videos(folder, features="rgb_audio"):
    """Every training video in file order: inputs (N, F), label lists, ids."""
    stream = YT8MStream(sorted(folder.glob("train*.tfrecord")), batch_size=1000, features=features, train=False,
                        num_classes=CLASSES, with_ids=True)
    xs, ys, ids = zip(*stream)
    return torch.cat(xs).numpy(), torch.cat(ys).numpy(), [i for part in ids for i in part]


# ----------------------------------------------------------------------------- Algorithm 1 over pairs

def test_streaming_split_of_multilabel_pairs_equals_sorting_each_class():
    rng = np.random.default_rng(0)
    n, c = 230, 6
    x = rng.normal(size=(n, 5))
    y = (rng.random((n, c)) < 0.3).astype(np.float32)
    y[:, 4] = 0  # a class with no observation
    split = StreamingMedianSplit(2)
    bounds = [0, 17, 90, 91, 160, n]
    for a, b in zip(bounds, bounds[1:]):
        split.add_to_mean(x[a:b])
    for a, b in zip(bounds, bounds[1:]):
        split.add_distances(x[a:b], y[a:b], [1, 4, 3], keys=np.arange(a, b), originals=-x[a:b])
    result = split.split()
    mean = x.mean(0)
    for cls in (1, 3):
        members = [k for k in range(n) if y[k, cls] > 0]
        d = [math.dist(x[k], mean) for k in members]
        ranked = sorted(range(len(members)), key=lambda i: (-d[i], i))
        expected = [0] * len(members)
        for position, i in enumerate(ranked):
            expected[i] = 0 if position < len(members) // 2 else 1
        assert result[cls]["subclass"].tolist() == expected
        assert result[cls]["keys"].tolist() == members
        far = members[max(range(len(members)), key=lambda i: (d[i], -i))]
        near = members[min(range(len(members)), key=lambda i: (d[i], i))]
        np.testing.assert_array_equal(result[cls]["farthest"], -x[far])  # the originals, not the chunk rows
        np.testing.assert_array_equal(result[cls]["closest"], -x[near])
    assert result[4]["subclass"].size == 0 and result[4]["farthest"] is None


def test_stream_repartition_follows_algorithm_1_with_the_mean_of_all_videos(shards):
    x, y, ids = all_videos(shards)
    data = YT8MData(train=f"{shards}/train*.tfrecord", validate=f"{shards}/validate*.tfrecord",
                    features="rgb_audio", num_classes=CLASSES, batch_size=50, num_workers=0)

    def batches():
        stream = data.stream("train", train=False, with_ids=True)
        yield from stream

    classes = [2, 5, 7]
    rep = stream_repartition(batches, classes, 2, MedianDistanceSplit(), Extrapolation(0.5), lambda v: v, seed=0,
                             num_classes=CLASSES, priority=[7, 2, 5])
    mean = x.astype(np.float64).mean(0)
    lookup = dict(zip(zip(rep.ids.tolist(), rep.pair_class.tolist()), rep.pair_subclass.tolist()))
    for slot, cls in enumerate(classes):
        members = [k for k in range(len(x)) if y[k, cls] > 0]
        d = np.array([np.linalg.norm(x[k].astype(np.float64) - mean) for k in members])
        far_half = {members[i] for i in np.argsort(-d, kind="stable")[: len(members) // 2]}
        for k in members:
            assert lookup[(ids[k], cls)] == (0 if k in far_half else 1)
        np.testing.assert_array_equal(rep.farthest[slot], x[members[int(np.argmax(d))]])
        np.testing.assert_array_equal(rep.closest[slot], x[members[int(np.argmin(d))]])
    assert len(lookup) == int(y[:, classes].sum())
    assert rep.priority.tolist() == [1, 2, 0]  # class 7 first, then 2, then 5


# ----------------------------------------------------------------------------- the recipe, batch by batch

def reference_batch(rep: VideoSubclasses, x, labels, ids):
    """SPEC §3/§4 written out per video: targets over S units and one eq. 12 copy per video with a
    selected label (anchor of its most neglected selected class)."""
    c = rep.num_classes
    s2c = build_subclass_to_class(c, rep.subclasses_per_class()).tolist()
    subs = dict(zip(zip(rep.ids.tolist(), rep.pair_class.tolist()), rep.pair_subclass.tolist()))
    rank = dict(zip(rep.classes, rep.priority.tolist()))
    rows, targets, copies, copy_targets = [], [], [], []
    for b in range(len(x)):
        t = [0.0] * len(s2c)
        for cls in labels[b]:
            cls = int(cls)
            j = subs[(ids[b], cls)] if cls in rep.classes else 0
            units = [u for u in range(len(s2c)) if s2c[u] == cls]  # the class's own unit first, then its extra units
            t[units[j]] = 1.0
        rows.append(x[b])
        targets.append(t)
        chosen = sorted((rank[int(cls)], int(cls)) for cls in labels[b] if int(cls) in rep.classes)
        if chosen and rep.augmenter == "extrapolation":
            cls = chosen[0][1]
            slot = rep.classes.index(cls)
            anchor = rep.farthest[slot] if subs[(ids[b], cls)] == 0 else rep.closest[slot]
            copies.append(rep.lam * (x[b] - anchor) + x[b])
            copy_targets.append(t)
    return np.array(rows + copies, dtype=np.float32), np.array(targets + copy_targets, dtype=np.float32)


@pytest.mark.parametrize("h, augmenter", [(2, "extrapolation"), (3, "extrapolation"), (2, "none")])
def test_recipe_batches_equal_the_per_video_reference(h, augmenter):
    rng = np.random.default_rng(h)
    c, f, n = 9, 4, 40
    labels = [np.sort(rng.choice(c, size=rng.integers(1, 4), replace=False)) for _ in range(n)]
    ids = [f"v{i:03d}" for i in range(n)]
    classes = [1, 4, 6]
    pairs = [(ids[b], cls) for b in range(n) for cls in labels[b] if cls in classes]
    rep = VideoSubclasses(classes=classes, n_subclasses=h, augmenter=augmenter, lam=0.5, num_classes=c,
                          ids=np.array([p[0] for p in pairs]), pair_class=np.array([p[1] for p in pairs]),
                          pair_subclass=rng.integers(0, h, size=len(pairs)),
                          farthest=rng.normal(size=(3, f)).astype(np.float32),
                          closest=rng.normal(size=(3, f)).astype(np.float32), priority=np.array([2, 0, 1]))
    x = rng.normal(size=(n, f)).astype(np.float32)
    rows = np.repeat(np.arange(n), [len(v) for v in labels])
    cols = np.concatenate(labels)
    got_x, got_t = rep.batch(x, rows, cols, ids)
    want_x, want_t = reference_batch(rep, x, labels, ids)
    np.testing.assert_allclose(got_x.numpy(), want_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got_t.numpy(), want_t)
    if augmenter == "extrapolation":
        assert len(got_x) == n + sum(any(cl in classes for cl in v) for v in labels)
    round_trip = VideoSubclasses.from_arrays(rep.to_arrays())
    np.testing.assert_array_equal(round_trip.batch(x, rows, cols, ids)[1].numpy(), want_t)


def test_a_video_missing_from_the_recipe_is_a_clear_error():
    rep = VideoSubclasses(classes=[1], n_subclasses=2, augmenter="none", lam=0.5, num_classes=3,
                          ids=np.array(["a"]), pair_class=np.array([1]), pair_subclass=np.array([1]),
                          farthest=np.zeros((1, 2), np.float32), closest=np.zeros((1, 2), np.float32),
                          priority=np.array([0]))
    with pytest.raises(Exception, match="'b' of selected class 1 has no subclass.*phase1.use_cache=false"):
        rep.batch(np.zeros((2, 2), np.float32), np.array([0, 1]), np.array([1, 1]), ["a", "b"])


# ----------------------------------------------------------------------------- metrics of a trained module

def test_module_metrics_over_a_stream_equal_the_metric_functions_on_all_scores(shards):
    """Hit@1, PERR, mAP, GAP@20 accumulated batch by batch equal the functions applied to every
    validate video's class scores (max over subclasses) at once."""
    torch.manual_seed(0)
    backbone = build_backbone({"name": "lr"}, (1024,))
    s2c = build_subclass_to_class(CLASSES, {3: 2, 8: 3})
    module = SDNNModule(backbone, SigmoidCrossEntropy(), s2c, CLASSES, partial(torch.optim.SGD, lr=0.1),
                        multilabel=True)
    stream = YT8MStream(sorted(shards.glob("validate*.tfrecord")), batch_size=25, train=False, num_classes=CLASSES)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         callbacks=[StreamEpochs([], [stream])])
    trainer.test(module, torch.utils.data.DataLoader(stream, batch_size=None), verbose=False)
    got = module.test_results
    x, y = (torch.cat(t) for t in zip(*YT8MStream(sorted(shards.glob("validate*.tfrecord")), 1000, train=False,
                                                    num_classes=CLASSES)))
    with torch.no_grad():
        units = torch.sigmoid(module(x)[1])
    scores = torch.stack([units[:, [u for u in range(len(s2c)) if s2c[u] == i]].max(1).values
                          for i in range(CLASSES)], 1)  # per class, the max over its units
    assert got["videos"] == len(x) == 120
    assert got["hit_at_1"] == pytest.approx(hit_at_one(scores, y), abs=1e-9)
    assert got["perr"] == pytest.approx(perr(scores, y), abs=1e-9)
    assert got["map"] == pytest.approx(mean_ap(scores, y), abs=1e-6)
    assert got["gap"] == pytest.approx(gap(scores, y), abs=1e-6)


def test_stream_epochs_places_streams_and_restores_the_epoch_on_resume(shards):
    train = YT8MStream(sorted(shards.glob("train*.tfrecord")), 32, num_classes=CLASSES)
    callback = StreamEpochs([train], [])

    class Trainer:
        global_rank, world_size, current_epoch = 1, 3, 4

    callback.setup(Trainer, None, "fit")
    assert train.placement == (1, 3) and train.num_batches() == 360 // (3 * 32)
    callback.on_train_epoch_start(Trainer, None)
    assert train.epoch == 4
    callback.on_train_epoch_end(Trainer, None)
    state = callback.state_dict()
    resumed = YT8MStream(sorted(shards.glob("train*.tfrecord")), 32, num_classes=CLASSES)
    StreamEpochs([resumed], []).load_state_dict(state)
    assert resumed.epoch == 5  # a checkpoint written at the end of epoch 4 resumes at epoch 5


# ----------------------------------------------------------------------------- the CLI

def test_cli_yt8m_sdnn_end_to_end(shards, tmp_path):
    """Phase 1 over half an epoch, θ for every class, Algorithm 1 over the stream, extrapolation,
    phase 2 with S = c + 3 units, the four metrics over all validate videos, the recipe on disk."""
    run_dir = tmp_path / "run"
    proc = run_cli([*FAST, *yt8m_args(shards, "phase1.epochs=0.5", "dataset.features=rgb_audio",
                                      "dataset.num_workers=2"),
                    f"hydra.run.dir={run_dir}", f"phase1.cache_dir={tmp_path / 'cache'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run_dir)
    assert results["dataset"] == "yt8m" and results["method"] == "sdnn"
    assert set(results["test"]) == {"hit_at_1", "perr", "map", "gap", "videos"}
    assert results["test"]["videos"] == 120
    assert all(0 < results["test"][k] <= 1 for k in ("hit_at_1", "perr", "map", "gap"))
    theta = results["theta"]
    assert len(theta) == CLASSES and len(results["selected_classes"]) == 3
    ranked = sorted((t, i) for i, t in enumerate(theta) if t is not None)
    assert sorted(i for _, i in ranked[-3:]) == results["selected_classes"]
    history = results["theta_history"]
    steps_per_epoch = 360 // 32
    assert len(history) == 1 and history[0]["steps"] == math.ceil(0.5 * steps_per_epoch)  # half an epoch
    assert len(results["subclass_to_class"]) == CLASSES + 3
    recipe = np.load(run_dir / "partition.npz")
    x, y, ids = all_videos(shards)
    for cls in results["selected_classes"]:
        members = {ids[k] for k in range(len(ids)) if y[k, cls] > 0}
        assert set(recipe["ids"][recipe["pair_class"] == cls].tolist()) == members  # keyed by video id
        sizes = results["subclass_sizes"][str(cls)]
        assert sizes == [len(members) // 2, len(members) - len(members) // 2]
    assert "GAP@20" in proc.stdout and "results:" in proc.stdout
    # the same command again: phase 1 and the partition come from the cache
    proc = run_cli([*FAST, *yt8m_args(shards, "phase1.epochs=0.5", "dataset.features=rgb_audio",
                                      "dataset.num_workers=2", "trainer.max_epochs=1"),
                    f"hydra.run.dir={tmp_path / 'again'}", f"phase1.cache_dir={tmp_path / 'cache'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipping phase-1 training" in proc.stdout and "reusing cached subclasses" in proc.stdout


def _damage(path):
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # a data byte of the first record (its framing stays intact)
    path.write_bytes(bytes(data))


def test_cli_yt8m_baseline_with_a_damaged_record_errors_or_skips_and_counts(shards, tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for p in shards.glob("*.tfrecord"):
        (folder / p.name).write_bytes(p.read_bytes())
    _damage(folder / "train0001.tfrecord")
    # read by a DataLoader worker: our one line, not torch's "Caught DataError in DataLoader worker process 0" + traceback
    proc = run_cli([*FAST, *yt8m_args(folder, "method=baseline", "dataset.num_workers=1"),
                    f"hydra.run.dir={tmp_path / 'e'}"])
    assert proc.returncode == 2
    assert "train0001.tfrecord" in proc.stderr and "byte offset" in proc.stderr and "on_corrupt=skip" in proc.stderr
    assert "Traceback" not in proc.stderr and "worker process" not in proc.stderr
    assert [line.startswith("error: ") for line in proc.stderr.strip().splitlines()] == [True]
    assert not (tmp_path / "e" / "results.json").exists()
    proc = run_cli([*FAST, *yt8m_args(folder, "method=baseline", "dataset.on_corrupt=skip", "dataset.num_workers=2",
                                      "dataset.max_eval_videos=50"), f"hydra.run.dir={tmp_path / 's'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path / "s")
    assert results["method"] == "baseline" and results["subclass_to_class"] == list(range(CLASSES))
    assert results["test"]["videos"] == 50  # dataset.max_eval_videos
    skipped = results["data_skipped"]
    assert skipped["count"] == 1 and "train0001.tfrecord" in skipped["items"][0]  # once, though read every epoch
    assert "1 damaged" in proc.stdout


@pytest.mark.parametrize("override, key", [
    (["partitioner=kmeans"], "partitioner=kmeans"),
    (["augmenter=sample_pairing"], "augmenter=sample_pairing"),
    (["loss=ce"], "loss=ce"),
    (["dataset.features=audio"], "dataset.features"),
    (["dataset.max_videos=0"], "dataset.max_videos"),
    (["model=vgg16"], "model=vgg16"),
])
def test_cli_yt8m_bad_options_fail_before_work(shards, tmp_path, override, key):
    proc = run_cli([*FAST, *yt8m_args(shards), *override, f"hydra.run.dir={tmp_path / 'r'}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert key in proc.stderr
    assert not (tmp_path / "r" / "results.json").exists()


def test_cli_yt8m_missing_shards_name_the_key(tmp_path):
    proc = run_cli([*FAST, "dataset=yt8m", f"dataset.train={tmp_path}/none*.tfrecord",
                    f"dataset.validate={tmp_path}/none*.tfrecord", f"hydra.run.dir={tmp_path / 'r'}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2 and "no YouTube-8M shards match" in proc.stderr and "dataset.train" in proc.stderr
    proc = run_cli([*FAST, "dataset=yt8m", f"hydra.run.dir={tmp_path / 'r'}"], timeout=QUICK_GUARD)
    assert proc.returncode == 2 and "dataset.train is not set" in proc.stderr


@pytest.mark.slow
@TWO_CORES
def test_cli_yt8m_ddp_ranks_read_disjoint_videos_and_agree(shards, tmp_path):
    """Two gloo ranks: every training step of an epoch reads other videos than the other rank's
    (LR's features are its inputs), both train with the same subclass map, and the metrics cover
    every validate video once."""
    dump = tmp_path / "dump"
    proc = run_cli([*FAST, *yt8m_args(shards, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1",
                                      "dataset.num_workers=1"),
                    f"+trainer.callbacks=[{{_target_: tests.ddp_probe.StepDump, folder: '{dump}'}}]",
                    f"hydra.run.dir={tmp_path / 'r'}", f"phase1.cache_dir={tmp_path / 'c'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path / "r")
    assert results["test"]["videos"] == 120
    per_rank = {r: [torch.load(p)["features"] for p in sorted(dump.glob(f"phase1_rank{r}_step*.pt"))] for r in (0, 1)}
    assert len(per_rank[0]) == len(per_rank[1]) == 360 // (2 * 32)
    rows = torch.cat(per_rank[0] + per_rank[1])
    assert len(torch.unique(rows, dim=0)) == len(rows)  # no video twice in the epoch
    maps = [torch.load(dump / f"phase2_rank{r}_map.pt") for r in (0, 1)]
    assert torch.equal(maps[0], maps[1]) and maps[0].tolist() == results["subclass_to_class"]


def test_yt8m_data_reports_its_shape_and_names(shards, tmp_path):
    vocabulary = tmp_path / "vocabulary.csv"
    vocabulary.write_text("Index,TrainVideoCount,Name\n0,10,Game\n3,5,Car\n")
    data = YT8MData(train=f"{shards}/train*.tfrecord", validate=f"{shards}/validate*.tfrecord",
                    features="rgb_audio", num_classes=CLASSES, vocabulary=str(vocabulary), batch_size=8)
    assert data.input_shape == (1152,) and not data.is_image and not isinstance(data, TensorSplits)
    assert data.names()[:4] == ["Game", "1", "2", "Car"]
    assert data.stream("train", train=False).total == 360
    assert json.loads((shards / ".sdnn_index_train.json").read_text())["version"] == 1  # header counts, cached
