"""``python -m benchmarks``: run the suite, print a table of ratios, write docs/benchmarks.md.

Every ratio compares two timings taken in the same run on the same machine:
``ratio = baseline time / our time`` (> 1 means ours is faster; for the θ cost rows it is
"steps without θ / steps with θ", so 0.98 means θ adds 2%).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import sys
import warnings
from pathlib import Path

import torch

from benchmarks.suite import SCALES, SECTIONS


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}; {os.cpu_count()} logical cores; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); Python {platform.python_version()}; {platform.system()}")


HEADER = ("# Benchmarks\n\n"
          "Every ratio compares two timings taken in the same run, on the same machine: "
          "`baseline time / our time` (> 1: ours is faster; for the θ-cost rows, "
          "`time without θ / time with θ`, so 0.98 means θ adds 2% to a step). Whole-step timings on a "
          "shared 2-core VM vary by several percent between repetitions, more than θ costs at CIFAR shapes, "
          "so those rows also give θ's own per-step work, timed alone on tensors of the step's shapes, "
          "as a share of the step. Each section names the command, the date and the machine that produced "
          "it; `python -m benchmarks` replaces the sections it runs and keeps the others (the GPU section "
          "runs only where CUDA is available).\n")


def render(results: dict[str, tuple[str, list[tuple]]], command: str) -> str:
    lines = [HEADER]
    for key, (title, rows) in results.items():
        lines += section(key, title, rows, command)
    return "\n".join(lines)


def _versions() -> str:
    try:
        import torchvision
        return f"torch {torch.__version__}, torchvision {torchvision.__version__}"
    except ImportError:
        return f"torch {torch.__version__}, no torchvision"


def section(key: str, title: str, rows: list[tuple], command: str) -> list[str]:
    """One section, between markers so that a later run can replace it in an existing file."""
    gpu = f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    lines = [f"<!-- section: {key} -->", f"## {title}", "",
             f"From `{command}` on {datetime.date.today().isoformat()}; {machine()}{gpu}; {_versions()}.", ""]
    if not rows:
        return lines + ["No rows: this section needs a CUDA GPU.", f"<!-- /section: {key} -->", ""]
    lines += ["| case | baseline | s | ours | s | ratio |", "|---|---|---:|---|---:|---:|"]
    for what, base, base_s, ours, ours_s in rows:
        lines.append(f"| {what} | {base} | {base_s:.4f} | {ours} | {ours_s:.4f} | {base_s / ours_s:.2f}× |")
    return lines + [f"<!-- /section: {key} -->", ""]


def merge(existing: str, results: dict[str, tuple[str, list[tuple]]], command: str) -> str:
    """Replace the sections that were run in ``existing`` (or append them); keep the others, and
    refresh the header above the first section."""
    first = existing.find("<!-- section:")
    if first > 0:
        existing = HEADER + "\n" + existing[first:]
    for key, (title, rows) in results.items():
        block = "\n".join(section(key, title, rows, command)).rstrip("\n")
        pattern = re.compile(rf"<!-- section: {key} -->.*?<!-- /section: {key} -->", re.S)
        existing = pattern.sub(lambda _: block, existing) if pattern.search(existing) else \
            existing.rstrip("\n") + "\n\n" + block + "\n"
    return existing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, to check that everything runs")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS),
                        help="run only these sections (their sections in --out are replaced, the rest kept)")
    parser.add_argument("--out", help="Markdown file to write ('-' for none; default: docs/benchmarks.md for the "
                                      "full sizes, none for --quick and --smoke, whose numbers are not the docs')")
    args = parser.parse_args(argv)
    scale = SCALES["smoke" if args.smoke else "quick" if args.quick else "full"]
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    results = {}
    default = [key for key in SECTIONS if key != "gpu" or torch.cuda.is_available()]
    for key in args.only or default:
        title, bench = SECTIONS[key]
        print(f"running: {title} ({scale.name})", file=sys.stderr, flush=True)
        results[key] = (title, bench(scale))
    command = "python -m benchmarks" + {"full": "", "quick": " --quick", "smoke": " --smoke"}[scale.name]
    if args.only:
        command += " --only " + " ".join(args.only)
    text = render(results, command)
    print(text)
    args.out = args.out or ("docs/benchmarks.md" if scale.name == "full" else "-")
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_file():  # keep the sections that were not run (e.g. GPU rows on a CPU machine)
            text = merge(out.read_text(), results, command)
        out.write_text(text.rstrip("\n") + "\n")
        print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
