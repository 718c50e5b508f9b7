"""A run's ``model/`` folder: everything needed to use the trained network without the training data
or the training code path (no Lightning, no Hydra for built-in backbones).

``model/weights.pt``  the final network's weights: ``torch.save`` of a plain dict of tensors (the
                      backbone's and the output layer's), read back with ``weights_only=True``;
``model/model.json``  the model card: the subclass → class map, class names, number of classes,
                      multilabel or not, how scores are made, the input preprocessing
                      (``sdnn.data.preprocess.Preprocessing``: raw inputs as the user gives them →
                      what the network saw), the network's input shape, the backbone's config
                      (``model.backbone``, to rebuild it), the head's when it is not the linear
                      output layer (Class2Str's classifier), and the run's resolved config. Written
                      last: a folder without it holds no finished model.

``ClassLevelModel`` is the network that ``sdnn.predict`` runs and ``sdnn.export`` exports: raw inputs
→ preprocessing → backbone → output layer (S units) → class level: each class's logit is the max over
its subclasses' logits (SPEC §7b), and its score is the sigmoid of that logit (runs trained with a
sigmoid loss: eq. 3 / eq. 11) or the softmax probability of its units, summed (softmax losses, and
heads of their own such as Class2Str's, whose outputs are the classes' log-likelihoods).

A head other than ``nn.Linear`` is kept when it records its constructor's keyword arguments in
``arguments`` (``LatentHierarchyClassifier`` does); it is rebuilt from its ``_target_`` and them.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sdnn.cache import atomic_write_bytes, atomic_write_json
from sdnn.data.preprocess import Preprocess, Preprocessing
from sdnn.errors import DataError

MODEL_DIR = "model"
CARD = "model.json"
WEIGHTS = "weights.pt"
FORMAT = "sdnn-model"
VERSION = 1
SCORES = ("sigmoid", "softmax")


@dataclass
class ModelCard:
    """``model/model.json``: what a trained network is and how to feed it."""

    method: str
    dataset: str
    model: str
    seed: int
    num_classes: int
    multilabel: bool
    class_names: list[str]
    subclass_to_class: list[int]
    score: str                          # "sigmoid" | "softmax"
    preprocessing: Preprocessing
    backbone: dict[str, Any]            # model.backbone: _target_ and its arguments
    eval_batch_size: int                # the run's evaluation batches (4 × dataset.batch_size)
    head: dict[str, Any] | None = None  # None: nn.Linear(out_features, S); else _target_ and its arguments
    precision: str = "32-true"          # trainer.precision of the run
    config: dict[str, Any] = field(default_factory=dict)
    launch_dir: str = ""                # where the run was started (relative data paths in config)
    weights_sha256: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.preprocessing.input_shape

    @property
    def named(self) -> bool:
        """Whether the class names say more than the class numbers."""
        return bool(self.class_names) and self.class_names != [str(i) for i in range(self.num_classes)]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "method": self.method, "dataset": self.dataset,
                "model": self.model, "seed": self.seed, "num_classes": self.num_classes,
                "multilabel": self.multilabel, "class_names": list(self.class_names),
                "subclass_to_class": list(self.subclass_to_class), "score": self.score,
                "input_shape": list(self.input_shape), "preprocessing": self.preprocessing.to_json(),
                "backbone": self.backbone, "head": self.head, "eval_batch_size": self.eval_batch_size,
                "precision": self.precision,
                "weights": {"file": WEIGHTS, "sha256": self.weights_sha256}, "launch_dir": self.launch_dir,
                "config": self.config}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ModelCard:
        card = cls(method=str(payload["method"]), dataset=str(payload["dataset"]), model=str(payload["model"]),
                   seed=int(payload["seed"]), num_classes=int(payload["num_classes"]),
                   multilabel=bool(payload["multilabel"]), class_names=[str(n) for n in payload["class_names"]],
                   subclass_to_class=[int(u) for u in payload["subclass_to_class"]], score=str(payload["score"]),
                   preprocessing=Preprocessing.from_json(payload["preprocessing"]), backbone=dict(payload["backbone"]),
                   eval_batch_size=int(payload["eval_batch_size"]), head=payload.get("head"),
                   precision=str(payload.get("precision", "32-true")),
                   config=dict(payload.get("config") or {}), launch_dir=str(payload.get("launch_dir", "")),
                   weights_sha256=str(payload["weights"]["sha256"]))
        if card.score not in SCORES or not card.subclass_to_class or \
                sorted(set(card.subclass_to_class)) != list(range(card.num_classes)):
            raise ValueError("score or subclass_to_class do not describe the classes")
        return card


def model_weights(module: nn.Module) -> dict[str, Tensor]:
    """The backbone's and the output layer's tensors of a trained ``SDNNModule``, on the CPU."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
            if k.startswith(("backbone.", "head."))}


