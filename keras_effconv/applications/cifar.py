"""CIFAR-size (32x32) ResNets: the standard ResNet-20/32/56 (He et al., 2016, Sec. 4.2) and their
Eff counterparts, for recipes and benchmarks that fit a CPU.

ResNet-n: a 3x3 conv (16), then three stages of (n - 2) / 6 basic blocks (two 3x3 convs + shortcut)
at widths 16, 32, 64, global pooling, dense.

EffResNet-n keeps the stem, the stages, the block counts and ResNet's block shortcuts, and replaces
each 3x3 convolution of a basic block by one SIC step without its own shortcut: intra-channel 3x3
(stride 2 at stage transitions) -> dense 1x1 projection -> BN. The MACs saved (a 3x3 conv costs
9 C F per pixel, the step 9 C + C F) buy width where pixels are few: widths 16, 40, 96. EffResNet20
has 9.5 M MACs (4.3x fewer than ResNet20) and 78 k parameters.

Measured against the alternatives on CIFAR-10 (45k/5k split, the recipe of recipes/cifar10, lr 0.2,
3 epochs, one seed; recipes/cifar10/README.md): this design 71.6 % validation accuracy, the previous
EffResNet20 (each block one two-step SIConv2D with a shortcut per step, widths 16/32/64, 6.4 M MACs,
39 k params) 66.9 %. Spatial bottlenecks in place of the steps (widths 32-48) were 2.5-3.5x slower
per training step on CPU than ResNet20 and were not pursued at 32x32. Wide, shallow pooled SIC nets
(`sic_cifar.py`) at the same budget train twice as fast per epoch but were no more accurate at 10 epochs:
79.3-80.0 % for five layouts at <= 10.2 M MACs, 80.5 % (2 seeds) for EffSICNet8 at 10.7 M. This design at
10 epochs (seeds 0, 1): 79.74 ± 0.28 % against ResNet20's 81.94 ± 0.30 %, 2.2 points short of the twin; at 25
epochs (seed 0) 83.30 % against 84.68 %, 1.4 points short; at 50 epochs (seeds 0, 1) 85.25 ± 0.27 %
against 85.99 ± 0.11 %, 0.74 points short. BN after every intra-channel 3x3 with zero-initialised last
gammas trained slower and was dropped.

EffResNet56 (same design, 28.2 M MACs, 4.5x fewer than ResNet56): 85.0 % after 36 epochs (seed 0,
1 h 45 min wall on 2 cores). It fits its training images to 95.6 % (no augmentation, inference BN),
so at that budget it overfits rather than underfits; ResNet56 was not trained.

Both families build their BN as `FusedBatchNormalization` (a fused training step), so a pair is
compared on the same BN.
"""
import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import FusedBatchNormalization
from keras_effconv.layers import IntraChannelConv2D

WIDTHS = (16, 32, 64)
EFF_WIDTHS = (16, 40, 96)


def _bn_relu(x, name):
    x = FusedBatchNormalization(name=name + "_bn")(x)
    return keras.layers.Activation("relu", name=name + "_relu")(x)


def _conv(width, stride, name):
    return keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                               kernel_initializer="he_normal", kernel_regularizer=None, name=name)


def _shortcut(x, width, stride, name):
    """Identity, or a strided 1x1 projection + BN when the shape changes (ResNet option B)."""
    if stride == 1 and x.shape[-1] == width:
        return x
    x = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False, name=name + "_0_conv")(x)
    return FusedBatchNormalization(name=name + "_0_bn")(x)


def basic_block(x, width, stride, name):
    """Two 3x3 convs + identity (or 1x1 strided projection) shortcut."""
    shortcut = _shortcut(x, width, stride, name)
    x = _bn_relu(_conv(width, stride, name + "_1_conv")(x), name + "_1")
    x = FusedBatchNormalization(name=name + "_2_bn")(_conv(width, 1, name + "_2_conv")(x))
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def _sic_step(x, width, stride, name):
    """Intra-channel 3x3 -> dense 1x1 projection -> BN: a SIC step whose shortcut is the block's."""
    x = IntraChannelConv2D(3, strides=stride, name=name + "_dw")(x)
    x = keras.layers.Conv2D(width, 1, use_bias=False, kernel_initializer="he_normal", name=name + "_proj")(x)
    return FusedBatchNormalization(name=name + "_bn")(x)


def eff_block(x, width, stride, name):
    """The basic block with each 3x3 conv replaced by a SIC step; same shortcut."""
    shortcut = _shortcut(x, width, stride, name)
    x = keras.layers.Activation("relu", name=name + "_1_relu")(_sic_step(x, width, stride, name + "_1"))
    x = _sic_step(x, width, 1, name + "_2")
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def _body(x, *, include_top, pooling, classes, classifier_activation, depth, eff):
    """conv1, three stages of (depth - 2) / 6 blocks, then the classifier."""
    x = _bn_relu(_conv(WIDTHS[0], 1, "conv1_conv")(x), "conv1")
    block, widths = (eff_block, EFF_WIDTHS) if eff else (basic_block, WIDTHS)
    for stage, width in enumerate(widths):
        for i in range((depth - 2) // 6):
            x = block(x, width, 2 if stage > 0 and i == 0 else 1, f"conv{stage + 2}_block{i + 1}")
    return _builder.classifier(x, include_top, pooling, classes, classifier_activation)


def _factory(depth, eff):
    name = f"{'Eff' if eff else ''}ResNet{depth}"
    return _builder.make_factory(
        name, _body, depth=depth, eff=eff, twin=f"ResNet{depth}" if eff else None, classes=10, default_size=32,
        min_size=8, doc=f"Instantiates the CIFAR-size {name} (see `keras_effconv.applications.cifar`).",
    )


# No feature levels: the stages run at strides 1, 2, 4 (CIFAR), not C2..C5's 4..32.
ResNet20, ResNet32, ResNet56 = (_factory(d, eff=False) for d in (20, 32, 56))
EffResNet20, EffResNet32, EffResNet56 = (_factory(d, eff=True) for d in (20, 32, 56))
