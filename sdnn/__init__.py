"""SDNN: subclass deep neural networks (Gkalelis & Mezaris, MMM 2020) with Lightning + Hydra.

Pure math: ``sdnn.neglect`` (θ), ``sdnn.losses`` (eq. 3, eq. 11), ``sdnn.partition``
(Algorithm 1, k-means), ``sdnn.augment``, ``sdnn.subclass``, ``sdnn.metrics``; the
two-phase strategy: ``sdnn.pipeline``; the CLI: ``python run.py``.
"""

__version__ = "0.1.0"
