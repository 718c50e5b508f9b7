"""The machine's float-kernel fingerprint: what decides how a CPU run rounds. Samples of output in the README
are compared number for number only on the machine that printed them (``python -m tests.machine`` prints the
line to record with a new sample).

The CPU's model name is not enough (on VMs /proc/cpuinfo may say only "Intel(R) Xeon(R) Processor"), nor torch's
build, vector ISA and thread count together: two machines with the same ones gave different runs. So the line
holds the CPU's vendor, family, model and stepping, a hash of its feature flags, and the torch version, the
kernels torch picked (``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` changes) and
its thread count (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
import sys
from pathlib import Path


def cpu_identity() -> str:
    """``<vendor> family <f> model <m> stepping <s>, flags <hash>`` from /proc/cpuinfo's first processor (Linux),
    else the platform's processor string (which then matches no Linux record)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if fields:
                    break
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = fields.get("flags") or fields.get("Features", "")  # x86 | ARM
    if not flags:
        return f"{platform.system()} {platform.machine()} {platform.processor() or 'unknown CPU'}"
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    vendor = fields.get("vendor_id") or fields.get("CPU implementer", "unknown vendor")
    family = fields.get("cpu family") or fields.get("CPU architecture", "?")
    model = fields.get("model") or fields.get("CPU part", "?")
    stepping = fields.get("stepping") or fields.get("CPU revision", "?")
    return f"{vendor} family {family} model {model} stepping {stepping}, flags {digest}"


def fingerprint() -> str:
    """The CPU (``cpu_identity``), torch's version, its CPU kernels and its number of threads, as one line."""
    import torch

    return (f"{cpu_identity()}; torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} thread(s)")


@functools.cache
def fingerprint_of_runs() -> str:
    """``fingerprint()`` as a run that the tests start sees it: in a subprocess with this environment (this
    process's thread count may have been changed by a test)."""
    proc = subprocess.run([sys.executable, "-m", "tests.machine"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=600, check=True)
    return proc.stdout.strip()


if __name__ == "__main__":
    print(fingerprint())
