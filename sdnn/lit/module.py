"""One LightningModule for every backbone: backbone → penultimate features → head (linear, or another
classifier such as Class2Str's latent-hierarchy classifier)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassStatScores

from sdnn.data.batch_augment import InputPipeline
from sdnn.metrics import PERR, HitAtOne, MeanAPAndGAP
from sdnn.subclass import class_predictions, class_scores


OptimizerFactory = Callable[..., torch.optim.Optimizer]      # params → optimizer (``optim`` group, _partial_)
SchedulerFactory = Callable[..., Any]                         # optimizer → per-epoch scheduler (``scheduler`` group)
HeadFactory = Callable[[int, int], nn.Module]                 # (in_features, num_classes) → head of (n, c) scores


class SDNNModule(pl.LightningModule):
    """Serves phase 1, phase 2 and the baseline; only the head width and the loss differ.

    ``subclass_to_class`` (S,) maps output units to classes; evaluation is always at class
    level (the class of the arg-max unit, SPEC §5). Multilabel data (``multilabel=True``, targets
    multi-hot) is scored per class by the max of its units' sigmoid outputs and evaluated with the
    YouTube-8M metrics Hit@1, PERR, mAP and GAP@20 (SPEC §6), which keep O(videos × 20) state and
    are summed or gathered across DDP ranks. ``training_step`` hands the detached features, logits
    and targets to callbacks (the NeglectCallback uses them).

    ``head``: a classifier of its own in place of the linear layer (its outputs are the logits); a
    loss with ``uses_head`` is called as ``loss(logits, targets, head)`` (the Class2Str loss).
    """

    def __init__(self, backbone: nn.Module, loss: nn.Module, subclass_to_class: Tensor, num_classes: int,
                 optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 inputs: InputPipeline | None = None, channels_last: bool = False, multilabel: bool = False,
                 head: nn.Module | None = None):
        super().__init__()
        self.inputs = inputs if inputs is not None else InputPipeline()
        self.channels_last = channels_last
        self.backbone = backbone
        self.head = head if head is not None else nn.Linear(backbone.out_features, len(subclass_to_class))
        self.loss_fn = loss
        self.register_buffer("subclass_to_class", torch.as_tensor(subclass_to_class, dtype=torch.long))
        self.num_classes = num_classes
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.multilabel = multilabel
        if multilabel:
            self.test_hit, self.test_perr, self.test_pairs = HitAtOne(), PERR(), MeanAPAndGAP(num_classes)
        else:
            self.val_acc = MulticlassAccuracy(num_classes, average="micro")
            self.test_acc = MulticlassAccuracy(num_classes, average="micro")
            self.test_per_class = MulticlassStatScores(num_classes, average=None)  # per class: tp, fp, tn, fn, n
        self.test_results: dict[str, Any] = {}
        self.val_hits: list[Tensor] = []  # the last validation pass, per observation (method=auto's paired guard)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(x)
        return features, self.head(features)

    def on_fit_start(self):
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Whole batches, already on the device: normalised, and augmented when training."""
        x, targets = batch
        x = self.inputs(x, train=self.trainer.training)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, targets

    def training_step(self, batch, batch_idx):
        x, targets = batch
        features, logits = self(x)
        extra = (self.head,) if getattr(self.loss_fn, "uses_head", False) else ()
        loss = self.loss_fn(logits, targets, *extra)
        # Not prog_bar: Lightning turns progress-bar metrics into Python floats after every step, a host
        # sync per step (docs/benchmarks.md, GPU); PhaseProgressBar reads the loss every log_every_n_steps.
        self.log("train/loss", loss)
        return {"loss": loss, "features": features.detach(), "logits": logits.detach(), "targets": targets}

    def on_validation_epoch_start(self):
        self.val_hits = []

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pred = class_predictions(self(x)[1], self.subclass_to_class)
        self.val_acc.update(pred, y)
        self.val_hits.append(pred == y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def val_correct(self) -> Tensor:
        """1 where the last validation pass classified the observation right, in the validation loader's order."""
        return torch.cat(self.val_hits).cpu() if self.val_hits else torch.zeros(0, dtype=torch.bool)

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)[1]
        if self.multilabel:
            scores = class_scores(torch.sigmoid(logits.float()), self.subclass_to_class, self.num_classes)
            for metric in (self.test_hit, self.test_perr, self.test_pairs):
                metric.update(scores, y)
            return
        pred = class_predictions(logits, self.subclass_to_class)
        self.test_acc.update(pred, y)
        self.test_per_class.update(pred, y)

    def on_test_epoch_end(self):
        if self.multilabel:
            pairs = self.test_pairs.compute()
            self.test_results = {"hit_at_1": float(self.test_hit.compute()), "perr": float(self.test_perr.compute()),
                                 "map": float(pairs["map"]), "gap": float(pairs["gap"])}
            self.log_dict({f"test/{k}": v for k, v in self.test_results.items()}, sync_dist=True)
            self.test_results["videos"] = int(pairs["videos"])
            for metric in (self.test_hit, self.test_perr, self.test_pairs):
                metric.reset()
            return
        acc = self.test_acc.compute()
        stats = self.test_per_class.compute()
        correct, support = stats[:, 0], stats[:, 4]
        per_class = correct.float() / support.clamp_min(1).float()  # as MulticlassAccuracy, but knowing the support
        self.log("test/acc", acc, sync_dist=True)  # already global (torchmetrics); avoids a DDP warning
        # a class without test samples has no accuracy (None in results.json), not 0.0
        self.test_results = {"acc": float(acc), "per_class_acc": [float(v) if n > 0 else None
                                                                  for v, n in zip(per_class, support.tolist())]}
        self.test_acc.reset()
        self.test_per_class.reset()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}


