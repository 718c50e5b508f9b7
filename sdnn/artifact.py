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
import io
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sdnn.cache import atomic_write_bytes, atomic_write_json
from sdnn.data.preprocess import Preprocess, Preprocessing
from sdnn.errors import DataError
from sdnn.targets import build, check_tree, trusted_names

MODEL_DIR = "model"
CARD = "model.json"
WEIGHTS = "weights.pt"
FORMAT = "sdnn-model"
VERSION = 1
SCORES = ("sigmoid", "softmax")
MAX_CARD_MB = 64            # a card: class names and the run's configuration
MAX_WEIGHTS_MB = 16 * 1024  # 4 billion float32 weights
MAX_EVAL_BATCH = 2**16


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
        for key, kind in (("backbone", dict), ("class_names", list), ("subclass_to_class", list),
                          ("preprocessing", dict), ("weights", dict)):
            if not isinstance(payload[key], kind):
                raise TypeError(f"{key} must be a JSON {'object' if kind is dict else 'array'}")
        if not isinstance(payload.get("head"), (dict, type(None))) or \
                not isinstance(payload.get("config") or {}, dict):
            raise TypeError("head and config must be JSON objects")
        card = cls(method=str(payload["method"]), dataset=str(payload["dataset"]), model=str(payload["model"]),
                   seed=int(payload["seed"]), num_classes=int(payload["num_classes"]),
                   multilabel=bool(payload["multilabel"]), class_names=[str(n) for n in payload["class_names"]],
                   subclass_to_class=[int(u) for u in payload["subclass_to_class"]], score=str(payload["score"]),
                   preprocessing=Preprocessing.from_json(payload["preprocessing"]), backbone=dict(payload["backbone"]),
                   eval_batch_size=int(payload["eval_batch_size"]), head=payload.get("head"),
                   precision=str(payload.get("precision", "32-true")),
                   config=dict(payload.get("config") or {}), launch_dir=str(payload.get("launch_dir", "")),
                   weights_sha256=str(payload["weights"]["sha256"]))
        problem = card.problem()
        if problem:
            raise ValueError(problem)
        return card

    def problem(self) -> str | None:
        """What makes this card unusable (it is read from a file anyone may have written), or None. Linear in
        the number of units."""
        c, units = self.num_classes, torch.as_tensor(self.subclass_to_class, dtype=torch.long)
        if c < 1 or len(units) < c:
            return f"num_classes={c} with {len(units)} output unit(s) in subclass_to_class"
        if self.class_names and len(self.class_names) != c:
            return f"class_names has {len(self.class_names)} names for {c} classes"
        if not torch.equal(units[:c], torch.arange(c)) or int(units.min()) < 0 or int(units.max()) >= c:
            return ("subclass_to_class must list the classes 0..c-1 (unit i < c is class i), then the class of each "
                    "further unit")
        if self.score not in SCORES:
            return f"score={self.score!r}; expected one of {', '.join(SCORES)}"
        if not 1 <= self.eval_batch_size <= MAX_EVAL_BATCH:
            return f"eval_batch_size={self.eval_batch_size}; expected 1..{MAX_EVAL_BATCH}"
        if not isinstance(self.backbone.get("_target_"), str) or \
                (self.head is not None and not isinstance(self.head.get("_target_"), str)):
            return "backbone and head need a _target_ (the class to build)"
        if self.head is not None and len(units) != c:
            return "a head of its own (head._target_) gives one output per class: subclass_to_class must be 0..c-1"
        problem = self.preprocessing.problem()
        return f"preprocessing: {problem}" if problem else None


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


