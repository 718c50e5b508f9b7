"""``python -m sdnn.export RUN_DIR --format onnx|torchscript --output FILE``: a finished run's model as
one self-contained file for serving, without sdnn.

The exported model is the class-level network of ``sdnn.artifact.ClassLevelModel`` with the run's
preprocessing inside: it takes raw inputs as ``python -m sdnn.predict --input`` does, in the run's
raw layout and dtype (``model/model.json`` ``preprocessing``: e.g. uint8 (N, H, W, C) images for an
npz of NHWC uint8 images, uint8 (N, 3, H, W) for CIFAR, float32 (N, F) vectors), any batch size N,
and returns two (N, c) float32 tensors:

``logits``  each class's logit: the max over its subclasses' logits (SPEC §7b);
``scores``  the scores ``sdnn.predict`` writes: sigmoid(logits) (sigmoid-loss runs), or the softmax
            probability of the class's units, summed (softmax losses).

The predicted class is the arg-max of either. The model card (class names, preprocessing, input and
output names) travels inside the file: ONNX metadata ``sdnn`` and TorchScript extra file ``sdnn.json``.

Before anything is written, the exported model is run on seeded inputs (a batch of several and a
batch of one) by ONNX Runtime (ONNX) or by the reloaded TorchScript module, and compared with the
PyTorch model: the same classes and close logits and scores, or a one-line error and no file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sdnn.artifact import LoadedModel, load_model
from sdnn.errors import DataError
from sdnn.predict.cli import STDOUT, OneLineParser, add_trust, atomic_output, output_path, with_one_line_errors

FORMATS = ("onnx", "torchscript")
INPUT, OUTPUTS = "input", ("logits", "scores")
RTOL, ATOL = 1e-4, 1e-4  # float32 kernels of two runtimes: the same math in another order


def example_inputs(model: LoadedModel, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeded raw inputs in the run's form: uint8 images, or float values around the training
    statistics (so the check runs where the network was trained)."""
    spec = model.card.preprocessing
    generator = torch.Generator().manual_seed(seed)
    if spec.kind == "uint8":
        return torch.randint(0, 256, (n, *spec.shape), generator=generator, dtype=torch.uint8)
    x = torch.randn((n, *spec.input_shape), generator=generator)
    if spec.mean is not None:
        shape = (1, -1, 1, 1) if spec.is_image else (1, -1)
        x = x * torch.tensor(spec.std).view(shape) + torch.tensor(spec.mean).view(shape)
    x = x * spec.divide
    if spec.layout == "nhwc":
        x = x.permute(0, 2, 3, 1)
    elif spec.layout == "nhw":
        x = x[:, 0]
    return x.contiguous().float()


def card_metadata(model: LoadedModel) -> str:
    """What a server needs to know, as JSON: the model card without the training configuration, plus the
    exported model's input and outputs."""
    card = model.card.to_json()
    card.pop("config", None)
    spec = model.card.preprocessing
    card["exported"] = {"input": {"name": INPUT, "dtype": "uint8" if spec.kind == "uint8" else "float32",
                                  "shape": ["N", *spec.shape]},
                        "outputs": {name: {"dtype": "float32", "shape": ["N", model.card.num_classes]}
                                    for name in OUTPUTS}}
    return json.dumps(card)


def compare(reference: tuple[torch.Tensor, torch.Tensor], got: tuple[np.ndarray, np.ndarray], runtime: str,
            batch: int) -> None:
    """The same classes and close logits and scores, or a one-line ``DataError``."""
    logits, scores = (torch.as_tensor(np.asarray(g)) for g in got)
    ref_logits, ref_scores = reference
    if logits.shape != ref_logits.shape or scores.shape != ref_scores.shape:
        raise DataError(f"export check failed: {runtime} returned shapes {tuple(logits.shape)}, {tuple(scores.shape)} "
                        f"for a batch of {batch}; PyTorch {tuple(ref_logits.shape)}; nothing was written")
    differ = int((logits.argmax(1) != ref_logits.argmax(1)).sum())
    gap = float((logits - ref_logits).abs().max())
    close = torch.allclose(logits, ref_logits, rtol=RTOL, atol=ATOL) and \
        torch.allclose(scores, ref_scores, rtol=RTOL, atol=ATOL)
    if differ or not close:
        raise DataError(f"export check failed: {runtime} disagrees with PyTorch on a batch of {batch} "
                        f"({differ} different class(es), max |Δ logit| {gap:.3g}); nothing was written")


