"""Benchmarks: every figure is a ratio against a baseline measured in the same run.

Each ``bench_*`` function returns rows ``(what, baseline, baseline_s, ours, ours_s)``; the
ratio printed is ``baseline_s / ours_s`` (> 1: ours is faster) unless a row says otherwise.
Sizes come from a ``Scale`` (``smoke`` for the test, ``quick`` and ``full``).
"""

from __future__ import annotations

from functools import partial

import gc
import math
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from benchmarks.gpu import EpochTimer, bench_gpu
from sdnn.data.batch_augment import BatchAugment, InputPipeline
from sdnn.data.tensors import batch_loader, channel_statistics
from sdnn.data.tfrecord import decode_example, read_records
from sdnn.data.yt8m import YT8MStream
from sdnn.data.yt8m_synth import write_synthetic_shards
from sdnn.lit import NeglectCallback, SDNNModule
from sdnn.losses import SigmoidCrossEntropy, SubclassBCELoss
from sdnn.models import build_backbone
from sdnn.neglect import (
    NeglectAccumulator,
    neglect_norms,
    neglect_norms_from_gradient,
    neglect_ratios,
    ratios_from_norms,
)
from sdnn.partition import StreamingMedianSplit, kmeans_split, median_distance_split
from sdnn.subclass import build_subclass_to_class


@dataclass(frozen=True)
class Scale:
    name: str
    train_steps: int        # steps per timed fit (θ on/off, throughput)
    repeats: int            # timed repetitions (the minimum is kept)
    yt8m_features: int      # f of the YT8M-shaped output layer (full: 64 × 576)
    partition_sizes: tuple[int, ...]
    pipeline_images: int = 50_000  # images per timed epoch of the input pipelines
    theta_rounds: int = 0          # interleaved θ-off/θ-on rounds; 0 = repeats + 1
    yt8m_videos: int = 20_480      # synthetic videos read by the YT8M reader rows (4 shards)
    yt8m_steps: int = 2            # steps per timed epoch of the YT8M training rows


SCALES = {
    "smoke": Scale("smoke", train_steps=2, repeats=1, yt8m_features=128, partition_sizes=(1_000,),
                   pipeline_images=512, theta_rounds=1, yt8m_videos=1_024, yt8m_steps=1),
    "quick": Scale("quick", train_steps=30, repeats=2, yt8m_features=4_608, partition_sizes=(10_000, 100_000),
                   pipeline_images=10_000, yt8m_videos=5_120),
    "full": Scale("full", train_steps=40, repeats=2, yt8m_features=36_864,
                  partition_sizes=(10_000, 100_000, 1_000_000)),
}


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------- θ during training

def _image_problem(c: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, c, (n,), generator=g)


def _fit_seconds(c: int, steps: int, with_theta: bool) -> float:
    """Wall time of ``steps`` Lightning training steps of the small CNN on 32×32 images."""
    x, y = _image_problem(c, 128 * steps)
    pl.seed_everything(0, verbose=False)
    module = SDNNModule(build_backbone({"name": "cnn", "channels": [32, 64]}, (3, 32, 32)), SigmoidCrossEntropy(),
                        torch.arange(c), c, partial(torch.optim.SGD, lr=0.01, momentum=0.9))
    timer = EpochTimer()
    callbacks = [timer] + ([NeglectCallback(c, tau=steps)] if with_theta else [])
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks, accelerator="cpu")
    trainer.fit(module, batch_loader(x, y, 128, shuffle=True))
    return timer.seconds


def bench_theta_in_training(scale: Scale) -> list[tuple]:
    rows = []
    for c in (10, 100):
        off, on = math.inf, math.inf
        for _ in range(scale.theta_rounds or scale.repeats + 1):  # interleaved: drift hits both alike
            off = min(off, _fit_seconds(c, scale.train_steps, False))
            on = min(on, _fit_seconds(c, scale.train_steps, True))
        share = _theta_alone_seconds(128, c, 128, scale) / (off / scale.train_steps)
        rows.append((f"training step, CNN 32×32, c={c}, batch 128 (θ alone: {share:.2%} of a step)",
                     "θ off", off, "θ on", on))
    return rows


