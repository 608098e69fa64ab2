"""MobileNetV2CIFAR: MobileNetV2 (Sandler et al., 2018) adapted to 32x32 inputs, a reference for the
CIFAR benchmarks built from core keras layers (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU6).

Same inverted residual blocks (1x1 expand x6 -> depthwise 3x3 -> linear 1x1 project, identity
shortcut when the shape is kept), the same seven stages (t, c, n) and the 1x1 head conv to 1280 as
`keras.applications.MobileNetV2`, at width multiplier `alpha` = 0.5 (channels rounded to multiples
of 8 as keras does). The common CIFAR adaptation: keras downsamples in the stem and in stages 2, 3, 4
and 6 (224 -> 7x7); here the stem and stage 2 keep stride 1, so 32x32 ends at 4x4 after stages 3, 4
and 6. (Downsampling in stages 2, 3, 4 instead would run the wide stages at 4x4: 14.0 M MACs.)
BN is `FusedBatchNormalization` (Keras' BN with a fused training step: same weights and inference), as
in every application builder, so the bench's training column compares it with the CIFAR ResNets on
the same BN; its momentum is Keras' default 0.99 (keras' MobileNetV2: 0.999, slow for 10-epoch runs). At 32x32 / 10 classes: 28.0 M MACs (`keras_effconv.analysis.count_macs`), 0.71 M parameters.
"""

import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import FusedBatchNormalization

ALPHA = 0.5
# (expansion t, filters c, blocks n, stride of the first block s) of the seven stages.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
HEAD_FILTERS = 1280


def make_divisible(value, divisor=8):
    """Round a channel count to the nearest multiple of `divisor`, never more than 10 % down (keras' rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(x, filters, kernel, name, relu_name=None, relu=True):
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    x = FusedBatchNormalization(name=name + "_BN")(x)
    return keras.layers.ReLU(6.0, name=relu_name or name + "_relu")(x) if relu else x


def inverted_residual(x, filters, expansion, stride, name):
    """1x1 expand (skipped when expansion == 1) -> depthwise 3x3 -> linear 1x1 project (+ identity)."""
    channels = x.shape[-1]
    y = _conv_bn(x, expansion * channels, 1, name + "_expand") if expansion != 1 else x
    y = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name + "_depthwise")(y)
    y = FusedBatchNormalization(name=name + "_depthwise_BN")(y)
    y = keras.layers.ReLU(6.0, name=name + "_depthwise_relu")(y)
    y = _conv_bn(y, filters, 1, name + "_project", relu=False)
    if stride == 1 and channels == filters:
        return keras.layers.Add(name=name + "_add")([x, y])
    return y


def _body(x, *, include_top, pooling, classes, classifier_activation, alpha):
    """Stride-1 stem, the seven stages of inverted residual blocks, the 1x1 head, the classifier."""
    x = _conv_bn(x, make_divisible(32 * alpha), 3, "Conv1")
    index = 0
    for expansion, filters, blocks, stride in STAGES:
        for i in range(blocks):
            name = f"block_{index}" if index else "expanded_conv"
            x = inverted_residual(x, make_divisible(filters * alpha), expansion, stride if i == 0 else 1, name)
            index += 1
    head = HEAD_FILTERS if alpha <= 1.0 else make_divisible(HEAD_FILTERS * alpha)
    x = _conv_bn(x, head, 1, "Conv_1", relu_name="out_relu")
    return _builder.classifier(x, include_top, pooling, classes, classifier_activation)


# Strides 4 (end of stage 5, keras' C4 layer) and 8 (the head, keras' C5): CIFAR stops at stride 8.
LEVELS = {"C2": "block_12_add", "C3": "out_relu"}


MobileNetV2CIFAR = _builder.make_factory(
    "MobileNetV2CIFAR", _body, alpha=ALPHA, classes=10, default_size=32, min_size=8, feature_levels=LEVELS,
    doc="Instantiates MobileNetV2CIFAR, MobileNetV2 at alpha 0.5 for 32x32 inputs "
        "(see `keras_effconv.applications.mobilenet_cifar`).",
)