def head_spec(head: nn.Module) -> dict[str, Any] | None:
    """How to rebuild a trained module's head: None for the linear output layer, else its class and the
    keyword arguments it recorded in ``arguments``."""
    if type(head) is nn.Linear:
        return None
    arguments = getattr(head, "arguments", None)
    if not isinstance(arguments, dict):
        raise TypeError(f"{type(head).__qualname__}: a head other than nn.Linear must record its constructor's "
                        "keyword arguments in .arguments to be kept in model/")
    return {"_target_": f"{type(head).__module__}.{type(head).__qualname__}", **arguments}


def save_model(run_dir: str | Path, card: ModelCard, weights: dict[str, Tensor]) -> Path:
    """Write ``run_dir/model/``: the weights, then the card (last: it marks the folder finished).
    Both atomically (temporary file, then rename)."""
    folder = Path(run_dir) / MODEL_DIR
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    data = buffer.getvalue()
    card.weights_sha256 = hashlib.sha256(data).hexdigest()
    (folder / CARD).unlink(missing_ok=True)  # a resumed or repeated run: unfinished until the new card is written
    atomic_write_bytes(folder / WEIGHTS, data)
    atomic_write_json(folder / CARD, card.to_json())
    return folder


def kept_no_model(run_dir: Path) -> bool:
    """Whether ``run_dir/results.json``'s config says ``checkpoint.save_model=false`` (the run wrote no model/)."""
    try:
        config = json.loads((run_dir / "results.json").read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return False
    checkpoint = config.get("checkpoint") if isinstance(config, dict) else None
    return isinstance(checkpoint, dict) and checkpoint.get("save_model") is False


def read_card(run_dir: str | Path) -> ModelCard:
    """The card of ``run_dir/model``; a one-line ``DataError`` when there is no finished model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    path = run_dir / MODEL_DIR / CARD
    if not (run_dir / MODEL_DIR).exists() and kept_no_model(run_dir):
        raise DataError(f"{run_dir}: this run kept no model (it ran with checkpoint.save_model=false); run it "
                        "again without that override to use it with sdnn.predict or sdnn.export")
    if not path.is_file():
        done = (run_dir / "results.json").is_file()
        why = ("the run finished before runs kept their model (run it again to get one)" if done
               else "the run has not finished (or this is not a run folder)")
        raise DataError(f"{run_dir}: no finished model ({MODEL_DIR}/{CARD} is missing: {why})")
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable model card ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not an sdnn model card (expected \"format\": \"{FORMAT}\")")
    if int(payload.get("version", 0)) > VERSION:
        raise DataError(f"{path}: model card version {payload.get('version')} is newer than this sdnn reads "
                        f"({VERSION}); update sdnn")
    try:
        return ModelCard.from_json(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: the model card is incomplete or damaged ({type(exc).__name__}: {exc})") from None


def read_weights(run_dir: str | Path, card: ModelCard) -> dict[str, Tensor]:
    """The weights, checked against the card's checksum and read with ``weights_only=True`` (no code runs)."""
    path = Path(run_dir) / MODEL_DIR / WEIGHTS
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the model's weights ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != card.weights_sha256:
        raise DataError(f"{path}: the weights do not match {CARD} (checksum differs): the file was changed or is "
                        "damaged")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any unpickling failure is a damaged file
        raise DataError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise DataError(f"{path}: expected a dict of tensors")
    return state


def module_class(target: Any, what: str) -> type[nn.Module]:
    """The ``torch.nn.Module`` class a card's ``_target_`` names. Anything else is refused before it is
    called: a model card is read from disk and must not make this program call arbitrary functions."""
    module_name, _, class_name = str(target).rpartition(".")
    try:
        cls = importlib.import_module(module_name)
        for name in class_name.split("."):
            cls = getattr(cls, name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DataError(f"{what}._target_={target}: cannot import it ({type(exc).__name__}: {exc}); is its "
                        "package on PYTHONPATH?") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise DataError(f"{what}._target_={target} is not a torch.nn.Module class; a model card names network "
                        "classes only (refused, not called)")
    return cls


def _check_targets(node: Any, what: str) -> None:
    """Every ``_target_`` in a (nested) card entry names an nn.Module class, before anything is built."""
    if isinstance(node, dict):
        if "_target_" in node:
            module_class(node["_target_"], what)
        for key, value in node.items():
            _check_targets(value, f"{what}.{key}")
    elif isinstance(node, list):
        for value in node:
            _check_targets(value, what)


def build_part(node: dict[str, Any], what: str = "model.backbone", **given) -> nn.Module:
    """A part rebuilt from its card entry: its ``_target_`` class with its arguments and ``given``."""
    _check_targets(node, what)
    arguments = {k: v for k, v in node.items() if not k.startswith("_")}
    if any(isinstance(v, dict) and "_target_" in v for v in arguments.values()):
        from hydra.utils import instantiate  # nested parts of a user's backbone

        return instantiate({**node, "_convert_": "all"}, **given)
    return module_class(node.get("_target_"), what)(**arguments, **given)


def build_backbone(node: dict[str, Any], input_shape: tuple[int, ...]) -> nn.Module:
    """``model.backbone`` rebuilt: its ``_target_`` class with its arguments and ``input_shape``."""
    return build_part(node, "model.backbone", input_shape=tuple(input_shape))


class ClassLevelModel(nn.Module):
    """Raw inputs → (class logits (n, c), class scores (n, c)); see the module docstring.

    ``network(x)`` gives the S unit logits from already preprocessed inputs, ``unit_logits(raw)``
    from raw ones."""

    def __init__(self, preprocess: Preprocess, backbone: nn.Module, head: nn.Linear, subclass_to_class: Tensor,
                 num_classes: int, score: str = "sigmoid"):
        super().__init__()
        self.preprocess, self.backbone, self.head = preprocess, backbone, head
        s2c = torch.as_tensor(subclass_to_class, dtype=torch.long)
        self.register_buffer("subclass_to_class", s2c)
        self.num_classes, self.score, self.units = int(num_classes), score, len(s2c)
        # each class's units, padded with its first unit (a max is unchanged by repeats): (c, H_max)
        members = [torch.nonzero(s2c == k).flatten() for k in range(self.num_classes)]
        width = max(len(m) for m in members)
        index = torch.stack([torch.cat([m, m[:1].expand(width - len(m))]) for m in members])
        self.register_buffer("class_units", index)
        self.register_buffer("membership", torch.nn.functional.one_hot(s2c, self.num_classes).float())

    def network(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def unit_logits(self, raw: Tensor) -> Tensor:
        return self.network(self.preprocess(raw))

    def class_logits(self, unit_logits: Tensor) -> Tensor:
        if self.units == self.num_classes:
            return unit_logits
        return unit_logits[:, self.class_units].amax(-1)  # gather + max, not class_scores' scatter: exports to ONNX

    def scores(self, unit_logits: Tensor, class_logits: Tensor) -> Tensor:
        if self.score == "softmax":
            return torch.softmax(unit_logits.float(), 1) @ self.membership
        return torch.sigmoid(class_logits.float())

    def forward(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        units = self.unit_logits(raw)
        logits = self.class_logits(units)
        return logits, self.scores(units, logits)


@dataclass
class LoadedModel:
    """A run's finished model: its card and the network (eval mode, on the CPU)."""

    run_dir: Path
    card: ModelCard
    net: ClassLevelModel


def load_model(run_dir: str | Path) -> LoadedModel:
    """``run_dir/model`` read without executing code from it; one-line ``DataError``s."""
    run_dir = Path(run_dir)
    card = read_card(run_dir)
    state = read_weights(run_dir, card)
    try:
        backbone = build_backbone(card.backbone, card.input_shape)
        head = (nn.Linear(backbone.out_features, len(card.subclass_to_class)) if card.head is None
                else build_part(card.head, "head"))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{run_dir / MODEL_DIR / CARD}: cannot rebuild the network ({exc})") from None
    net = ClassLevelModel(Preprocess(card.preprocessing), backbone, head, torch.tensor(card.subclass_to_class),
                          card.num_classes, card.score)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(f"{run_dir / MODEL_DIR / WEIGHTS}: the weights do not fit the backbone in {CARD} "
                        f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    missing = [k for k in missing if k.startswith(("backbone.", "head."))]
    if missing or unexpected:
        raise DataError(f"{run_dir / MODEL_DIR / WEIGHTS}: the weights do not fit the backbone in {CARD} "
                        f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
    return LoadedModel(run_dir, card, net.eval())


def launch_dir_of(card: ModelCard) -> Path:
    """Where relative data paths of the run's config are resolved: the folder the run was started in."""
    return Path(card.launch_dir) if card.launch_dir and os.path.isdir(card.launch_dir) else Path.cwd()