def _theta_alone_seconds(n: int, c: int, f: int, scale: Scale) -> float:
    """θ's own per-step work (ratios + accumulation) on tensors of a step's shapes."""
    g = torch.Generator().manual_seed(3)
    x, h, y = torch.relu(torch.randn(n, f, generator=g)), torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    acc = NeglectAccumulator(c)
    return best_time(lambda: acc.update(neglect_ratios(x, h, y)), repeats=20 * scale.repeats, warmup=3)


# ---------------------------------------------------------------- θ for one batch

def loop_ratios(x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The straightforward form (as the original code): a Python loop over classes."""
    z = torch.sigmoid(logits) - F.one_hot(y, logits.shape[1]).float()
    out = torch.full((logits.shape[1],), float("nan"))
    for i in range(logits.shape[1]):
        positive = y == i
        if positive.any():
            pull = -(z[positive, i, None] * x[positive]).sum(0)
            push = (z[~positive, i, None] * x[~positive]).sum(0)
            out[i] = (pull.norm() + push.norm()) / (push - pull).norm()
    return out


def bench_theta_batch(scale: Scale) -> list[tuple]:
    rows = []
    shapes = [(128, 10, 512), (128, 100, 512), (512, 3862, min(scale.yt8m_features, 4096))]
    for n, c, f in shapes:
        g = torch.Generator().manual_seed(1)
        x, h, y = torch.relu(torch.randn(n, f, generator=g)), torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
        torch.testing.assert_close(neglect_ratios(x, h, y), loop_ratios(x, h, y), rtol=1e-3, atol=1e-4, equal_nan=True)
        loop = best_time(lambda: loop_ratios(x, h, y), scale.repeats)
        ours = best_time(lambda: neglect_ratios(x, h, y), scale.repeats)
        rows.append((f"θ of one batch, n={n}, c={c}, f={f}", "loop over classes", loop, "neglect_ratios", ours))
    return rows


# ---------------------------------------------------------------- subclass CE

def loop_subclass_loss(logits: torch.Tensor, targets: torch.Tensor, s2c: torch.Tensor, w: float) -> torch.Tensor:
    """Targets and weights built per sample in Python, as the original code does."""
    n, S = logits.shape
    y = torch.zeros(n, S)
    weight = torch.ones(n, S)
    for k in range(n):
        unit = int(targets[k])
        y[k, unit] = 1.0
        for s in range(S):
            if s != unit and int(s2c[s]) == int(s2c[unit]):
                weight[k, s] = 1.0 - w
    return F.binary_cross_entropy_with_logits(logits, y, weight=weight, reduction="sum") / n


def bench_subclass_loss(scale: Scale) -> list[tuple]:
    rows = []
    for c, selected in ((10, 2), (100, 10)):
        s2c = build_subclass_to_class(c, {i: 2 for i in range(selected)})
        S = len(s2c)
        g = torch.Generator().manual_seed(2)
        logits = torch.randn(128, S, generator=g, requires_grad=True)
        targets = torch.randint(0, S, (128,), generator=g)
        ours_fn = SubclassBCELoss(s2c, sibling_weight=0.9)
        torch.testing.assert_close(ours_fn(logits, targets), loop_subclass_loss(logits, targets, s2c, 0.9))

        def run(fn):
            logits.grad = None
            fn().backward()

        loop = best_time(lambda: run(lambda: loop_subclass_loss(logits, targets, s2c, 0.9)), scale.repeats)
        ours = best_time(lambda: run(lambda: ours_fn(logits, targets)), scale.repeats)
        rows.append((f"subclass CE forward+backward, batch 128, S={S}", "per-sample target loop", loop,
                     "SubclassBCELoss", ours))
    return rows


# ---------------------------------------------------------------- framework throughput

def bench_throughput(scale: Scale) -> list[tuple]:
    """The framework (Lightning, SDNNModule, whole-batch loader) vs a hand-written loop."""
    c, steps = 10, scale.train_steps
    x, y = _image_problem(c, 128 * steps)

    def plain() -> float:
        torch.manual_seed(0)
        backbone = build_backbone({"name": "cnn", "channels": [32, 64]}, (3, 32, 32))
        model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.out_features, c))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        loss_fn = SigmoidCrossEntropy()
        seconds = math.nan
        for epoch in range(2):
            start = time.perf_counter()
            for xb, yb in batch_loader(x, y, 128, shuffle=True, seed=epoch):
                loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            seconds = time.perf_counter() - start  # the second epoch's
        return seconds

    ours = min(_fit_seconds(c, steps, with_theta=False) for _ in range(scale.repeats))
    base = min(plain() for _ in range(scale.repeats))
    images = 128 * steps
    return [(f"training throughput, CNN 32×32, c=10 (images/s: plain {images / base:.0f}, "
             f"framework {images / ours:.0f})", "plain PyTorch loop", base, "framework", ours)]


# ---------------------------------------------------------------- partitioners

def _peak_mib(fn: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def bench_partitioners(scale: Scale) -> list[tuple]:
    """Time and peak memory (tracemalloc) of splitting one class of n 128-d float32 vectors."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    rows = []
    for n in scale.partition_sizes:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n, 128)).astype(np.float32)
        labels = np.zeros(n, dtype=np.int64)
        chunks = range(0, n, 65_536)

        def streaming():  # two passes over 64k-row chunks: the mean, then the distances
            s = StreamingMedianSplit(2)
            for start in chunks:
                s.add_to_mean(x[start:start + 65_536])
            for start in chunks:
                s.add_distances(x[start:start + 65_536], labels[start:start + 65_536], [0])
            return s.split()

        results = {
            "Algorithm 1 (in memory)": _peak_mib(lambda: median_distance_split(x, x.mean(0))),
            "Algorithm 1 (on-line, 64k chunks)": _peak_mib(streaming),
            "k-means (sklearn, n_init=1)": _peak_mib(lambda: KMeans(2, n_init=1, random_state=0).fit_predict(x)),
            "mini-batch k-means (sklearn)": _peak_mib(
                lambda: MiniBatchKMeans(2, n_init=1, random_state=0, batch_size=4096).fit_predict(x)),
            "kmeans_split (ours: float32, mini-batch above 20k)": _peak_mib(lambda: kmeans_split(x, 2, seed=0)),
        }
        base_s, base_mib = results["k-means (sklearn, n_init=1)"]
        for name, (seconds, mib) in results.items():
            rows.append((f"partition n={n:,} × 128 (peak {mib:.0f} MiB; k-means {base_mib:.0f} MiB)",
                         "k-means (sklearn, n_init=1)", base_s, name, seconds))
    return rows


