"""Callbacks: NeglectCallback measures θ (eq. 9) during training at almost no cost."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from sdnn.losses import SigmoidCrossEntropy
from sdnn.neglect import (
    NeglectAccumulator,
    choose_method,
    neglect_norms,
    neglect_norms_from_gradient,
    ratios_from_norms,
)

NORM_KEYS = ("delta", "delta_hat", "delta_tilde")
METHODS = ("auto", "direct", "gram", "gradient")


class NeglectCallback(pl.Callback):
    """Accumulates r_i every step on the device and closes a window every ``tau`` steps.

    Per step: r_i of the batch from what the forward and backward passes already computed (see
    ``method``), no host sync (except the gradient method's one ``nonzero`` with multi-hot targets
    on a GPU). Per window: the per-class sums and counts (2c numbers) are summed across DDP
    ranks, θ = sums / counts is logged (``theta/<class>``) and appended to ``history``.
    ``tau=None`` means one epoch. A window cut short by the end of training is kept with
    ``complete: False``.

    ``norms_every=k > 0`` also keeps ‖δ_i‖, ‖δ̂_i‖, ‖δ̃_i‖ (eq. 6–8, the paper's Fig. 2)
    of every k-th training batch (batch indices 0, k, 2k, … counted from the fit's start
    ``global_step``; equal to ``trainer.global_step`` at the batch's start without gradient
    accumulation). They stay on the device until the window closes and are moved to the host
    there, in one transfer; ``norm_history()`` returns them. Columns are output units (classes
    in phase 1). ‖δ̂_i‖ is NaN where class i had no positive in the batch (where r_i is NaN and
    left out of θ); ‖δ_i‖ = ‖δ̃_i‖ there, as computed. Under DDP each rank keeps its own local
    batch's norms (no communication); rank 0's are the ones plotted. θ is unaffected, and
    ``k = 0`` (the default) costs nothing.

    ``method`` (``sdnn.neglect``): ``direct`` and ``gram`` work on the step's features, logits and
    targets (``training_step``'s outputs). ``gradient`` reuses the output layer's weight gradient,
    ``δ = n·∂L/∂W``, which the backward pass has just computed: hooks on ``pl_module.head`` (its
    input and output), ``pl_module.loss_fn`` (its targets, and the gradient reaching the loss,
    ``1/accumulate_grad_batches``) and ``head.weight`` (the local gradient of this backward, before
    it is accumulated into ``.grad`` and before DDP reduces it: each rank its own r_i, SPEC §2);
    the norms are computed inside the weight hook, since DDP and accumulation change the gradient
    afterwards. It needs the sigmoid CE of eq. 3 (``SigmoidCrossEntropy``) as the only path from
    ``head.weight`` to the loss, an ``nn.Linear`` head, automatic optimisation and no GradScaler
    (``16-mixed`` scales gradients). ``auto`` uses ``gradient`` when these hold and
    ``choose_method`` finds it cheapest for the first step's shapes, else the cheaper of ``direct``
    and ``gram``. The first gradient step is checked against ``gram``/``direct`` (‖δ_i‖ must agree);
    if it does not, the callback warns and falls back for the rest of the fit. All methods give the
    same θ up to round-off; under ``bf16-mixed`` the weight gradient is itself a bf16 product, so θ
    from it agrees with gram's to bf16 precision only.
    """

    def __init__(self, num_classes: int, tau: int | None = None, method: str = "auto", norms_every: int = 0):
        super().__init__()
        if norms_every < 0:
            raise ValueError(f"norms_every must be >= 0, got {norms_every}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.num_classes = num_classes
        self.tau = tau
        self.method = method
        self.norms_every = int(norms_every)
        self.history: list[dict] = []
        self._acc: NeglectAccumulator | None = None
        self._steps = 0
        self._window_tau = tau
        self._batch_index = 0
        self._pending_norms: list[torch.Tensor] = []
        self._norm_steps: list[int] = []
        self._norm_chunks: list[np.ndarray] = []
        self._restored: dict | None = None
        self._handles: list = []
        self._capture: dict | None = None  # this step's head input/output, targets, loss gradient
        self._step_norms: tuple | None = None  # computed in the weight hook for this step
        self._gradient_method: str | None = None  # None: undecided; "gradient" or the fallback method
        self.gradient_steps = 0  # steps whose norms came from the weight gradient

    # ------------------------------------------------------------------ the gradient method's hooks
    @staticmethod
    def gradient_unavailable(trainer, pl_module) -> str | None:
        """Why ``method="gradient"`` cannot be used in this fit, or None if it can."""
        head, loss_fn = getattr(pl_module, "head", None), getattr(pl_module, "loss_fn", None)
        if type(loss_fn) is not SigmoidCrossEntropy:
            return f"the loss is {type(loss_fn).__name__}, not SigmoidCrossEntropy (eq. 3)"
        if not isinstance(head, nn.Linear) or not head.weight.requires_grad:
            return "pl_module.head is not a trainable nn.Linear"
        if head.weight.dtype not in (torch.float32, torch.float64):
            return f"the head's weights are {head.weight.dtype}"
        if not pl_module.automatic_optimization:
            return "manual optimisation"
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return "a GradScaler scales the gradients (precision 16-mixed)"
        return None

    def _attach(self, trainer, pl_module) -> None:
        self._detach()
        self._gradient_method, self.gradient_steps = None, 0
        if self.method not in ("auto", "gradient"):
            return
        reason = self.gradient_unavailable(trainer, pl_module)
        if reason is not None:
            if self.method == "gradient":
                raise ValueError(f"NeglectCallback(method='gradient') cannot be used: {reason}; use method='auto'")
            return
        head = pl_module.head
        self._handles = [head.register_forward_hook(self._on_head_forward),
                         pl_module.loss_fn.register_forward_hook(self._on_loss_forward),
                         head.weight.register_hook(self._on_weight_grad)]

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._capture, self._step_norms = [], None, None

    def _on_head_forward(self, module, args, output) -> None:
        if not (torch.is_grad_enabled() and output.requires_grad):
            return  # validation, or a forward pass outside training
        if self._capture is not None:  # a second forward before the backward: leave this step to gram/direct
            self._capture["valid"] = False
            return
        self._capture = {"features": args[0], "logits": output, "valid": True}

    def _on_loss_forward(self, module, args, output) -> None:
        step = self._capture
        if step is None or not output.requires_grad:
            return
        if args[0] is not step["logits"] or "targets" in step:
            step["valid"] = False
            return
        step["targets"] = args[1]
        output.register_hook(self._on_loss_grad)

    def _on_loss_grad(self, grad) -> None:
        if self._capture is not None:
            self._capture["loss_grad"] = grad.detach()

    def _on_weight_grad(self, grad) -> None:
        step, self._capture = self._capture, None
        if step is None or not step["valid"] or "loss_grad" not in step:
            return
        x, h, targets = step["features"].detach(), step["logits"].detach(), step["targets"].detach()
        if self._gradient_method is None and not self._decide(x, h, targets):
            return
        # Absent classes' norms (a pass over the whole gradient) only on the steps Fig. 2 records.
        record = bool(self.norms_every) and self._batch_index % self.norms_every == 0
        norms = neglect_norms_from_gradient(grad, x, h, targets, loss_scale=step["loss_grad"], absent=record)
        if self._gradient_method is None and not self._check(norms, x, h, targets):
            return
        self._step_norms = norms
        self.gradient_steps += 1

    def _decide(self, x, h, targets) -> bool:
        """On the first step: whether ``gradient`` is the cheapest method by ``choose_method`` (or
        forced by method="gradient"); if not, the cheaper of direct and gram stays (the hooks go at
        the end of the batch, not from inside a hook)."""
        n, c, f = x.shape[0], h.shape[1], x[0].numel()
        nnz = n if targets.dim() == 1 else int(torch.count_nonzero(targets))  # once per fit
        if self.method == "gradient" or choose_method(n, c, f, nnz, gradient=True) == "gradient":
            return True
        self._gradient_method = choose_method(n, c, f)
        return False

    def _check(self, norms, x, h, targets) -> bool:
        """On the first gradient step: ‖δ_i‖ from the gradient must equal ``neglect_norms``'s; if
        not, warn and compute θ from the features for the rest of the fit."""
        expected = neglect_norms(x, h, targets)[2]
        got = torch.where(torch.isnan(norms[2]), expected, norms[2])  # classes left out (absent=False)
        low_precision = torch.finfo(torch.promote_types(x.dtype, h.dtype)).bits < 32
        error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-30))
        chosen = "gradient"
        if not error <= (5e-2 if low_precision else 1e-3):
            warnings.warn(f"NeglectCallback: the output layer's weight gradient is not n × that of the sigmoid CE "
                          f"of this batch (‖δ‖ differs by {error:.1e} relative); θ is computed from the features "
                          "for the rest of this fit (does something else reach head.weight's gradient?)", stacklevel=2)
            chosen = choose_method(x.shape[0], h.shape[1], x[0].numel())
        self._gradient_method = chosen
        return chosen == "gradient"

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self, trainer, pl_module):
        self._attach(trainer, pl_module)
        self._acc = NeglectAccumulator(self.num_classes, device=pl_module.device)
        self._steps = 0
        self._window_tau = self.tau or max(1, int(trainer.num_training_batches))
        self._batch_index = int(trainer.global_step)
        self._pending_norms = []
        if self._restored is None:
            self.history, self._norm_steps, self._norm_chunks = [], [], []
        else:  # resumed from a checkpoint: continue the open window
            state, self._restored = self._restored, None
            self._acc.sums.copy_(state["sums"])
            self._acc.counts.copy_(state["counts"])
            self._steps, self._window_tau = int(state["steps"]), int(state["window_tau"])

    def state_dict(self) -> dict:
        """Saved in checkpoints (a resumed run continues the θ history and the open window)."""
        if self._acc is None:
            return {}
        self._flush_norms()
        return {"history": self.history, "sums": self._acc.sums.cpu(), "counts": self._acc.counts.cpu(),
                "steps": self._steps, "window_tau": self._window_tau, "norm_steps": list(self._norm_steps),
                "norm_chunks": [torch.from_numpy(chunk) for chunk in self._norm_chunks]}

    def load_state_dict(self, state_dict: dict) -> None:
        """The history is restored at once (a fit resumed after its last epoch runs no training hooks)."""
        if not state_dict:
            return
        self._restored = dict(state_dict)
        self.history = list(state_dict["history"])
        self._norm_steps = list(state_dict["norm_steps"])
        self._norm_chunks = [chunk.numpy() for chunk in state_dict["norm_chunks"]]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._capture, self._step_norms = None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        norms, self._step_norms = self._step_norms, None
        if self._handles and self._gradient_method not in (None, "gradient"):
            self._detach()  # decided against the gradient method on the first step
        if norms is None:  # from the step's features: gram or direct
            method = self.method if self.method in ("direct", "gram") else "auto"
            norms = neglect_norms(outputs["features"], outputs["logits"], outputs["targets"], method=method)
        ratios = ratios_from_norms(*norms, outputs["targets"])
        if self.norms_every and self._batch_index % self.norms_every == 0:
            self._record_norms(norms, ratios)
        self._acc.update(ratios)
        self._batch_index += 1
        self._steps += 1
        if self._steps == self._window_tau:
            self._close_window(trainer, complete=True)

    def on_train_end(self, trainer, pl_module):
        self._detach()
        if self._steps > 0:
            self._close_window(trainer, complete=False)
        self._flush_norms()

    def teardown(self, trainer, pl_module, stage):
        self._detach()  # also after an exception, when on_train_end does not run

    def norm_history(self) -> dict[str, np.ndarray]:
        """Fig. 2 data: "steps" (T,) batch indices and "delta", "delta_hat", "delta_tilde" (T, c) float32."""
        self._flush_norms()
        if self._norm_chunks:
            norms = np.concatenate(self._norm_chunks, axis=0)
        else:
            norms = np.zeros((0, len(NORM_KEYS), self.num_classes), dtype=np.float32)
        history = {key: norms[:, k] for k, key in enumerate(NORM_KEYS)}
        history["steps"] = np.asarray(self._norm_steps, dtype=np.int64)
        return history

    def _record_norms(self, norms: tuple[torch.Tensor, torch.Tensor, torch.Tensor], ratios: torch.Tensor) -> None:
        """One (3, c) device tensor (‖δ‖, ‖δ̂‖, ‖δ̃‖); no host sync."""
        pull, push, total = norms
        pull = torch.where(torch.isnan(ratios), torch.full_like(pull, math.nan), pull)
        self._pending_norms.append(torch.stack([total, pull, push]).float())
        self._norm_steps.append(self._batch_index)

    def _flush_norms(self) -> None:
        """Moves the window's recorded norms to the host in one transfer."""
        if self._pending_norms:
            self._norm_chunks.append(torch.stack(self._pending_norms).cpu().numpy())
            self._pending_norms = []

    def _close_window(self, trainer, complete: bool) -> None:
        sums = trainer.strategy.reduce(self._acc.sums.clone(), reduce_op="sum")
        counts = trainer.strategy.reduce(self._acc.counts.clone(), reduce_op="sum")
        theta = torch.where(counts > 0, sums / counts.clamp_min(1), torch.nan).cpu().tolist()
        self._flush_norms()
        self.history.append({"step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                             "steps": self._steps, "complete": complete, "theta": theta})
        if trainer.logger is not None and trainer.is_global_zero:
            metrics = {f"theta/{i}": v for i, v in enumerate(theta) if not math.isnan(v)}
            trainer.logger.log_metrics(metrics, step=int(trainer.global_step))
        self._acc.reset()
        self._steps = 0
