"""CIFAR-size (32x32) ResNets: the standard ResNet-20/32/56 (He et al., 2016, Sec. 4.2) and their
Eff counterparts, for recipes and benchmarks that fit a CPU.

ResNet-n: a 3x3 conv (16), then three stages of (n - 2) / 6 basic blocks (two 3x3 convs) at widths
16, 32, 64, global pooling, dense. EffResNet-n keeps the stages and block counts, but each basic
block is one two-step SIConv2D (x <- relu(x + BN(P . DW(x))) twice), which replaces both 3x3 convs
and the block shortcut: ~5x fewer MACs. Stage transitions use the SIC's strided first step.
"""

import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import SIConv2D

WIDTHS = (16, 32, 64)


def _bn_relu(x, name):
    x = keras.layers.BatchNormalization(name=name + "_bn")(x)
    return keras.layers.Activation("relu", name=name + "_relu")(x)


def _conv(width, stride, name):
    return keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                               kernel_initializer="he_normal", kernel_regularizer=None, name=name)


def basic_block(x, width, stride, name):
    """Two 3x3 convs + identity (or 1x1 strided projection) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
        shortcut = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False, name=name + "_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(name=name + "_0_bn")(shortcut)
    x = _bn_relu(_conv(width, stride, name + "_1_conv")(x), name + "_1")
    x = keras.layers.BatchNormalization(name=name + "_2_bn")(_conv(width, 1, name + "_2_conv")(x))
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def eff_block(x, width, stride, name):
    """One two-step SIC: each step x <- relu(x + BN(P . DW(x))) (first step strided, no shortcut)."""
    return SIConv2D(width, 3, strides=stride, depth=2, name=name + "_sic")(x)


def CifarResNet(
    depth, eff, include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
    classes=10, classifier_activation="softmax", name=None,
):
    """The one builder behind ResNet20/32/56 and EffResNet20/32/56 (see module docstring)."""
    if (depth - 2) % 6:
        raise ValueError(f"`depth` must be 6n + 2 (20, 32, 56, ...); received depth={depth!r}")
    model_name = f"{'Eff' if eff else ''}ResNet{depth}"
    image, inputs = _builder.make_input(model_name, weights, include_top, input_tensor, input_shape, classes,
                                        pooling, classifier_activation, default_size=32, min_size=8)
    x = _bn_relu(_conv(WIDTHS[0], 1, "conv1_conv")(image), "conv1")
    block = eff_block if eff else basic_block
    for stage, width in enumerate(WIDTHS):
        for i in range((depth - 2) // 6):
            x = block(x, width, 2 if stage > 0 and i == 0 else 1, f"conv{stage + 2}_block{i + 1}")
    x = _builder.classifier(x, include_top, pooling, classes, classifier_activation)
    model = keras.Model(inputs, x, name=name or model_name.lower())
    return _builder.load_weights(model, model_name, weights, include_top)


def _cifar(variant, *args):
    depth, eff = variant
    return CifarResNet(depth, eff, *args)


ResNet20, ResNet32, ResNet56 = (
    _builder.make_factory(_cifar, (d, False), f"ResNet{d}", "ResNet50", classes=10) for d in (20, 32, 56)
)
EffResNet20, EffResNet32, EffResNet56 = (
    _builder.make_factory(_cifar, (d, True), f"EffResNet{d}", "ResNet50", classes=10) for d in (20, 32, 56)
)
