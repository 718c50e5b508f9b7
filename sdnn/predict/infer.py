"""Batches → scores: the model over a ``Source`` (the run's evaluation precision), the CSV rows, and the
metrics its labels allow, computed as the run computed them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from sdnn.artifact import LoadedModel, ModelCard
from sdnn.predict.sources import Source
from sdnn.subclass import class_predictions, class_scores


class Metrics:
    """Accuracy (multiclass) or YouTube-8M's four metrics, computed as ``SDNNModule`` computes them."""

    def __init__(self, kind: str, num_classes: int):
        self.kind, self.num_classes = kind, num_classes
        if kind == "acc":
            from torchmetrics.classification import MulticlassAccuracy

            self.acc = MulticlassAccuracy(num_classes, average="micro")
        else:
            from sdnn.metrics import PERR, HitAtOne, MeanAPAndGAP

            self.hit, self.perr, self.pairs = HitAtOne(), PERR(), MeanAPAndGAP(num_classes)

    def update(self, units: Tensor, s2c: Tensor, labels: Tensor) -> None:
        labels = labels.to(units.device)
        if self.kind == "acc":
            self.acc = self.acc.to(units.device)
            self.acc.update(class_predictions(units, s2c), labels)
            return
        scores = class_scores(torch.sigmoid(units.float()), s2c, self.num_classes)
        for metric in (self.hit, self.perr, self.pairs):
            metric.to(units.device).update(scores, labels)

    def compute(self) -> dict[str, float]:
        if self.kind == "acc":
            return {"acc": float(self.acc.compute())}
        pairs = self.pairs.compute()
        return {"hit_at_1": float(self.hit.compute()), "perr": float(self.perr.compute()), "map": float(pairs["map"]),
                "gap": float(pairs["gap"]), "videos": int(pairs["videos"])}


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting with these as a formula


def csv_cell(value) -> str:
    """One CSV cell as Excel's dialect writes it (quoted where it holds a comma, quote or line break); a text
    starting with ``= + - @``, a tab or a carriage return is prefixed with ``'`` and quoted, as OWASP's advice on
    CSV injection has it, so that a class name or file name never runs as a formula."""
    text = str(value)
    if text.startswith(FORMULA):
        return '"' + ("'" + text).replace('"', '""') + '"'
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class CsvWriter:
    """``writerow`` like ``csv.writer`` (CRLF line ends), with ``csv_cell``'s cells."""

    def __init__(self, handle):
        self.handle = handle

    def writerow(self, cells) -> None:
        self.handle.write(",".join(csv_cell(cell) for cell in cells) + "\r\n")


def autocast(card: ModelCard, device: torch.device):
    """The run's evaluation precision: bf16/fp16 autocast where it trained with mixed precision."""
    if card.precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if card.precision.startswith("16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def header(card: ModelCard, top_k: int, tag_column: str | None) -> list[str]:
    first = ["index"] + ([tag_column] if tag_column else [])
    if top_k == 1:
        return first + ["class", "score"] + (["name"] if card.named else [])
    columns = []
    for r in range(1, top_k + 1):
        columns += [f"class_{r}", f"score_{r}"] + ([f"name_{r}"] if card.named else [])
    return first + columns


def predict(model: LoadedModel, source: Source, device: torch.device, top_k: int, writer=None,
            advance: Callable[[int], None] | None = None) -> dict[str, float] | None:
    """Run the model over ``source``; rows to ``writer`` (a ``CsvWriter``) and the metrics its labels allow.
    ``advance(n)`` is told each batch's number of inputs (a progress bar)."""
    card, net = model.card, model.net.to(device)
    s2c = net.subclass_to_class
    on_device = source.on_device.to(device) if source.on_device is not None else None
    metrics = Metrics(source.labels, card.num_classes) if source.labels else None
    if writer is not None:
        writer.writerow(header(card, top_k, source.tag_column))
    index = 0
    with torch.inference_mode():
        for batch in source.batches():
            x = batch.x.to(device)
            if on_device is not None:
                x = on_device(x, train=False)  # the run's own normalisation step, on the device
            with autocast(card, device):
                units = net.network(x) if batch.prepared else net.unit_logits(x)
            units = units.float()
            if metrics is not None and batch.labels is not None:
                metrics.update(units, s2c, batch.labels)
            if writer is not None:
                logits = net.class_logits(units)
                scores = net.scores(units, logits).cpu()
                if top_k == 1:
                    classes = class_predictions(units, s2c).cpu()[:, None]
                else:
                    # ties: the lower class first (a stable sort)
                    classes = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top_k]
                chosen = scores.gather(1, classes)
                for row in range(len(x)):
                    cells = [index + row] + ([batch.tags[row]] if source.tag_column else [])
                    for k in range(classes.shape[1]):
                        cls = int(classes[row, k])
                        cells += [cls, f"{float(chosen[row, k]):.8g}"] + ([card.class_names[cls]] if card.named else [])
                    writer.writerow(cells)
            index += len(x)
            if advance is not None:
                advance(len(x))
    return metrics.compute() if metrics is not None else None


def format_metrics(values: dict[str, float]) -> str:
    if "acc" in values:
        return f"acc {values['acc']!r} ({100 * values['acc']:.2f}%)"
    return "   ".join(f"{k} {values[k]!r}" for k in ("hit_at_1", "perr", "map", "gap")) + f"   videos {values['videos']}"


def compare_with_results(run_dir: Path, split: str, values: dict[str, float]) -> str:
    """How the values compare with ``results.json``'s for the split."""
    try:
        stored = json.loads((run_dir / "results.json").read_text()).get(split) or {}
    except (OSError, ValueError):
        return "(no results.json to compare with)"
    keys = [k for k in ("acc", "hit_at_1", "perr", "map", "gap") if k in values and k in stored]
    if not keys:
        return f"(results.json has no {split} metrics to compare with)"
    same = all(values[k] == stored[k] for k in keys)
    listed = ", ".join(f"{split}.{k} {stored[k]!r}" for k in keys)
    return f"results.json {listed}: {'the same' if same else 'DIFFERENT'}"

