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

from keras_effconv.applications.registry import register_model
from keras_effconv.layers.channelnets import GroupChannelWiseConv
from keras_effconv.layers.separable import DepthwiseSeparableBlock

# (filters, stride) of the DWS layers before and after the group stage.
_STEM = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
_HEAD = ((1024, 2), (1024, 1))
_GROUPS = 2
_GCW_MODULES = 2
_DEFAULT_SIZE = 224


def _group_module(x, name, fuse):
    """GM (fuse=False) or GCWM (fuse=True): two group-DWS layers (+ GCWConv, BN), residual."""
    channels = x.shape[-1]
    y = DepthwiseSeparableBlock(channels, groups=_GROUPS, name=f"{name}_dws1")(x)
    y = DepthwiseSeparableBlock(channels, groups=_GROUPS, name=f"{name}_dws2")(y)
    if fuse:
        y = GroupChannelWiseConv(_GROUPS, name=f"{name}_gcw")(y)
        y = keras.layers.BatchNormalization(name=f"{name}_gcw_bn")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _check_args(weights, include_top, input_shape, pooling, classes):
    if weights is not None:
        raise ValueError(
            "ChannelNetV1 has no pretrained weights yet; `weights` must be None; "
            f"received weights={weights!r}"
        )
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be a bool; received include_top={include_top!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer; received classes={classes!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'; received pooling={pooling!r}")
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                "`input_shape` must be (height, width, channels) with known channels; "
                f"received input_shape={input_shape!r}"
            )
        if any(s is not None and s < 32 for s in shape[:2]):
            raise ValueError(f"`input_shape` must be at least 32x32; received input_shape={input_shape!r}")


def ChannelNetV1(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="channelnet_v1",
):
    """ChannelNet-v1 for `input_shape` (default 224x224x3), channels last.

    Args follow `keras.applications`: `include_top` adds global average pooling and a dense
    classifier with `classes` outputs and `classifier_activation`; otherwise `pooling` ("avg",
    "max" or None) is applied to the 1/32-resolution, 1024-channel features. `weights` must be None
    (no pretrained weights are published yet).
    """
    if input_shape is None and input_tensor is None:
        input_shape = (_DEFAULT_SIZE, _DEFAULT_SIZE, 3)
    _check_args(weights, include_top, input_shape, pooling, classes)
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape)
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape)

    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for i, (filters, stride) in enumerate(_STEM):
        x = DepthwiseSeparableBlock(filters, strides=stride, name=f"dws{i + 1}")(x)
    x = _group_module(x, "gm", fuse=False)
    for i in range(_GCW_MODULES):
        x = _group_module(x, f"gcwm{i + 1}", fuse=True)
    for i, (filters, stride) in enumerate(_HEAD):
        x = DepthwiseSeparableBlock(filters, strides=stride, name=f"dws{len(_STEM) + i + 1}")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    model_inputs = inputs if input_tensor is None else keras.utils.get_source_inputs(input_tensor)
    return keras.Model(model_inputs, x, name=name)


register_model("ChannelNetV1", ChannelNetV1)
