"""GPU rows (``python -m benchmarks --only gpu``): the paper's image backbones on one CUDA GPU.

- images/s of a training step (augmentation on the device + forward + backward + SGD step) of
  VGG16-BN, WRN-28-10 (CIFAR-100) and WRN-16-8 (SVHN), fp32 against bf16 autocast,
  bf16 + channels_last and bf16 + channels_last + ``torch.compile``, with the projected wall
  time of the paper's runs (200 epochs; SDNN adds the 30-epoch phase 1);
- the framework (Lightning + SDNNModule) against a plain loop with the same model, data,
  optimiser and precision; θ on against θ off; ``trainer.deterministic`` true against false;
- the device-side input pipeline alone against a training step.

Without CUDA the section has no rows.
"""

from __future__ import annotations

from functools import partial

import math
import sys
import time

import pytorch_lightning as pl
import torch
from torch import nn

from sdnn.data.batch_augment import BatchAugment, InputPipeline
from sdnn.data.tensors import batch_loader
from sdnn.lit import NeglectCallback, SDNNModule
from sdnn.losses import SigmoidCrossEntropy
from sdnn.models import build_backbone

BATCH = 128
# name: (model config, classes, training images, cutout, 1080 Ti hours of the paper's baseline / SDNN run)
MODELS = {
    "VGG16-BN, CIFAR-100": ({"name": "vgg16"}, 100, 50_000, 8, (2.6, 2.6)),
    "WRN-28-10, CIFAR-100": ({"name": "wrn", "depth": 28, "widen_factor": 10, "dropout": 0.3}, 100, 50_000, 8,
                             (7.1, 7.5)),
    "WRN-16-8, SVHN": ({"name": "wrn", "depth": 16, "widen_factor": 8, "dropout": 0.4}, 10, 604_388, 20,
                       (33.1, 42.7)),
}
OPTIM = partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0005)


def _say(message: str) -> None:
    print(f"  gpu: {message}", file=sys.stderr, flush=True)


