"""EffVGG16 / EffVGG19: VGG rebuilt from the paper's schemes, mirroring keras.applications.VGG16.

Same five blocks, conv counts, widths, pooling and layer names (``block3_conv2``, ``fc1`` ...):
- ``block1_conv1`` (3 -> 64 at full resolution) is a one-step SIC: intra-channel 3x3 + projection;
- every other 3x3 conv is a SpatialBottleneck (stride-2 intra-channel conv, projection at a quarter
  of the pixels, intra-channel deconvolution) + BN + ReLU. The first conv of each block projects
  densely (it mixes all channels); the others use block-diagonal topological projections
  (`groups` blocks, no channel gathers);
- the classifier replaces Flatten + 25088x4096 by an intra-channel conv over the whole final map
  (``fc1_dw``) + Dense 512 -> 1024 (``fc1``), Dense 1024 -> 1024 (``fc2``), ``predictions``.
"""

import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import FusedBatchNormalization
from keras_effconv.layers import IntraChannelConv2D
from keras_effconv.layers import SIConv2D
from keras_effconv.layers import SpatialBottleneck

CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
# fc_units 1024, not 4096: at batch 1 the 4096x4096 fc2 alone streams 67 MB of weights per image,
# which dominated the measured LiteRT latency.
DEFAULT_CONFIG = {"groups": 4, "fc_units": 1024}


def _conv(x, width, projection, config, name):
    """One 3x3 conv of the given `projection`: "sic" (block1_conv1: too few input channels for a
    bottleneck), "dense" (first conv of a block, mixes all channels) or "grouped"."""
    if projection == "sic":
        return SIConv2D(width, 3, depth=1, name=name)(x)
    topology = None if projection == "dense" else {"blocks": config["groups"], "band": 1}
    x = SpatialBottleneck(width, factor=2, topology=topology, name=name)(x)
    x = FusedBatchNormalization(epsilon=1.001e-5, name=name + "_bn")(x)
    return keras.layers.Activation("relu", name=name + "_relu")(x)


def _projection(block, conv):
    if (block, conv) == (1, 1):
        return "sic"
    return "dense" if conv == 1 else "grouped"


def _body(x, *, include_top, pooling, classes, classifier_activation, depth, config=None):
    """Five blocks of 3x3 convs + max pooling, then the intra-channel classifier (module docstring)."""
    cfg = dict(DEFAULT_CONFIG, **(config or {}))
    for block, (width, count) in enumerate(zip(WIDTHS, CONVS[depth]), start=1):
        for i in range(1, count + 1):
            x = _conv(x, width, _projection(block, i), cfg, f"block{block}_conv{i}")
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    if not include_top:
        return _builder.classifier(x, False, pooling, classes, classifier_activation)
    x = IntraChannelConv2D((x.shape[1], x.shape[2]), padding="valid", name="fc1_dw")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(cfg["fc_units"], activation="relu", name="fc1")(x)
    x = keras.layers.Dense(cfg["fc_units"], activation="relu", name="fc2")(x)
    return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)


LEVELS = {f"C{stage}": f"block{stage}_pool" for stage in (2, 3, 4, 5)}  # strides 4, 8, 16, 32
EffVGG16, EffVGG19 = (
    _builder.make_factory(f"Eff{depth.upper()}", _body, depth=depth, twin=depth.upper(), feature_levels=LEVELS,
                          doc=f"Instantiates Eff{depth.upper()} (see `keras_effconv.applications.vgg`).")
    for depth in CONVS
)
