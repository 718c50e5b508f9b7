"""``python -m benchmarks.same_results REF``: do the working tree and commit REF compute the same runs?

Runs a fixed set of short CLI jobs (every method, dataset kind, partition space and optimiser the
code has a path for) once with the code of REF (a ``git worktree`` in a temporary folder) and once
with the working tree, on this machine's CPU, then compares their ``results.json`` (without
wall-clock times, paths and the echoed ``config``), ``subclasses.json`` and ``partition.npz``, and
what ``sdnn.predict`` and ``sdnn.export`` make of the finished runs (predictions, printed metrics,
the exported model's scores).
Exit status 0 when every run agrees. A refactoring that claims "behaviour unchanged" runs this
(docs/architecture.md). Jobs are written with today's keys; for a REF before the ``optim`` /
``scheduler`` groups they are translated to the keys it had.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger=none", "trainer.enable_progress_bar=false"]
ADAM = ["optim=adam", "optim.lr=0.01", "scheduler=exponential", "scheduler.gamma=0.95"]
SKIP = {"train_seconds", "seconds", "partition_seconds", "cache_dir", "origin", "config"}


def jobs(data: Path) -> dict[str, list[str]]:
    yt = ["dataset=yt8m", f"dataset.train={data}/yt8m/train*.tfrecord", f"dataset.validate={data}/yt8m/validate*.tfrecord",
          "dataset.num_classes=12", "dataset.batch_size=32", "dataset.num_workers=0", "model=lr", *ADAM,
          "partitioner=median_split", "subclass.num_classes_to_repartition=3", "observe.figures=false",
          "observe.norms_every=0"]
    return {
        "default": [],
        "baseline": ["method=baseline", "trainer.max_epochs=4", *QUIET],
        "mlp_median_none": ["model=mlp", "partitioner=median_split", "augmenter=none", "subclass.sibling_weight=0.9",
                            "phase1.epochs=2", "trainer.max_epochs=3", *QUIET],
        "fixed_classes": ["subclass.classes=[3,5]", "trainer.max_epochs=2", *QUIET],
        "feature_space": ["model=mlp", "partitioner.space=features", "phase1.epochs=2", "trainer.max_epochs=2", *QUIET],
        "npz_lr": ["dataset=npz", f"dataset.path={data}/vectors.npz", "model=lr", "subclass.num_classes_to_repartition=1",
                   "dataset.batch_size=32", "phase1.epochs=3", "trainer.max_epochs=4", *QUIET],
        "npz_images_ce": ["dataset=npz", f"dataset.path={data}/images.npz", "loss=ce",
                          "subclass.num_classes_to_repartition=1", "dataset.batch_size=32", "phase1.epochs=2",
                          "trainer.max_epochs=2", *QUIET],
        "adam_val_tau": ["model=mlp", *ADAM, "dataset.val_fraction=0.2", "dataset.train_per_class=60",
                         "phase1.epochs=2", "trainer.max_epochs=3", "phase1.tau=5", *QUIET],
        "yt8m": [*yt, "phase1.epochs=0.5", "trainer.max_epochs=2", *QUIET],
        "yt8m_baseline": [*yt, "method=baseline", "trainer.max_epochs=2", *QUIET],
        "paper_cifar10_vgg16": ["experiment=paper/cifar10_vgg16", f"dataset.root={data}/cifar10", "dataset.batch_size=8",
                                "phase1.epochs=1", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                                "+trainer.limit_test_batches=1", "observe.per_class_test_acc=false", *QUIET],
        "class2str": ["method=class2str", "model=mlp", "phase1.epochs=2", "trainer.max_epochs=2", *QUIET],
        "reweight": ["method=reweight", "model=lr", "phase1.epochs=2", "trainer.max_epochs=3", *QUIET],
        "merged_lr": ["model=lr", "dataset.merge=[0,0,1,1,2,2,3,3,4,4]", "subclass.num_classes_to_repartition=2",
                      "phase1.epochs=2", "trainer.max_epochs=3", *QUIET],
    }


def uses(data: Path) -> dict[str, tuple[str, list[str]]]:
    """Uses of finished runs: (run, arguments of ``python -m sdnn.predict`` / ``sdnn.export``); ``{out}`` is
    the folder the files go to."""
    return {
        "predict_split": ("default", ["sdnn.predict", "{run}", "--split", "test", "--quiet"]),
        "predict_input": ("npz_lr", ["sdnn.predict", "{run}", "--input", f"{data}/vectors.npz", "--key", "x_test",
                                     "--labels", "y_test", "--output", "{out}/predictions.csv", "--quiet"]),
        "predict_merged": ("merged_lr", ["sdnn.predict", "{run}", "--split", "test", "--quiet"]),
        "export_onnx": ("npz_lr", ["sdnn.export", "{run}", "--format", "onnx", "--output", "{out}/model.onnx"]),
    }


def old_keys(args: list[str]) -> list[str]:
    """Today's optimiser keys in the layout before the ``optim``/``scheduler`` groups."""
    table = {"optim=adam": "optim.name=adam", "scheduler=exponential": "optim.milestones=[]"}
    return [table.get(a, a.replace("scheduler.", "optim.")) for a in args]


