"""Channel-wise convolutions from ChannelNets (Gao, Wang & Ji, NeurIPS 2018).

A *channel-wise convolution* is a 1-D convolution that slides along the channel axis, with the
same small kernel at every pixel, one input and one output "channel" (paper Sec. 3.1). It replaces
the dense C_in x C_out connections of a 1x1 convolution by a banded, weight-shared one. Three
layers use it:

- `GroupChannelWiseConv`: fuses the groups of a group 1x1 convolution (Sec. 3.2);
- `DepthwiseSeparableChannelWiseConv`: depthwise k x k conv, then a channel-wise conv in place of
  the 1x1 conv (Sec. 3.3);
- `ConvClassifier`: a (H, W, C - classes + 1) 3-D conv, 'valid', replacing pool + dense (Sec. 3.5).

Fast paths avoid gathers and 1-channel im2col: a channel-wise conv is run *polyphase*, i.e. the
channels of each pixel are cut into blocks of B (a free reshape) and a small dense [A, B, F*B/s]
kernel built from the taps is applied with one CONV_2D over the block axis. The reference paths
are the literal definitions (`tf.nn.conv1d` per filter, `tf.nn.conv3d`).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_effconv import implementation as impl
from keras_effconv.layers import _base
from keras_effconv.layers._base import check_groups
from keras_effconv.layers._base import int_tuple
from keras_effconv.layers._base import positive_int
from keras_effconv.ops import channel_wise as cw
from keras_effconv.ops import padding as pad
from keras_effconv.ops.intra_channel import depthwise

_PACKAGE = "keras_effconv"


def _default_initializer(initializer):
    # Kernels are stored as [taps, 1, filters]: fan_in = taps, so variance 1/taps keeps the scale.
    if initializer is None:
        return keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")
    return keras.initializers.get(initializer)


def channel_conv(x, kernel, stride, path, plan):
    if path == "reference":
        return cw.channel_conv_reference(x, kernel, stride)
    return plan(x, kernel)


def _check_implementation(implementation):
    return impl.validate_policy(implementation, "implementation")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupChannelWiseConv(_base.Layer):
    """Group channel-wise convolution (GCWConv), ChannelNets Sec. 3.2.

    A group 1x1 conv with g groups leaves channel group j blind to the others. GCWConv fuses them
    with g independent channel-wise convs, each of stride g and `kernel_size` taps ('SAME' zero
    padding along channels): conv j maps the C input channels to C/g outputs, and the g outputs
    are concatenated, so output group j (channels j*C/g ... ) sees every input group. Channels are
    preserved (C -> C); there are g * kernel_size weights and no bias (a BatchNorm follows in
    ChannelNets). `kernel_size` defaults to 4 * groups, as in the authors' code; it must be at
    least `groups` so that every input channel is read.
    """

    def __init__(self, groups, kernel_size=None, kernel_initializer=None, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.groups = positive_int(groups, "groups")
        kernel_size = 4 * self.groups if kernel_size is None else kernel_size
        self.kernel_size = positive_int(kernel_size, "kernel_size")
        if self.kernel_size < self.groups:
            raise ValueError(
                f"`kernel_size` must be >= groups={self.groups} so every channel is read; "
                f"received kernel_size={kernel_size!r}"
            )
        self.kernel_initializer = _default_initializer(kernel_initializer)
        self.implementation = _check_implementation(implementation)

    def build(self, input_shape):
        channels = check_groups(self, input_shape, self.groups)
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, 1, self.groups), initializer=self.kernel_initializer
        )
        self._plan = cw.PolyphasePlan(channels, self.kernel_size, self.groups)
        self.finish_build(input_shape)

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        return channel_conv(inputs, kernel, self.groups, self.resolve_path(), self._plan)

    def compute_output_shape(self, input_shape):
        check_groups(self, input_shape, self.groups)
        return tuple(input_shape)

    def compute_macs(self, input_shape):
        """kernel_size MACs per output value (the paper's count: d_f^2 * d_c * n)."""
        return int(np.prod(input_shape[1:])) * self.kernel_size


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DepthwiseSeparableChannelWiseConv(_base.Layer):
    """Depth-wise separable channel-wise convolution (DWSCWConv), ChannelNets Sec. 3.3.

    A depthwise `kernel_size` conv (optionally strided or dilated), then, instead of the dense 1x1
    conv of a depthwise separable conv, one channel-wise conv: a single `channel_kernel_size`-tap
    1-D conv along the channels, stride 1, 'SAME' zero padding, shared by every pixel. C -> C
    channels with kh*kw*C + channel_kernel_size weights (the 1x1 conv would need C*C). Nothing sits
    between the two convs and there is no bias, as in Keras `SeparableConv2D` without bias.
    `channel_kernel_size` defaults to 64, the default of the authors' code.
    """

    def __init__(
        self,
        kernel_size=3,
        channel_kernel_size=64,
        strides=1,
        dilation_rate=1,
        padding="same",
        depthwise_initializer="glorot_uniform",
        kernel_initializer=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = int_tuple(kernel_size, 2, "kernel_size")
        self.channel_kernel_size = positive_int(channel_kernel_size, "channel_kernel_size")
        self.strides = int_tuple(strides, 2, "strides")
        self.dilation_rate = int_tuple(dilation_rate, 2, "dilation_rate")
        _base.check_strides_dilation(self.strides, self.dilation_rate)
        self.padding = _base.check_padding(padding)
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer)
        self.kernel_initializer = _default_initializer(kernel_initializer)
        self.implementation = _check_implementation(implementation)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        channels = self.input_channels(input_shape)
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=self.kernel_size + (channels, 1), initializer=self.depthwise_initializer
        )
        self.kernel = self.add_weight(
            name="kernel", shape=(self.channel_kernel_size, 1, 1), initializer=self.kernel_initializer
        )
        self._plan = cw.PolyphasePlan(channels, self.channel_kernel_size, 1)
        self.finish_build(input_shape)

    def call(self, inputs):
        path = self.resolve_path()
        y = depthwise(
            inputs,
            tf.cast(self.depthwise_kernel, self.compute_dtype),
            path,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        return channel_conv(y, tf.cast(self.kernel, self.compute_dtype), 1, path, self._plan)

    def compute_output_shape(self, input_shape):
        channels = self.input_channels(input_shape)
        return pad.conv_output_shape(input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding,
                                     channels, self)

    def compute_macs(self, input_shape):
        """Per output value: kh*kw (depthwise) + channel_kernel_size (channel-wise)."""
        _, height, width, _ = self.compute_output_shape(input_shape)
        per_value = self.kernel_size[0] * self.kernel_size[1] + self.channel_kernel_size
        return height * width * input_shape[-1] * per_value


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvClassifier(_base.Layer):
    """Convolutional classification layer, ChannelNets Sec. 3.5.

    Replaces global average pooling + a dense layer (C * classes weights) by one 3-D convolution
    over the (H, W, C) feature map, 1 in / 1 out channel, 'valid' padding, kernel
    (H, W, C - classes + 1): sliding along the channels gives exactly `classes` outputs, each a
    weighted sum of an H x W x (C - classes + 1) window. Needs static H, W, C with C >= classes.
    Input [N, H, W, C] -> output [N, classes]. `use_bias` adds one bias per class (the paper's
    layer has none; it is off by default).

    Fast path (no 1-channel im2col): z[n, k, c] = sum_hw K[hw, k] x[n, hw, c] is one matmul, and
    out[n, o] = sum_k z[n, k, o + k] reads a diagonal band, done by flattening z, padding each of
    the d rows by one value (rows of C + 1) and slicing: pad + reshape + slice, no gather.
    """

    def __init__(self, classes, use_bias=False, kernel_initializer=None, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.classes = positive_int(classes, "classes")
        self.use_bias = _base.check_bool(use_bias, "use_bias")
        self.kernel_initializer = (
            keras.initializers.get(kernel_initializer) if kernel_initializer is not None else None
        )
        self.implementation = _check_implementation(implementation)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        height, width, channels = input_shape[1:]
        self.depth = channels - self.classes + 1
        initializer = self.kernel_initializer or keras.initializers.VarianceScaling(
            1.0, "fan_in", "truncated_normal"
        )
        # [H, W, depth, 1, 1]: the Conv3D layout; fan_in = H * W * depth.
        self.kernel = self.add_weight(name="kernel", shape=(height, width, self.depth, 1, 1), initializer=initializer)
        self.bias = self.add_weight(name="bias", shape=(self.classes,), initializer="zeros") if self.use_bias else None
        self.finish_build(input_shape)

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        if self.resolve_path() == "reference":
            y = cw.classifier_reference(inputs, kernel, self.classes)
        else:
            y = cw.classifier_banded(inputs, kernel, self.classes)
        if self.use_bias:
            y = y + tf.cast(self.bias, self.compute_dtype)
        return y

    def compute_output_shape(self, input_shape):
        channels = self.input_channels(input_shape)
        if any(d is None for d in input_shape[1:]) or channels < self.classes:
            raise ValueError(
                f"{self.describe()} needs a [N, H, W, C] input with static H, W, C and C >= classes={self.classes}; "
                f"received input_shape={tuple(input_shape)!r}"
            )
        return (input_shape[0], self.classes)

    def compute_macs(self, input_shape):
        height, width, channels = input_shape[1:]
        return self.classes * height * width * (channels - self.classes + 1)
