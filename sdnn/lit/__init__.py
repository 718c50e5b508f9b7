"""Lightning glue: the one LightningModule and the callbacks; the math lives in floor-1 modules."""

from sdnn.lit.callbacks import NeglectCallback
from sdnn.lit.module import SDNNModule
from sdnn.lit.observe import PerClassAccuracyHistory

__all__ = ["NeglectCallback", "PerClassAccuracyHistory", "SDNNModule"]