def write_data(data: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from sdnn.data.cifar import write_cifar_batches
    from sdnn.data.yt8m_synth import write_synthetic_shards
    from tests.conftest import write_npz

    write_synthetic_shards(data / "yt8m", classes=12, train_shards=3, validate_shards=1, videos_per_shard=120, seed=1)
    write_npz(data / "vectors.npz", "vectors", with_val=True)
    write_npz(data / "images.npz", "nhwc")
    rng = np.random.default_rng(0)
    write_cifar_batches(data / "cifar10", "cifar10", rng.integers(0, 256, (60, 3, 32, 32), dtype=np.uint8),
                        np.arange(60) % 10, rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8), np.arange(20) % 10)


def run_all(code: Path, out: Path, data: Path) -> None:
    translate = not (code / "conf" / "scheduler").is_dir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(code)}
    for name, args in jobs(data).items():
        args = old_keys(args) if translate else args
        proc = subprocess.run([sys.executable, str(code / "run.py"), *args, f"hydra.run.dir={out / name}",
                               f"phase1.cache_dir={out / 'cache' / name}"], cwd=code, capture_output=True, text=True,
                              env=env)
        print(f"  {code.name}: {name} exit {proc.returncode}", flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)


def use_all(code: Path, out: Path, data: Path) -> None:
    """Each use's standard output (times masked) and files; an exported ONNX model's scores on the npz inputs."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(code)}
    for name, (run, args) in uses(data).items():
        folder = out / "uses" / name
        folder.mkdir(parents=True, exist_ok=True)
        args = [a.format(run=out / run, out=folder) for a in args]
        proc = subprocess.run([sys.executable, "-m", *args], cwd=code, capture_output=True, text=True, env=env)
        text = re.sub(r"\d+(\.\d+)? s\b", "<time> s", proc.stdout).replace(str(out), "<out>")
        (folder / "stdout.txt").write_text(text)  # times and the output folder (before/after) differ
        print(f"  {code.name}: {name} exit {proc.returncode}", flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
        if (folder / "model.onnx").is_file():
            import onnxruntime

            session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
            x = np.load(f"{data}/vectors.npz")["x_test"].astype(np.float32)
            outputs = session.run(None, {session.get_inputs()[0].name: x})
            np.savez(folder / "scores.npz", *outputs)
            (folder / "model.onnx").unlink()  # the file holds paths and ids; its outputs are compared


def compare_uses(a: Path, b: Path, names) -> bool:
    same = True
    for name in names:
        fa, fb = a / "uses" / name, b / "uses" / name
        files = sorted({p.name for p in fa.glob("*")} | {p.name for p in fb.glob("*")})
        verdict = []
        for file in files:
            pa, pb = fa / file, fb / file
            if file.endswith(".npz"):
                ok = pa.is_file() and pb.is_file() and all(np.array_equal(x, y) for x, y in
                                                           zip(np.load(pa).values(), np.load(pb).values()))
            else:
                ok = pa.is_file() and pb.is_file() and pa.read_bytes() == pb.read_bytes()
            verdict.append(f"{file} " + ("same" if ok else "DIFFERENT"))
        print(f"{name:22s} " + (", ".join(verdict) or "no output"))
        same &= bool(verdict) and all("DIFFERENT" not in v for v in verdict)
    return same


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in SKIP}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def compare(a: Path, b: Path, names) -> bool:
    same = True
    for name in names:
        ra, rb = a / name / "results.json", b / name / "results.json"
        if not (ra.is_file() and rb.is_file()):
            print(f"{name:22s} missing results.json")
            same = False
            continue
        verdict = ["results " + ("same" if _strip(json.loads(ra.read_text())) == _strip(json.loads(rb.read_text()))
                                 else "DIFFERENT")]
        sa, sb = ra.parent / "subclasses.json", rb.parent / "subclasses.json"
        if sa.is_file() or sb.is_file():
            ok = sa.is_file() and sb.is_file() and json.loads(sa.read_text()) == json.loads(sb.read_text())
            verdict.append("subclasses.json " + ("same" if ok else "DIFFERENT"))
        pa, pb = ra.parent / "partition.npz", rb.parent / "partition.npz"
        if pa.is_file() or pb.is_file():
            ok = pa.is_file() and pb.is_file()
            if ok:
                x, y = np.load(pa), np.load(pb)
                ok = all(k in y.files and np.array_equal(x[k], y[k]) for k in x.files)  # new arrays may be added
            verdict.append("partition.npz " + ("same arrays" if ok else "DIFFERENT"))
        print(f"{name:22s} " + ", ".join(verdict))
        same &= all("DIFFERENT" not in v for v in verdict)
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.same_results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", help="the commit to compare the working tree with, e.g. HEAD~1 or 6921d7e")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sdnn-same-") as tmp:
        tmp = Path(tmp)
        reference = tmp / "reference"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(reference), args.ref], cwd=ROOT, check=True)
        try:
            write_data(tmp / "data")
            print(f"{args.ref} (in {reference}):", flush=True)
            run_all(reference, tmp / "before", tmp / "data")
            use_all(reference, tmp / "before", tmp / "data")
            print("working tree:", flush=True)
            run_all(ROOT, tmp / "after", tmp / "data")
            use_all(ROOT, tmp / "after", tmp / "data")
            same = compare(tmp / "before", tmp / "after", jobs(tmp / "data"))
            same &= compare_uses(tmp / "before", tmp / "after", uses(tmp / "data"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=ROOT, check=False)
    print("every run agrees" if same else "some runs differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
