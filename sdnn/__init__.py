"""SDNN: subclass deep neural networks (Gkalelis & Mezaris, MMM 2020) with Lightning + Hydra.

Pure math: ``sdnn.neglect`` (θ), ``sdnn.losses`` (eq. 3, eq. 11), ``sdnn.partition``
(Algorithm 1, k-means), ``sdnn.augment``, ``sdnn.subclass``, ``sdnn.metrics``; the
two-phase strategy: ``sdnn.pipeline``; the CLI: ``python run.py``.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _received_folder_is_not_code() -> None:
    """``python -m sdnn.predict`` / ``sdnn.export`` read run folders that people send: Python put the current
    folder first on the import path (``-m``), and that folder may be the run folder, so it is taken off before
    anything else is imported (a module planted there never runs). Runs first, as sdnn's package import."""
    argv = getattr(_sys, "orig_argv", [])
    module = next((argv[i + 1] if arg == "-m" and i + 1 < len(argv) else arg[2:]
                   for i, arg in enumerate(argv[1:], 1) if arg.startswith("-m")), None)
    if _sys.argv[:1] == ["-m"] and module in ("sdnn.predict", "sdnn.export") and _sys.path and \
            _sys.path[0] in ("", _os.getcwd()) and not _sys.flags.safe_path:
        del _sys.path[0]


_received_folder_is_not_code()
