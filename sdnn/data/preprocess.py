"""How raw inputs, as a user gives them, become what the network sees: ``Preprocessing`` (a record kept
in every run's ``model/model.json``) and ``Preprocess`` (the same steps as a ``torch.nn.Module``, so
that ``sdnn.predict`` and the exported models apply them exactly as training did).

The steps, in order:

1. cast to float32 (``kind``: the raw inputs are ``uint8`` images or ``float`` arrays);
2. raw ``layout`` → what the backbone takes: ``nhwc`` images are transposed to (N, C, H, W),
   ``nhw`` gray images get their channel axis, ``nchw`` images and ``nf`` vectors stay;
3. divide by ``divide`` (the npz reader's 255 for uint8 images, the digits reader's 16; 1 = none);
4. ``l2_normalize``: each vector divided by its Euclidean norm (YouTube-8M, per video);
5. standardise with ``mean`` / ``std`` (per channel of images, per feature of vectors), in the
   form the training run used: ``standardize="loaded"`` is ``(x − mean) / std`` (float data,
   standardised when the data was loaded: ``sdnn.data.tensors.standardize``), ``"device"`` is the
   device-side input pipeline's multiply-add (uint8 images, ``InputPipeline.normalize``), so the
   network gets bit-identical inputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from sdnn.data.batch_augment import InputPipeline

KINDS = ("uint8", "float")
MAX_INPUT_VALUES = 2**28  # one input (a 9000 × 9000 RGB image); a model card's shape is refused above it
LAYOUTS = ("nchw", "nhwc", "nhw", "nf")
STANDARDIZE = (None, "loaded", "device")


@dataclass(frozen=True)
class Preprocessing:
    """Raw inputs → network inputs (see the module docstring for the steps)."""

    kind: str                        # "uint8" | "float": what the raw inputs are
    layout: str                      # "nchw" | "nhwc" | "nhw" | "nf"
    shape: tuple[int, ...]           # one raw input's shape, in ``layout``
    divide: float = 1.0
    l2_normalize: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    standardize: str | None = None   # None | "loaded" | "device"
    source: str = field(default="", compare=False)  # where raw inputs come from, for messages

    def __post_init__(self):
        if self.kind not in KINDS or self.layout not in LAYOUTS or self.standardize not in STANDARDIZE:
            raise ValueError(f"preprocessing: kind={self.kind!r}, layout={self.layout!r}, "
                             f"standardize={self.standardize!r} are not all known values")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @classmethod
    def of_tensor(cls, x: Tensor) -> Preprocessing:
        """The default of in-memory data: the tensors themselves are the raw form (uint8 images kept as
        uint8, or float (N, C, H, W) / (N, F))."""
        kind = "uint8" if x.dtype == torch.uint8 else "float"
        return cls(kind, "nchw" if x.dim() == 4 else "nf", tuple(x.shape[1:]))

    def with_statistics(self, mean: Tensor, std: Tensor, standardize: str) -> Preprocessing:
        return replace(self, mean=tuple(float(v) for v in mean.flatten()),
                       std=tuple(float(v) for v in std.flatten()), standardize=standardize)

    @property
    def is_image(self) -> bool:
        return self.layout != "nf"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """What the backbone takes: (C, H, W) or (F,)."""
        s = self.shape
        return {"nchw": s, "nhwc": (s[2], s[0], s[1]) if len(s) == 3 else s,
                "nhw": (1, *s), "nf": s}[self.layout]

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["shape"] = list(self.shape)
        for key in ("mean", "std"):
            payload[key] = None if payload[key] is None else list(payload[key])
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Preprocessing:
        known = {k: payload[k] for k in ("kind", "layout", "shape", "divide", "l2_normalize", "mean", "std",
                                         "standardize", "source") if k in payload}
        for key in ("mean", "std"):
            if known.get(key) is not None:
                known[key] = tuple(float(v) for v in known[key])
        if "divide" in known:
            known["divide"] = float(known["divide"])
        if "l2_normalize" in known:
            known["l2_normalize"] = bool(known["l2_normalize"])
        return cls(**known)

    def problem(self) -> str | None:
        """What makes this record unusable (a model card is a file anyone may have written), or None: shapes
        of positive sizes that fit the layout, a finite ``divide`` > 0, finite ``mean`` and ``std`` > 0 with
        one value per channel (images) or feature (vectors)."""
        rank = {"nchw": 3, "nhwc": 3, "nhw": 2, "nf": 1}[self.layout]
        if len(self.shape) != rank or min(self.shape) < 1:
            return f"shape {list(self.shape)} is not a {self.layout} input of {rank} positive size(s)"
        if math.prod(self.shape) > MAX_INPUT_VALUES:
            return f"shape {list(self.shape)}: more than {MAX_INPUT_VALUES} values per input"
        if not (math.isfinite(self.divide) and self.divide > 0):
            return f"divide={self.divide}: must be a finite number > 0"
        if self.standardize is not None and (self.mean is None or self.std is None):
            return f"standardize={self.standardize!r} needs mean and std"
        if self.mean is None and self.std is None:
            return None
        width = self.input_shape[0]
        if self.mean is None or self.std is None or len(self.mean) != width or len(self.std) != width:
            return (f"mean and std need {width} value(s) each (one per {'channel' if self.is_image else 'feature'}); "
                    f"got {len(self.mean or ())} and {len(self.std or ())}")
        if not all(math.isfinite(v) for v in self.mean):
            return "mean holds NaN or infinite values"
        if not all(math.isfinite(v) and v > 0 for v in self.std):
            return "std must be finite and > 0 (a division by it)"
        return None

    def describe(self) -> str:
        """"uint8 (8, 8, 3) images (N, H, W, C)", for messages."""
        what = {"nchw": "images (N, C, H, W)", "nhwc": "images (N, H, W, C)", "nhw": "gray images (N, H, W)",
                "nf": "vectors (N, F)"}[self.layout]
        kind = "uint8" if self.kind == "uint8" else "floating-point"
        return f"{kind} {what} with one input of shape {self.shape}"


class Preprocess(nn.Module):
    """``Preprocessing`` as a module: raw inputs (N, *shape) → the backbone's inputs, in float32.
    Plain tensor operations only (traceable for TorchScript, exportable to ONNX)."""

    def __init__(self, spec: Preprocessing):
        super().__init__()
        self.layout, self.divide, self.l2 = spec.layout, float(spec.divide), bool(spec.l2_normalize)
        self.standardize = spec.standardize if spec.mean is not None else None
        stats_shape = (1, -1, 1, 1) if spec.is_image else (1, -1)
        self.device_normalize = None
        if self.standardize == "loaded":
            self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(stats_shape))
            self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(stats_shape))
        elif self.standardize == "device":
            self.device_normalize = InputPipeline(None, torch.tensor(spec.mean, dtype=torch.float32),
                                                  torch.tensor(spec.std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        if self.standardize == "device":  # exactly the training run's device-side normalisation (on uint8)
            x = self._layout(x)
            return self.device_normalize.normalize(x)
        x = self._layout(x.float())
        if self.divide != 1.0:
            x = x / self.divide
        if self.l2:
            norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            x = torch.where(norm > 0, x / torch.where(norm > 0, norm, torch.ones_like(norm)), x)
        if self.standardize == "loaded":
            x = (x - self.mean) / self.std
        return x

    def _layout(self, x: Tensor) -> Tensor:
        if self.layout == "nhwc":
            return x.permute(0, 3, 1, 2)
        if self.layout == "nhw":
            return x.unsqueeze(1)
        return x
