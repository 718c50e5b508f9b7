"""Datasets (floor 1: files → tensors or shard streams; no Lightning). Each ``conf/dataset/*.yaml``
names its class by ``_target_``: the in-memory ones in ``sdnn.data.sources``, YouTube-8M's in
``sdnn.data.yt8m``. ``sdnn.data.module`` (floor 2) serves them to Lightning as ``SDNNData``."""

from sdnn.data.tensors import TensorSplits

__all__ = ["TensorSplits"]