def _regular_file(path: Path, limit_mb: float, what: str) -> int:
    """The size of ``path``, a regular file (not a device, FIFO or folder, nor a link to one) of at most
    ``limit_mb``; a one-line ``DataError`` otherwise. Stat only: nothing is read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file (a device, FIFO or folder, or a link to one); {what} is a file "
                        "this program wrote, so it is not read")
    if info.st_size > limit_mb * 2**20:
        raise DataError(f"{path}: {info.st_size / 2**20:.0f} MB, more than {limit_mb:g} MB for {what}: not a file "
                        "this program wrote, so it is not read")
    return info.st_size


def read_card(run_dir: str | Path) -> ModelCard:
    """The card of ``run_dir/model``; a one-line ``DataError`` when there is no finished model, or when the
    card is not one this program could have written (its values are checked: ``ModelCard.problem``)."""
    run_dir = Path(run_dir)
    try:
        found = run_dir.is_dir()
    except OSError as exc:  # a name too long, a loop of links
        raise DataError(f"{run_dir}: cannot read this run folder ({exc.strerror or exc})") from None
    if not found:
        raise DataError(f"{run_dir}: no such run folder")
    path = run_dir / MODEL_DIR / CARD
    if not (run_dir / MODEL_DIR).exists() and kept_no_model(run_dir):
        raise DataError(f"{run_dir}: this run kept no model (it ran with checkpoint.save_model=false); run it "
                        "again without that override to use it with sdnn.predict or sdnn.export")
    if not path.exists():
        done = (run_dir / "results.json").is_file()
        why = ("the run finished before runs kept their model (run it again to get one)" if done
               else "the run has not finished (or this is not a run folder)")
        raise DataError(f"{run_dir}: no finished model ({MODEL_DIR}/{CARD} is missing: {why})")
    _regular_file(path, MAX_CARD_MB, "a model card")
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise DataError(f"{path}: not a readable model card ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not an sdnn model card (expected \"format\": \"{FORMAT}\")")
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataError(f"{path}: \"version\": {json.dumps(version)[:40]} is not a card version (an integer)")
    if version > VERSION:
        raise DataError(f"{path}: model card version {version} is newer than this sdnn reads ({VERSION}); update sdnn")
    try:
        return ModelCard.from_json(payload)
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise DataError(f"{path}: the model card is incomplete or damaged ({type(exc).__name__}: "
                        f"{str(exc)[:300]})") from None


def read_weights(run_dir: str | Path, card: ModelCard) -> dict[str, Tensor]:
    """The weights: a regular file under ``MAX_WEIGHTS_MB`` (checked before reading), its checksum the card's
    (hashed in chunks), read with ``weights_only=True`` (no code runs) and memory-mapped; finite values."""
    path = Path(run_dir) / MODEL_DIR / WEIGHTS
    size = _regular_file(path, MAX_WEIGHTS_MB, "the model's weights")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(min(1 << 22, size + 1)):
                digest.update(chunk)
                size -= len(chunk)
                if size < 0:
                    raise DataError(f"{path}: the file grew while it was read; it is not read")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the model's weights ({exc.strerror or exc})") from None
    if digest.hexdigest() != card.weights_sha256:
        raise DataError(f"{path}: the weights do not match {CARD} (checksum differs): the file was changed or is "
                        "damaged")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 — any unpickling failure is a damaged file
        raise DataError(f"{path}: not a readable weights file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise DataError(f"{path}: expected a dict of tensors")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise DataError(f"{path}: {bad} holds NaN or infinite values (a trained network's weights never do): the "
                        "file is damaged")
    return state


def _largest_size(node: Any) -> int:
    """The largest integer in a card entry (sizes: widths, depths, input dimensions)."""
    if isinstance(node, dict):
        return max((_largest_size(v) for v in node.values()), default=0)
    if isinstance(node, (list, tuple)):
        return max((_largest_size(v) for v in node), default=0)
    return abs(node) if isinstance(node, int) and not isinstance(node, bool) else 0


def build_part(node: dict[str, Any], what: str = "model.backbone", trust: Sequence[str] = (),
               run_dir: Path | None = None, **given) -> nn.Module:
    """A network part rebuilt from its card entry: every ``_target_`` allow-listed (``sdnn.targets``) and a
    ``torch.nn.Module`` class, checked before any is imported or called; the values as they are."""
    check_tree(node, what, nn.Module, trust, run_dir)
    return build(node, what, nn.Module, trust, run_dir, **given)


def build_backbone(node: dict[str, Any], input_shape: tuple[int, ...], trust: Sequence[str] = (),
                   run_dir: Path | None = None) -> nn.Module:
    """``model.backbone`` rebuilt: its ``_target_`` class with its arguments and ``input_shape``."""
    return build_part(node, "model.backbone", trust, run_dir, input_shape=tuple(input_shape))


def _network(card: ModelCard, trust: Sequence[str], run_dir: Path) -> tuple[nn.Module, nn.Module]:
    backbone = build_backbone(card.backbone, card.input_shape, trust, run_dir)
    head = (nn.Linear(backbone.out_features, len(card.subclass_to_class)) if card.head is None
            else build_part(card.head, "head", trust, run_dir))
    return backbone, head


def _shapes(backbone: nn.Module, head: nn.Module) -> dict[str, tuple[int, ...]]:
    return {**{f"backbone.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()},
            **{f"head.{k}": tuple(v.shape) for k, v in head.state_dict().items()}}


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
        c, units = self.num_classes, len(s2c)
        self.identity = bool(units == c and torch.equal(s2c, torch.arange(c)))
        # each class's units, padded with its first unit (a max is unchanged by repeats): (c, H_max), built
        # with a sort (linear in the units, no loop over classes); a map too uneven to pad takes a scatter
        counts = torch.bincount(s2c, minlength=c)
        width = int(counts.max())
        self.padded = c * width <= 4 * units + 2**20
        if self.padded and not self.identity:
            order = torch.sort(s2c, stable=True).indices
            starts = torch.cumsum(counts, 0) - counts
            owner = s2c[order]
            index = order[starts].unsqueeze(1).repeat(1, width)
            index[owner, torch.arange(units) - starts[owner]] = order
            self.register_buffer("class_units", index)
        # softmax scores: a class's probability is the sum of its units' (a (S, c) matrix where that is small)
        self.dense = units * c <= 2**22
        if self.dense and not self.identity:
            self.register_buffer("membership", torch.nn.functional.one_hot(s2c, c).float())

    def network(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def unit_logits(self, raw: Tensor) -> Tensor:
        return self.network(self.preprocess(raw))

    def class_logits(self, unit_logits: Tensor) -> Tensor:
        if self.identity:
            return unit_logits
        if self.padded:
            return unit_logits[:, self.class_units].amax(-1)  # gather + max, not a scatter: exports to ONNX
        index = self.subclass_to_class.expand(len(unit_logits), -1)
        first = unit_logits[:, :self.num_classes]  # unit i < c is class i (ModelCard.problem)
        return first.scatter_reduce(1, index[:, self.num_classes:], unit_logits[:, self.num_classes:], "amax")

    def scores(self, unit_logits: Tensor, class_logits: Tensor) -> Tensor:
        if self.score == "softmax":
            probabilities = torch.softmax(unit_logits.float(), 1)
            if self.identity:
                return probabilities
            if self.dense:
                return probabilities @ self.membership
            c = self.num_classes
            return probabilities[:, :c].index_add(1, self.subclass_to_class[c:], probabilities[:, c:])
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


def load_model(run_dir: str | Path, trust: Sequence[str] = ()) -> LoadedModel:
    """``run_dir/model`` read without executing code from it; one-line ``DataError``s. ``trust``: packages
    besides sdnn and torch.nn whose classes the card may name (a user's own backbone; ``--trust``).

    Before anything is allocated, the card's sizes are bounded by what the weights hold: no integer of the
    backbone or head entry, no input dimension and no output unit count exceeds the number of weight values,
    and the network is first built on the meta device (no memory) and its tensor shapes compared with the
    weights'."""
    run_dir = Path(run_dir)
    card = read_card(run_dir)
    trust = trusted_names(trust)
    state = read_weights(run_dir, card)
    where = run_dir / MODEL_DIR / CARD
    values = sum(int(v.numel()) for v in state.values())
    claimed = max(_largest_size(card.backbone), _largest_size(card.head), _largest_size(list(card.input_shape)),
                  len(card.subclass_to_class))
    if claimed > values:
        raise DataError(f"{where}: a size of {claimed} in the card, but the weights hold only {values} values: the "
                        "card does not describe these weights")
    check_tree(card.backbone, "model.backbone", nn.Module, trust, run_dir)  # before anything is called
    if card.head is not None:
        check_tree(card.head, "head", nn.Module, trust, run_dir)
    try:
        with torch.device("meta"):
            expected = _shapes(*_network(card, trust, run_dir))
        got = {k: tuple(v.shape) for k, v in state.items()}
        missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = [f"{k}: {list(got[k])} in {WEIGHTS}, {list(expected[k])} from {CARD}"
                 for k in expected if k in got and got[k] != expected[k]]
        if missing or unexpected or wrong:
            detail = "; ".join(wrong[:2]) if wrong else f"missing {missing[:3]}, unexpected {unexpected[:3]}"
            raise DataError(f"{run_dir / MODEL_DIR / WEIGHTS}: the weights do not fit the backbone in {CARD} "
                            f"({detail})")
        backbone, head = _network(card, trust, run_dir)
        net = ClassLevelModel(Preprocess(card.preprocessing), backbone, head, torch.tensor(card.subclass_to_class),
                              card.num_classes, card.score)
        net.load_state_dict(state, strict=False)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 — the card's arguments are data: any failure to build is the card's
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DataError(f"{where}: cannot rebuild the network ({type(exc).__name__}: {first})") from None
    return LoadedModel(run_dir, card, net.eval())


def launch_dir_of(card: ModelCard) -> Path:
    """Where relative data paths of the run's config are resolved: the folder the run was started in."""
    return Path(card.launch_dir) if card.launch_dir and os.path.isdir(card.launch_dir) else Path.cwd()