# ---------------------------------------------------------------- input pipeline

class _PerImageCIFAR(torch.utils.data.Dataset):
    """torchvision's CIFAR10 ``__getitem__``: one PIL image per sample through ``transform``."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def _cutout_per_image(length: int):
    """The Cutout paper's per-image transform (numpy mask, after normalisation)."""

    def apply(image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[1:]
        y, x = np.random.randint(h), np.random.randint(w)
        mask = np.ones((h, w), np.float32)
        mask[max(0, y - length // 2):min(h, y + length // 2), max(0, x - length // 2):min(w, x + length // 2)] = 0
        return image * torch.from_numpy(mask)

    return apply


def _per_image_transform(mean, std):
    """torchvision's transforms when installed, else the same steps written with PIL and numpy."""
    try:
        from torchvision import transforms
    except ImportError:
        transforms = None
    if transforms is not None:
        return "torchvision per-image", transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(mean, std), _cutout_per_image(16)])
    from PIL import ImageOps

    mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    cut = _cutout_per_image(16)

    def transform(image):
        padded = ImageOps.expand(image, border=4, fill=0)
        top, left = np.random.randint(9), np.random.randint(9)
        image = padded.crop((left, top, left + 32, top + 32))
        if np.random.rand() < 0.5:
            image = ImageOps.mirror(image)
        tensor = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)
        return cut((tensor - mean_t) / std_t)

    return "per-image PIL (torchvision not installed)", transform


