"""DemoCNN: a small plain CNN (~0.3 M params) for `effconv demo` and quick tests, on the same
factory shape and input contract as every other model."""

import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import FusedBatchNormalization


def _body(x, *, include_top, pooling, classes, classifier_activation):
    """Three stages of two 3x3 conv + BN + ReLU (32, 64, 128 filters), max pooling between them."""
    for i, filters in enumerate((32, 64, 128)):
        for j in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = FusedBatchNormalization(name=f"bn{i}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{i}_{j}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    return _builder.classifier(x, include_top, pooling, classes, classifier_activation)


DemoCNN = _builder.make_factory(
    "DemoCNN", _body, classes=10, default_size=32, min_size=8,
    doc="Instantiates DemoCNN, a small plain CNN for demos and tests (no feature levels).",
)
