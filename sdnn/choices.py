"""The names each configuration group accepts. No heavy imports here, so that a wrong value is
reported before torch is even loaded (``sdnn.validate``)."""

METHODS = ("sdnn", "baseline")
LOSSES = ("bce", "ce")
SPACES = ("input", "features")
PARTITIONERS = ("kmeans", "median_split", "random")
AUGMENTERS = ("none", "sample_pairing", "extrapolation")
BACKBONE_NAMES = ("cnn", "mlp", "lr", "cnn1d", "vgg16", "wrn")  # sdnn.models.BACKBONES
IMAGE_BACKBONES = ("cnn", "vgg16", "wrn")