def export_onnx(model: LoadedModel, path: Path, example: torch.Tensor, opset: int | None) -> None:
    import onnx

    net = model.net
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed. Skipping torchvision::nms" and such
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (example,), None, dynamo=True, input_names=[INPUT],
                                        output_names=list(OUTPUTS), opset_version=opset, external_data=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    proto.metadata_props.add(key="sdnn", value=card_metadata(model))
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path))


def check_onnx(model: LoadedModel, path: Path, inputs: list[torch.Tensor]) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in inputs:
        with torch.inference_mode():
            reference = model.net(x)
        compare(reference, session.run(list(OUTPUTS), {INPUT: x.numpy()}), "ONNX Runtime", len(x))


def export_torchscript(model: LoadedModel, path: Path, example: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; it still works
        traced = torch.jit.trace(model.net, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"sdnn.json": card_metadata(model)})


def check_torchscript(model: LoadedModel, path: Path, inputs: list[torch.Tensor]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
    for x in inputs:
        with torch.inference_mode():
            reference, got = model.net(x), loaded(x)
        compare(reference, tuple(g.numpy() for g in got), "the reloaded TorchScript module", len(x))


def export(run_dir: str | Path, fmt: str, output: str | Path, opset: int | None = None,
           trust: Sequence[str] = ()) -> tuple[Path, LoadedModel]:
    """Export, check, then move into place (``-``: standard output); returns the written path and the model.
    ``trust``: packages whose classes the card may name besides sdnn and torch.nn (``--trust``)."""
    output = output_path(str(output))  # a FIFO, device or folder is refused before any work
    model = load_model(run_dir, trust)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as exc:
            raise DataError(f"--format onnx needs the export extra ({exc.name} is not installed): "
                            "pip install 'sdnn[export]'") from None
    example = example_inputs(model, 4, seed=0)
    checks = [example_inputs(model, 5, seed=1), example_inputs(model, 1, seed=2)]
    with atomic_output(output) as tmp:
        try:
            if fmt == "onnx":
                export_onnx(model, tmp, example, opset)
            else:
                export_torchscript(model, tmp, example)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 — an exporter's failure, in one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"--format {fmt}: the exporter failed ({type(exc).__name__}: {first[:300]}); "
                            "nothing was written") from None
        (check_onnx if fmt == "onnx" else check_torchscript)(model, tmp, checks)
    return output, model


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m sdnn.export", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (it holds model/)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, metavar="FILE", help="e.g. model.onnx or model.pt; - for "
                        "standard output")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    add_trust(parser)
    args = parser.parse_args(argv)
    return with_one_line_errors(lambda: _export_and_say(args))


def _export_and_say(args: argparse.Namespace) -> int:
    path, loaded = export(args.run_dir, args.format, args.output, args.opset, args.trust)
    model = loaded.card
    spec = model.preprocessing
    print(f"exported {args.format}: {path}\n  input '{INPUT}': {'uint8' if spec.kind == 'uint8' else 'float32'} "
          f"(N, {', '.join(map(str, spec.shape))}), raw as {spec.source or 'the training data'}\n"
          f"  outputs 'logits', 'scores': float32 (N, {model.num_classes}); checked against PyTorch on 6 inputs",
          file=sys.stderr if str(path) == STDOUT else sys.stdout)  # standard output holds the model
    return 0


if __name__ == "__main__":
    sys.exit(main())