@dataclass
class ModelSpec:
    """How to build a fresh network for a phase: the backbone (``model.backbone._target_``, given
    ``input_shape``), the optimiser and scheduler factories, and the GPU-path switches."""

    backbone: Callable[..., nn.Module]
    optimizer: OptimizerFactory
    scheduler: SchedulerFactory | None = None
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"

    def build_backbone(self, input_shape: tuple[int, ...]) -> nn.Module:
        return self.backbone(input_shape=tuple(input_shape))

    def trained_backbone(self, input_shape: tuple[int, ...], state: dict[str, Tensor]) -> nn.Module:
        """The backbone with the weights of an SDNNModule's ``state`` (the phase-1 network)."""
        backbone = self.build_backbone(input_shape)
        backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()
                                  if k.startswith("backbone.")})
        return backbone

    def build(self, data, subclass_to_class: Tensor, loss: nn.Module, head: HeadFactory | None = None,
              backbone_state: dict[str, Tensor] | None = None) -> SDNNModule:
        """A fresh SDNNModule with ``len(subclass_to_class)`` output units for ``data`` (an SDNNData);
        ``head``: another classifier than the linear layer; ``backbone_state``: start from these weights."""
        backbone = (self.build_backbone(data.input_shape) if backbone_state is None
                    else self.trained_backbone(data.input_shape, backbone_state))
        if self.compile:
            backbone.compile(backend=self.compile_backend)  # in place: state_dict keys stay the same
        return SDNNModule(backbone, loss, subclass_to_class, data.num_classes, self.optimizer, self.scheduler,
                          data.input_pipeline(), channels_last=self.channels_last and data.is_image,
                          multilabel=data.multilabel,
                          head=None if head is None else head(backbone.out_features, data.num_classes))


def embedder(inputs: InputPipeline, backbone: nn.Module | None = None) -> Callable[[Tensor], Tensor]:
    """The vectors a partition is computed in: the normalised inputs, flattened, or (given the
    phase-1 ``backbone``) its penultimate features, on a GPU where there is one."""
    if backbone is None:
        return lambda x: inputs.normalize(x).flatten(1)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    backbone.eval().to(device)
    normalize = inputs.to(device).normalize

    def embed(x: Tensor) -> Tensor:
        with torch.no_grad():
            return backbone(normalize(x.to(device))).cpu()

    return embed