def bench_input_pipeline(scale: Scale) -> list[tuple]:
    """CIFAR augmentation (crop 4, flip, normalise, cutout 16) for one epoch: per-image PIL
    DataLoader (2 workers, torchvision's way) vs whole uint8 batches through ``InputPipeline``."""
    n = scale.pipeline_images
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels)
    mean, std = channel_statistics(x)
    name, transform = _per_image_transform((mean / 255).tolist(), (std / 255).tolist())
    workers = min(2, os.cpu_count() or 1)

    def per_image() -> None:
        loader = torch.utils.data.DataLoader(_PerImageCIFAR(images, labels, transform), batch_size=128,
                                             shuffle=True, num_workers=workers, drop_last=True)
        for xb, _ in loader:
            xb.sum()

    pipeline = InputPipeline(BatchAugment(crop_padding=4, flip=True, cutout=16), mean, std)

    def batched() -> None:
        for xb, _ in batch_loader(x, y, 128, shuffle=True):
            pipeline(xb, train=True).sum()

    base = best_time(per_image, scale.repeats, warmup=0)
    ours = best_time(batched, scale.repeats, warmup=0)
    return [(f"CIFAR augmentation, {n:,} images of 32×32 (images/s: per-image {n / base:,.0f}, "
             f"batched {n / ours:,.0f}; both on this CPU)", f"{name} DataLoader, {workers} workers", base,
             "uint8 batches + InputPipeline", ours)]


# ---------------------------------------------------------------- YouTube-8M

YT8M_CLASSES = 3862
YT8M_BATCH = 512
YT8M_CNN = {"name": "cnn1d", "filters": 64, "kernel_size": 3, "dropout": 0.3}
YT8M_OPTIM = partial(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=0.0005)


def _yt8m_labels(n: int, labels_per_video: int, generator: torch.Generator) -> torch.Tensor:
    """Multi-hot (n, 3,862): a few labels a video, class frequencies ∝ 1/k^0.8 (as in yt8m_synth)."""
    frequency = 1.0 / torch.arange(1, YT8M_CLASSES + 1, dtype=torch.float64) ** 0.8
    picked = torch.multinomial(frequency.expand(n, YT8M_CLASSES), labels_per_video, generator=generator)
    return torch.zeros(n, YT8M_CLASSES).scatter_(1, picked, 1.0)


def _yt8m_problem(f: int, videos: int, seed: int = 0):
    """Inputs of 2·f/64 values (the CNN's f = 64 filters × half the input), 3 labels a video."""
    g = torch.Generator().manual_seed(seed)
    length = 2 * f // YT8M_CNN["filters"]
    return torch.randn(videos, length, generator=g), _yt8m_labels(videos, 3, g)


def _yt8m_module(length: int) -> SDNNModule:
    pl.seed_everything(0, verbose=False)
    return SDNNModule(build_backbone(YT8M_CNN, (length,)), SigmoidCrossEntropy(), torch.arange(YT8M_CLASSES),
                      YT8M_CLASSES, YT8M_OPTIM)


def _yt8m_fit_seconds(f: int, steps: int, method: str | None) -> float:
    """One epoch (the second) of ``steps`` Lightning steps: CNN1D + head, sigmoid CE, SGD."""
    x, y = _yt8m_problem(f, steps * YT8M_BATCH)
    module = _yt8m_module(x.shape[1])
    timer = EpochTimer()
    neglect = NeglectCallback(YT8M_CLASSES, tau=steps, method=method) if method else None
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer] + ([neglect] if neglect else []),
                         accelerator="cpu")
    trainer.fit(module, batch_loader(x, y, YT8M_BATCH, shuffle=True))
    if method == "gradient" and neglect.gradient_steps != 2 * steps:
        raise RuntimeError(f"the gradient method ran on {neglect.gradient_steps} of {2 * steps} steps")
    return timer.seconds