def _data(c: int, n: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return x.to(device), torch.randint(0, c, (n,), generator=g).to(device)


def _pipeline(cutout: int, device: str) -> InputPipeline:
    augment = BatchAugment(crop_padding=4 if cutout < 20 else 0, flip=cutout < 20, cutout=cutout)
    return InputPipeline(augment, torch.full((3,), 120.0), torch.full((3,), 64.0)).to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_step_seconds(spec: dict, c: int, cutout: int, steps: int, device: str, bf16: bool,
                       channels_last: bool, compiled: bool) -> tuple[float, float]:
    """Seconds per step of a hand-written loop over batches already on the device, and the
    seconds the first (warm-up) steps took (compilation, when ``compiled``)."""
    torch.manual_seed(0)
    backbone = build_backbone(spec, (3, 32, 32))
    model = nn.Sequential(backbone, nn.Linear(backbone.out_features, c)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = SigmoidCrossEntropy()
    pipeline = _pipeline(cutout, device)
    x, y = _data(c, 8 * BATCH, device)

    def step(i: int) -> None:
        start = (i % 8) * BATCH
        xb = pipeline(x[start:start + BATCH], train=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(xb), y[start:start + BATCH])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    for i in range(3):
        step(i)
    _sync(device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return (time.perf_counter() - start) / steps, warmup


def _hours(images_per_second: float, images: int, epochs: int) -> float:
    return images * epochs / images_per_second / 3600


def bench_backbones(steps: int, device: str, compile_models: tuple[str, ...]) -> list[tuple]:
    rows = []
    for name, (spec, c, images, cutout, paper_hours) in MODELS.items():
        variants = [("bf16 autocast", True, False, False), ("bf16 + channels_last", True, True, False)]
        if name in compile_models:
            variants.append(("bf16 + channels_last + torch.compile", True, True, True))
        fp32, _ = plain_step_seconds(spec, c, cutout, steps, device, False, False, False)
        _say(f"{name} fp32: {BATCH / fp32:,.0f} images/s")
        best = fp32
        for label, bf16, channels_last, compiled in variants:
            seconds, warmup = plain_step_seconds(spec, c, cutout, steps, device, bf16, channels_last, compiled)
            best = min(best, seconds)
            note = f"; first 3 steps {warmup:.0f} s" if compiled else ""
            _say(f"{name} {label}: {BATCH / seconds:,.0f} images/s{note}")
            rows.append((f"{name} training step, batch {BATCH} (images/s: fp32 {BATCH / fp32:,.0f}, "
                         f"this {BATCH / seconds:,.0f}{note})", "fp32", fp32, label, seconds))
        ips = BATCH / best
        rows.append((f"{name}: projected paper run at the best rate ({ips:,.0f} images/s): baseline 200 epochs "
                     f"{_hours(ips, images, 200):.2f} h (GTX 1080 Ti: {paper_hours[0]} h), SDNN 30 + 200 epochs "
                     f"{_hours(ips, images, 230):.2f} h (1080 Ti: {paper_hours[1]} h)",
                     "fp32 (h, 200 epochs)", _hours(BATCH / fp32, images, 200),
                     "best (h, 200 epochs)", _hours(ips, images, 200)))
    return rows


class EpochTimer(pl.Callback):
    """Seconds of the second epoch (the first warms up kernels and allocators), synchronised with the
    device on a GPU; the timer of every Lightning row, CPU and GPU."""

    def __init__(self):
        self.start, self.seconds = None, math.nan

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            _sync(pl_module.device.type)
            self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            _sync(pl_module.device.type)
            self.seconds = time.perf_counter() - self.start


def framework_epoch_seconds(spec: dict, c: int, cutout: int, steps: int, device: str, theta: bool,
                            deterministic: bool) -> float:
    """One epoch of ``steps`` steps through Lightning + SDNNModule, bf16-mixed, channels_last,
    uint8 batches from the host (pinned) as ``run.py`` trains."""
    x, y = _data(c, steps * BATCH, "cpu")
    pl.seed_everything(0, verbose=False)
    module = SDNNModule(build_backbone(spec, (3, 32, 32)), SigmoidCrossEntropy(), torch.arange(c), c, OPTIM,
                        _pipeline(cutout, "cpu"), channels_last=True)
    timer = EpochTimer()
    callbacks = [timer] + ([NeglectCallback(c, tau=steps)] if theta else [])
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks, accelerator="gpu" if device == "cuda"
                         else "cpu", devices=1, precision="bf16-mixed", deterministic=deterministic)
    trainer.fit(module, batch_loader(x, y, BATCH, shuffle=True))
    return timer.seconds


def plain_epoch_seconds(spec: dict, c: int, cutout: int, steps: int, device: str) -> float:
    """The same epoch as ``framework_epoch_seconds`` by hand: host batches, copy, augment, bf16 step."""
    x, y = _data(c, steps * BATCH, "cpu")
    torch.manual_seed(0)
    backbone = build_backbone(spec, (3, 32, 32))
    model = nn.Sequential(backbone, nn.Linear(backbone.out_features, c)).to(device).to(
        memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = SigmoidCrossEntropy()
    pipeline = _pipeline(cutout, device)
    seconds = math.nan
    for epoch in range(2):
        _sync(device)
        start = time.perf_counter()
        for xb, yb in batch_loader(x, y, BATCH, shuffle=True, seed=epoch):
            xb = pipeline(xb.to(device, non_blocking=True), train=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = loss_fn(model(xb), yb.to(device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds


def bench_framework(steps: int, device: str, name: str = "WRN-28-10, CIFAR-100") -> list[tuple]:
    spec, c, _, cutout, _ = MODELS[name]
    plain = plain_epoch_seconds(spec, c, cutout, steps, device)
    fast = framework_epoch_seconds(spec, c, cutout, steps, device, theta=False, deterministic=False)
    theta = framework_epoch_seconds(spec, c, cutout, steps, device, theta=True, deterministic=False)
    exact = framework_epoch_seconds(spec, c, cutout, steps, device, theta=True, deterministic=True)
    images = steps * BATCH
    _say(f"framework {name}: plain {images / plain:,.0f}, framework {images / fast:,.0f}, "
         f"+θ {images / theta:,.0f}, +deterministic {images / exact:,.0f} images/s")
    where = f"{name}, bf16-mixed, channels_last, {steps} steps of {BATCH}"
    return [(f"framework vs plain loop, {where} (images/s: plain {images / plain:,.0f}, "
             f"framework {images / fast:,.0f}; target ≥ 0.9×)", "plain PyTorch loop", plain, "framework, θ off", fast),
            (f"θ during training, {where} (target ≥ 0.98×)", "framework, θ off", fast, "framework, θ on", theta),
            (f"trainer.deterministic=true (the default), {where}", "deterministic=false", theta,
             "deterministic=true", exact)]


def bench_input_pipeline_share(steps: int, device: str, name: str = "WRN-28-10, CIFAR-100") -> list[tuple]:
    spec, c, _, cutout, _ = MODELS[name]
    step, _ = plain_step_seconds(spec, c, cutout, steps, device, True, True, False)
    pipeline = _pipeline(cutout, device)
    x, _ = _data(c, 8 * BATCH, device)
    for i in range(3):
        pipeline(x[:BATCH], train=True)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        pipeline(x[(i % 8) * BATCH:(i % 8 + 1) * BATCH], train=True)
    _sync(device)
    alone = (time.perf_counter() - start) / steps
    return [(f"crop + flip + normalise + cutout of a batch on the GPU, as a share of a {name} bf16 step: "
             f"{alone / step:.1%} ({BATCH / alone:,.0f} images/s)", f"{name} step", step, "InputPipeline alone",
             alone)]


def bench_gpu(scale) -> list[tuple]:
    if not torch.cuda.is_available():
        print("  gpu: no CUDA device: the GPU section has no rows", file=sys.stderr)
        return []
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    steps = {"smoke": 3, "quick": 10}.get(scale.name, 30)
    _say(torch.cuda.get_device_name(0))
    rows = bench_backbones(steps, "cuda", compile_models=() if scale.name == "smoke" else
                           ("VGG16-BN, CIFAR-100", "WRN-28-10, CIFAR-100"))
    rows += bench_input_pipeline_share(steps, "cuda")
    rows += bench_framework(max(steps, 10), "cuda")
    return rows
