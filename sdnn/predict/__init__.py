"""``python -m sdnn.predict RUN_DIR``: predictions from a finished run's ``model/`` (see ``sdnn.predict.cli``).

``sources`` reads the inputs, ``infer`` runs the model over them, ``cli`` is the command line."""

from __future__ import annotations

from sdnn.predict.cli import main

__all__ = ["main"]
