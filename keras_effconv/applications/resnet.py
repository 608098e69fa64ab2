"""EffResNet: ResNet-18/34/50/101/152 rebuilt from the paper's schemes, mirroring keras.applications.

Same stages, block counts, widths and layer names as `keras.applications.ResNet50`
(``conv2_block1_1_conv`` ...), with:
- 1x1 convolutions (reduce, expand, projection shortcut) as block-diagonal TopologicalConv2D
  (layout (G, C/G), neighbourhood (1, C/G)): one grouped convolution each, no channel gathers;
- each 3x3 convolution as a two-step SIConv2D: the first projection dense at the narrow width, which
  carries information across the groups of the 1x1 layers, the second grouped;
- a SpatialBottleneck in place of the SIC in stages conv2-conv4 (`bottleneck_stages`), SIC in conv5;
- a 3x3 stride-2 stem instead of 7x7.
Budgets at 224x224 are in the README (counted by `keras_effconv.analysis.count_macs`).
"""

import keras

from keras_effconv.applications import _builder
from keras_effconv.layers import FusedBatchNormalization
from keras_effconv.layers import SIConv2D
from keras_effconv.layers import SpatialBottleneck
from keras_effconv.layers import TopologicalConv2D

BN_EPSILON = 1.001e-5

# name -> (block counts of stages conv2..conv5, bottleneck blocks?)
DEPTHS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
}


def _grouped(filters, channels, groups, strides=1, name=None):
    """Block-diagonal 1x1 topological conv: `groups` contiguous channel groups, no gathers."""
    if channels % groups or filters % groups:
        raise ValueError(f"`groups` must divide the channels ({channels}) and filters ({filters}) of {name}; "
                         f"received groups={groups!r}")
    return TopologicalConv2D(
        filters, 1, layout=(groups, channels // groups), neighborhood=(1, channels // groups),
        strides=strides, name=name,
    )


def _bn(x, name):
    return FusedBatchNormalization(epsilon=BN_EPSILON, name=name)(x)


def _spatial(x, width, stride, config, spatial_bottleneck, name):
    """The 3x3 convolution of a block: SIC (or a spatial bottleneck), ending in BN + ReLU."""
    topology = config["sic_topology"]
    if spatial_bottleneck and stride == 1:
        x = SpatialBottleneck(width, factor=2, topology=topology, name=name + "_bottleneck")(x)
        return keras.layers.Activation("relu", name=name + "_relu")(_bn(x, name + "_bn"))
    return SIConv2D(width, 3, strides=stride, depth=config["sic_depth"], topology=topology, name=name + "_sic")(x)


def bottleneck_block(x, width, stride, conv_shortcut, config, spatial_bottleneck, name):
    """1x1 reduce (stride here, as keras's ResNet v1) -> 3x3 SIC -> 1x1 expand, plus shortcut."""
    groups, channels = config["groups"], x.shape[-1]
    if conv_shortcut:
        shortcut = _grouped(4 * width, channels, groups, stride, name + "_0_conv")(x)
        shortcut = _bn(shortcut, name + "_0_bn")
    else:
        shortcut = x
    x = _grouped(width, channels, groups, stride, name + "_1_conv")(x)
    x = keras.layers.Activation("relu", name=name + "_1_relu")(_bn(x, name + "_1_bn"))
    x = _spatial(x, width, 1, config, spatial_bottleneck, name + "_2")
    x = _grouped(4 * width, width, groups, name=name + "_3_conv")(x)
    x = _bn(x, name + "_3_bn")
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def basic_block(x, width, stride, conv_shortcut, config, spatial_bottleneck, name):
    """Two 3x3 convolutions (ResNet-18/34), each a SIC, plus shortcut."""
    if conv_shortcut:
        shortcut = _bn(_grouped(width, x.shape[-1], config["groups"], stride, name + "_0_conv")(x), name + "_0_bn")
    else:
        shortcut = x
    x = _spatial(x, width, stride, config, spatial_bottleneck, name + "_1")
    x = _spatial(x, width, 1, config, False, name + "_2")
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def stack(x, width, blocks, stride, bottleneck, config, spatial_bottleneck, name):
    block = bottleneck_block if bottleneck else basic_block
    expansion = 4 if bottleneck else 1
    for i in range(blocks):
        first = i == 0
        needs_projection = first and (stride != 1 or x.shape[-1] != expansion * width)
        x = block(x, width, stride if first else 1, needs_projection, config, spatial_bottleneck, f"{name}_block{i + 1}")
    return x


DEFAULT_CONFIG = {
    "groups": 4,  # 1x1 convs: block-diagonal, 1/groups of the connections
    "sic_topology": [None, {"blocks": 4, "band": 1}],  # SIC step 1 dense (mixes groups), step 2 grouped
    "sic_depth": 2,
    # Stages whose 3x3 conv is a spatial bottleneck (projection at 1/4 of the pixels); the rest use SIC.
    # Measured on 2 cores: the bottleneck block runs ~3x faster than the keras block on the TF runtime.
    "bottleneck_stages": (2, 3, 4),
}

def stem(image, width=64):
    """3x3 stride-2 conv + BN + ReLU + 3x3 stride-2 max pool (conv1_*, pool1_*)."""
    x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="conv1_conv")(image)
    x = keras.layers.Activation("relu", name="conv1_relu")(_bn(x, "conv1_bn"))
    return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)


def _body(x, *, include_top, pooling, classes, classifier_activation, depth, config=None):
    """Stem, four stages and the classifier (see module docstring); `config` overrides DEFAULT_CONFIG."""
    cfg = dict(DEFAULT_CONFIG, **(config or {}))
    blocks, bottleneck = DEPTHS[depth]
    x = stem(x)
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks)):
        x = stack(x, width, count, 1 if stage == 0 else 2, bottleneck, cfg, stage + 2 in cfg["bottleneck_stages"],
                  f"conv{stage + 2}")
    return _builder.classifier(x, include_top, pooling, classes, classifier_activation)


def _levels(depth, config=None):
    """C2..C5: the last block output of stages conv2..conv5 (strides 4, 8, 16, 32)."""
    return {f"C{stage}": f"conv{stage}_block{count}_out" for stage, count in zip((2, 3, 4, 5), DEPTHS[depth][0])}


_TWINS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}
EffResNet18, EffResNet34, EffResNet50, EffResNet101, EffResNet152 = (
    _builder.make_factory(
        "Eff" + depth.replace("resnet", "ResNet"), _body, depth=depth, twin=_TWINS.get(depth), feature_levels=_levels,
        doc=f"Instantiates Eff{depth.replace('resnet', 'ResNet')} (see `keras_effconv.applications.resnet`).",
    )
    for depth in DEPTHS
)