def _one_thread(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    return run


def _yt8m_theta_alone(f: int, repeats: int) -> dict[str, float]:
    """θ's own per-step work (norms, ratios, accumulation) on one real step's tensors, by method, with
    all intra-op threads and with one. The gradient method as NeglectCallback runs it on the steps
    whose norms it does not record (``absent=False``: no pass over the absent classes' gradient)."""
    x, y = _yt8m_problem(f, YT8M_BATCH, seed=1)
    module = _yt8m_module(x.shape[1]).train()
    features, logits = module(x)
    module.loss_fn(logits, y).backward()
    features, logits, grad = features.detach(), logits.detach(), module.head.weight.grad
    acc = NeglectAccumulator(YT8M_CLASSES)
    work = {"gram": lambda: acc.update(ratios_from_norms(*neglect_norms(features, logits, y, "gram"), y)),
            "gradient": lambda: acc.update(ratios_from_norms(
                *neglect_norms_from_gradient(grad, features, logits, y, absent=False), y))}
    present = y.sum(0) > 0
    ours = torch.stack(neglect_norms_from_gradient(grad, features, logits, y, absent=False))[:, present]
    torch.testing.assert_close(ours, torch.stack(neglect_norms(features, logits, y, "gram"))[:, present],
                               rtol=1e-3, atol=1e-3)
    seconds = {method: best_time(fn, repeats) for method, fn in work.items()}
    seconds.update({f"{method} 1 thread": best_time(_one_thread(fn), repeats) for method, fn in work.items()})
    return seconds


def bench_yt8m_theta(scale: Scale) -> list[tuple]:
    """θ's cost in the paper's YouTube-8M phase 1 (CNN on rgb+audio): a step with θ off, with θ
    by gram, with θ by the weight gradient (Lightning, NeglectCallback), in interleaved rounds."""
    f, steps = scale.yt8m_features, scale.yt8m_steps
    best = {"off": math.inf, "gram": math.inf, "gradient": math.inf}
    alone: dict[str, float] = {}
    for _ in range(scale.theta_rounds or scale.repeats + 1):  # interleaved: drift hits all alike
        for method, seconds in best.items():
            best[method] = min(seconds, _yt8m_fit_seconds(f, steps, None if method == "off" else method))
        for method, seconds in _yt8m_theta_alone(f, max(3, scale.repeats)).items():
            alone[method] = min(alone.get(method, math.inf), seconds)
    step = best["off"] / steps
    what = (f"YT8M training step, CNN1D (64 filters) + head, f={f:,}, c=3,862, batch 512, 3 labels/video, "
            "SGD momentum 0.9")
    return [(f"{what}: θ by gram (θ alone: {alone['gram'] / step:.1%} of a step)", "θ off", best["off"],
             "θ on, gram", best["gram"]),
            (f"{what}: θ by the weight gradient (θ alone: {alone['gradient'] / step:.1%} of a step)", "θ off",
             best["off"], "θ on, gradient", best["gradient"]),
            (f"θ alone for one such step (step {step:.2f} s)", "gram", alone["gram"], "weight gradient",
             alone["gradient"]),
            ("θ alone for one such step, one intra-op thread (no waits for a second thread that a busy machine "
             "has descheduled)", "gram", alone["gram 1 thread"], "weight gradient", alone["gradient 1 thread"])]


def bench_yt8m_reader(scale: Scale) -> list[tuple]:
    """Videos/s of the YT8M training stream (rgb+audio, batches of 512, shuffle buffer 4,096) over
    synthetic shards, against a bare loop that only reads and decodes the same records."""
    n = scale.yt8m_videos
    with tempfile.TemporaryDirectory() as folder:
        shards = write_synthetic_shards(folder, classes=YT8M_CLASSES, train_shards=4, validate_shards=0,
                                        videos_per_shard=n // 4)["train"]
        stream = YT8MStream(shards, batch_size=YT8M_BATCH, features="rgb_audio", train=True, shuffle_buffer=4096)
        workers = min(2, os.cpu_count() or 1)
        counts = {}

        def bare():
            counts["bare"] = sum(1 for path in shards for _, data in read_records(path) if decode_example(data))

        def streamed():
            counts["stream"] = sum(len(xb) for xb, _ in stream)

        def loader():
            batches = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
            counts["loader"] = sum(len(xb) for xb, _ in batches)

        best = {"bare": math.inf, "stream": math.inf, "loader": math.inf}
        for _ in range(scale.repeats + 1):  # interleaved rounds, the first one also warms the page cache
            for key, fn in (("bare", bare), ("stream", streamed), ("loader", loader)):
                gc.collect()
                start = time.perf_counter()
                fn()
                best[key] = min(best[key], time.perf_counter() - start)
    if not counts["bare"] == counts["stream"] == counts["loader"] == n:
        raise RuntimeError(f"videos read: {counts}, expected {n} each")
    rate = {key: n / seconds for key, seconds in best.items()}
    what = f"YT8M reader, {n:,} synthetic videos in 4 shards, rgb+audio, batch 512, shuffle buffer 4,096"
    return [(f"{what} (videos/s: bare loop {rate['bare']:,.0f}, YT8MStream {rate['stream']:,.0f})",
             "read_records + decode_example loop", best["bare"], "YT8MStream (main process)", best["stream"]),
            ((f"{what} (videos/s: YT8MStream {rate['stream']:,.0f}, DataLoader {rate['loader']:,.0f}; "
              f"{os.cpu_count()} cores)"), "YT8MStream (main process)", best["stream"],
             f"DataLoader, {workers} workers", best["loader"])]


def bench_yt8m(scale: Scale) -> list[tuple]:
    return bench_yt8m_reader(scale) + bench_yt8m_theta(scale)


# Bad inputs, each at the stage that catches it; run.py must stop with exit status 2 before any training.
FAIL_FAST_CASES = (
    ("a value out of range (`seed=-1`)", ["seed=-1"]),
    ("a value of the wrong type (`optim.lr=abc`)", ["optim.lr=abc"]),
    ("a loss the method cannot use (`loss=focal`, SDNN)", ["loss=focal"]),
    ("a missing data file (`dataset=npz`)", ["dataset=npz", "dataset.path=/nonexistent/data.npz"]),
    ("a class the data lacks (`subclass.classes=[12]`, after reading digits)", ["subclass.classes=[12]"]),
)


def bench_fail_fast(scale: Scale) -> list[tuple]:
    """Time from ``python run.py <bad input>`` to its one-line error, against the interpreter's own
    start-up (``python -c pass``): the checks run before torch or Lightning is imported where they can."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def timed(args: list[str], expect: int) -> float:
        best = math.inf
        for _ in range(max(scale.repeats, 1)):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, *args, f"hydra.run.dir={tmp}/run"] if args else
                                      [sys.executable, "-c", "pass"], cwd=root, env=env, capture_output=True)
                best = min(best, time.perf_counter() - start)
            if proc.returncode != expect:
                raise RuntimeError(f"{args}: exit {proc.returncode}, expected {expect}: {proc.stderr[-500:]!r}")
        return best

    startup = timed([], 0)
    return [(f"{what}: time to the error", "interpreter start-up (`python -c pass`)", startup,
             "`python run.py " + " ".join(args) + "`", timed(["run.py", *args], 2))
            for what, args in FAIL_FAST_CASES]


# sdnn.advise and method=auto against the runs they stand in for: (what, overrides) per scale; every run of a case
# shares one fresh phase-1 cache and a validation split (auto needs one; the others ignore it).
ADVISE_CASES = {
    "smoke": (("digits merged 2→1 × LR, 1 + 2 epochs",
               ["model=lr", "dataset.merge=[0,0,1,1,2,2,3,3,4,4]", "phase1.epochs=1", "trainer.max_epochs=2"]),),
    "quick": (("digits merged 2→1 × LR, 5 + 30 epochs", ["model=lr", "dataset.merge=[0,0,1,1,2,2,3,3,4,4]"]),),
    "full": (("digits merged 2→1 × LR, 5 + 30 epochs", ["model=lr", "dataset.merge=[0,0,1,1,2,2,3,3,4,4]"]),
             ("digits × small CNN (the default run), 5 + 30 epochs", [])),
}


def bench_advise(scale: Scale) -> list[tuple]:
    """What ``sdnn.advise`` costs against the baseline + SDNN runs it predicts (phase 1 counted once: advise trains
    it, the SDNN run takes it from the cache), and what ``method=auto`` (its five default candidates) costs
    against one baseline run: whole in-process runs, one after the other, on the same machine."""
    from hydra import compose, initialize_config_dir

    from sdnn.advise import advise
    from sdnn.app import run
    from sdnn.build import build_job
    from sdnn.config import register
    from sdnn.pipeline import run_phase1

    register()
    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
    quiet = ["logger=none", "trainer.enable_progress_bar=false", "checkpoint.every_n_epochs=0", "observe.figures=false",
             "dataset.val_fraction=0.15"]
    rows = []
    for what, overrides in ADVISE_CASES[scale.name]:
        with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=conf, version_base="1.3"):
            def config(*extra: str):
                return compose(config_name="config", overrides=[*overrides, *quiet, f"phase1.cache_dir={tmp}/cache",
                                                                 *extra])

            def timed(fn: Callable[[], object]) -> float:
                start = time.perf_counter()
                fn()
                return time.perf_counter() - start

            job = build_job(config(), f"{tmp}/advise")
            phase1 = timed(lambda: run_phase1(job))
            after = timed(lambda: advise(job))                      # phase 1 from the cache now
            baseline = timed(lambda: run(config("method=baseline"), f"{tmp}/baseline"))
            sdnn = timed(lambda: run(config(), f"{tmp}/sdnn"))      # phase 1 and the partition from the cache
            auto = timed(lambda: run(config("method=auto", "auto.skip_hopeless=false"), f"{tmp}/auto"))
        runs = baseline + phase1 + sdnn
        rows += [(f"{what}: sdnn.advise, phase 1 cached", "baseline + SDNN runs (phase 1 once)", runs,
                  "sdnn.advise after phase 1", after),
                 (f"{what}: sdnn.advise with its own phase 1", "baseline + SDNN runs (phase 1 once)", runs,
                  "phase 1 + sdnn.advise", phase1 + after),
                 (f"{what}: method=auto (5 candidates, phase 1 from the cache)", "one baseline run", baseline,
                  "method=auto run", auto)]
    return rows


# the split indicators on wide vectors (CIFAR-10 pixels: 3,072): (probe rows, class rows, width) per scale
WIDE = {"smoke": (400, 200, 600), "quick": (10_000, 1_000, 3_072), "full": (10_000, 1_000, 3_072)}


def bench_indicators_wide(scale: Scale) -> list[tuple]:
    """``sdnn.advise``'s indicators on vectors as wide as CIFAR-10's pixels: the ridge probe on every column against
    the probe on a 512-column sketch, and a class's gap and stability in all its dimensions against its top 64
    principal coordinates (sdnn.indicators; ten classes, two of them split in two, one thread as in advise)."""
    from sdnn.indicators import class_indicators, probe_targets, ridge_probe
    from sdnn.subclass import subclass_targets

    n, rows, width = WIDE[scale.name]
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(n, width, generator=generator)
    labels = torch.arange(n) % 10
    numbers = torch.randint(0, 2, (n,), generator=generator)
    s2c = build_subclass_to_class(10, {0: 2, 9: 2})
    classes, units = probe_targets(labels, subclass_targets(labels, numbers, s2c), 10, len(s2c))

    def probe(columns: int):
        return lambda: ridge_probe(features, classes, units, s2c, [0, 9], 2, seed=0, width=columns)

    vectors = np.random.default_rng(0).standard_normal((rows, width))
    split = kmeans_split(vectors, 2, seed=0)

    def judged(columns: int):
        return lambda: class_indicators(vectors, split, lambda v, seed, centre: kmeans_split(v, 2, seed, centre),
                                        seed=0, mean=np.zeros(width), width=columns)

    return [(f"ridge probe, {n:,} × {width:,} features (5 folds, reweight of 2 classes)", "every column",
             best_time(probe(width), scale.repeats), "a 512-column sketch", best_time(probe(512), scale.repeats)),
            (f"gap and stability of one class, {rows:,} × {width:,} (k-means, 9 re-splits)", "every dimension",
             best_time(judged(width), scale.repeats), "top 64 principal coordinates",
             best_time(judged(64), scale.repeats))]


SECTIONS = {
    "theta_training": ("θ during training (target: ≤ 2% extra per step, i.e. ratio ≥ 0.98)", bench_theta_in_training),
    "theta_batch": ("θ for one batch", bench_theta_batch),
    "subclass_loss": ("Subclass CE (eq. 11)", bench_subclass_loss),
    "throughput": ("Training throughput (target: framework ≥ 0.9× the plain loop)", bench_throughput),
    "partition": ("Partitioners", bench_partitioners),
    "input_pipeline": ("Image input pipeline (CIFAR augmentation)", bench_input_pipeline),
    "yt8m": ("YouTube-8M: streaming reader, and θ's share of a training step (target: ≤ 2%)", bench_yt8m),
    "fail_fast": ("Bad input: time to the one-line error (ratio: interpreter start-up / time to the error)",
                  bench_fail_fast),
    "advise": ("sdnn.advise against the runs it predicts (target: ≤ 15%, ratio ≥ 6.7×); method=auto against one "
               "baseline run", bench_advise),
    "indicators_wide": ("sdnn.advise's indicators on wide vectors: full width against the reductions",
                        bench_indicators_wide),
    "gpu": ("GPU: paper backbones (bf16, channels_last, torch.compile), framework overhead, θ cost", bench_gpu),
}
