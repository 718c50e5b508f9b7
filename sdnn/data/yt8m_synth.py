"""``python -m sdnn.data.yt8m_synth OUT``: small YouTube-8M-format shards with learnable structure.

For tests, demos and benchmarks: ``OUT/train0000.tfrecord …`` and ``OUT/validate0000.tfrecord …``
with the real record schema (SPEC §6: ``id``, ``labels``, ``mean_rgb`` 1,024 floats,
``mean_audio`` 128 floats). Class frequencies follow a power law, as in YouTube-8M; a video has
1–4 labels; its features are the sum of one *mode* per label plus noise, and every class has
``--modes`` modes (two by default), so classes are multimodal: the structure that subclasses
can capture.

    python -m sdnn.data.yt8m_synth data/yt8m-synth --classes 50 --train-shards 4 --videos-per-shard 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sdnn.data.tfrecord import encode_example, write_records
from sdnn.data.yt8m import FEATURE_SIZES


def synth_videos(n: int, classes: int, rng: np.random.Generator, prototypes: np.ndarray, first_id: int,
                 noise: float = 0.6) -> list[dict]:
    """``prototypes``: (classes, modes, 1152) unit vectors."""
    frequency = 1.0 / np.arange(1, classes + 1) ** 0.8
    frequency /= frequency.sum()
    videos = []
    for i in range(n):
        labels = np.sort(rng.choice(classes, size=int(rng.integers(1, 5)), replace=False, p=frequency))
        modes = rng.integers(prototypes.shape[1], size=len(labels))
        vector = prototypes[labels, modes].sum(axis=0) + noise * rng.standard_normal(prototypes.shape[2])
        vector = vector.astype(np.float32)
        videos.append({"id": f"{first_id + i:08x}".encode(), "labels": labels.astype(np.int64),
                       "mean_rgb": vector[:FEATURE_SIZES["mean_rgb"]], "mean_audio": vector[FEATURE_SIZES["mean_rgb"]:]})
    return videos


def write_synthetic_shards(out: str | Path, classes: int = 50, train_shards: int = 4, validate_shards: int = 2,
                           videos_per_shard: int = 250, modes: int = 2, seed: int = 0, first_id: int = 0,
                           ) -> dict[str, list[Path]]:
    """Writes the shards; returns ``{"train": [...], "validate": [...]}``. Video ids are
    ``first_id``, ``first_id + 1``, … in hexadecimal."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    dim = sum(FEATURE_SIZES.values())
    prototypes = rng.standard_normal((classes, modes, dim))
    prototypes /= np.linalg.norm(prototypes, axis=-1, keepdims=True)
    written: dict[str, list[Path]] = {"train": [], "validate": []}
    next_id = first_id
    for split, shards in (("train", train_shards), ("validate", validate_shards)):
        for shard in range(shards):
            videos = synth_videos(videos_per_shard, classes, rng, prototypes, next_id)
            next_id += videos_per_shard
            path = out / f"{split}{shard:04d}.tfrecord"
            write_records(path, (encode_example(v) for v in videos))
            written[split].append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdnn.data.yt8m_synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder for the shards")
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--train-shards", type=int, default=4)
    parser.add_argument("--validate-shards", type=int, default=2)
    parser.add_argument("--videos-per-shard", type=int, default=250)
    parser.add_argument("--modes", type=int, default=2, help="modes (natural subclasses) per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.classes, args.train_shards, args.videos_per_shard, args.modes) < 1 or args.validate_shards < 0:
        parser.error("--classes, --train-shards, --videos-per-shard and --modes must be >= 1")
    if args.classes < 4:
        parser.error("--classes must be >= 4 (a video has up to 4 labels)")
    written = write_synthetic_shards(args.out, args.classes, args.train_shards, args.validate_shards,
                                     args.videos_per_shard, args.modes, args.seed)
    for split, paths in written.items():
        print(f"{split}: {len(paths)} shard(s) × {args.videos_per_shard} videos in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
