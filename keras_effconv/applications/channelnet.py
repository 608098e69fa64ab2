"""ChannelNet-v1 (Gao, Wang & Ji, "ChannelNets", NeurIPS 2018), keras.applications-style.

ChannelNet-v1 is MobileNet v1 whose five 14x14x512 depthwise separable (DWS) layers are replaced
by one group module (GM) and two group channel-wise modules (GCWM), all with 2 groups:

    conv 3x3/2 (32) - DWS 64 - DWS 128/2 - DWS 128 - DWS 256/2 - DWS 256 - DWS 512/2
    GM:   x + DWSg(DWSg(x))                      (DWSg: DWS whose 1x1 conv has 2 groups)
    GCWM: x + BN(GCWConv(DWSg(DWSg(x))))  x 2    (GCWConv fuses the 2 groups, 8 taps)
    DWS 1024/2 - DWS 1024 - global average pool - dense(classes)

Our reading of the paper (its code differs in details): GCWConv follows the group 1x1 convs of
the module and is followed by BN, inside the residual. At 224x224 / 1000 classes this gives
3.74M parameters (3.72M trainable, 3.69M without BatchNorm), as in the paper (3.7M), and 468.5M
MACs (MobileNet v1: 4.25M, 568.7M). The paper's 407M FLOPs is not reachable with this layout (the
6 group DWS layers at 14x14 alone are 160M MACs) and its per-version deltas do not match its own
layer changes either, so we keep the parameter-faithful reading.
"""

import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import FusedBatchNormalization
from keras_effconv.layers.channelnets import GroupChannelWiseConv
from keras_effconv.layers.separable import DepthwiseSeparableBlock

# (filters, stride) of the DWS layers before and after the group stage.
_STEM = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
_HEAD = ((1024, 2), (1024, 1))
_GROUPS = 2
_GCW_MODULES = 2


def _group_module(x, name, fuse):
    """GM (fuse=False) or GCWM (fuse=True): two group-DWS layers (+ GCWConv, BN), residual."""
    channels = x.shape[-1]
    y = DepthwiseSeparableBlock(channels, groups=_GROUPS, name=f"{name}_dws1")(x)
    y = DepthwiseSeparableBlock(channels, groups=_GROUPS, name=f"{name}_dws2")(y)
    if fuse:
        y = GroupChannelWiseConv(_GROUPS, name=f"{name}_gcw")(y)
        y = FusedBatchNormalization(name=f"{name}_gcw_bn")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _body(x, *, include_top, pooling, classes, classifier_activation):
    """Stem conv, DWS stem, GM, two GCWMs, DWS head, classifier (see module docstring)."""
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = FusedBatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for i, (filters, stride) in enumerate(_STEM):
        x = DepthwiseSeparableBlock(filters, strides=stride, name=f"dws{i + 1}")(x)
    x = _group_module(x, "gm", fuse=False)
    for i in range(_GCW_MODULES):
        x = _group_module(x, f"gcwm{i + 1}", fuse=True)
    for i, (filters, stride) in enumerate(_HEAD):
        x = DepthwiseSeparableBlock(filters, strides=stride, name=f"dws{len(_STEM) + i + 1}")(x)
    return _builder.classifier(x, include_top, pooling, classes, classifier_activation)


# Strides 4, 8, 16, 32: the last layer at each resolution.
LEVELS = {"C2": "dws3", "C3": "dws5", "C4": "gcwm2_add", "C5": "dws8"}
ChannelNetV1 = _builder.make_factory(
    "ChannelNetV1", _body, twin="MobileNet", feature_levels=LEVELS,
    doc="ChannelNet-v1 (see `keras_effconv.applications.channelnet`); default input 224x224x3, channels last.",
)
