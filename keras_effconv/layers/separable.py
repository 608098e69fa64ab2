"""MobileNet-style depthwise separable block (Howard et al., 2017), the baseline ChannelNets modify.

depthwise k x k conv -> BN -> ReLU6 -> pointwise 1x1 conv -> BN -> ReLU6, no biases. The pointwise
conv may be grouped (ChannelNets' group modules use 2 groups); Keras `Conv2D(groups>1)` is routed
through XLA on the TF backend, so the grouped case calls `tf.nn.conv2d` with a
[1, 1, C_in / groups, filters] kernel instead (TF runtime and TFLite `CONV_2D` both run it).
"""

import keras
import tensorflow as tf

from keras_effconv.layers import _base
from keras_effconv.layers._base import check_groups
from keras_effconv.layers._base import int_tuple
from keras_effconv.layers._base import positive_int
from keras_effconv.layers.batch_norm import FusedBatchNormalization
from keras_effconv.ops import padding as pad


@keras.saving.register_keras_serializable(package="keras_effconv")
class GroupPointwiseConv(_base.Layer):
    """Bias-free grouped 1x1 conv: output group j (filters / groups channels) reads input group j."""

    def __init__(self, filters, groups=1, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self.groups = positive_int(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(
                f"`filters` must be divisible by groups={self.groups}; received filters={filters!r}"
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = check_groups(self, input_shape, self.groups)
        self.kernel = self.add_weight(
            name="kernel", shape=(1, 1, channels // self.groups, self.filters), initializer=self.kernel_initializer
        )
        self.finish_build(input_shape)

    def call(self, inputs):
        return tf.nn.conv2d(inputs, tf.cast(self.kernel, self.compute_dtype), strides=1, padding="SAME")

    def compute_output_shape(self, input_shape):
        self.input_channels(input_shape)
        return tuple(input_shape[:-1]) + (self.filters,)

    def compute_macs(self, input_shape):
        return input_shape[1] * input_shape[2] * input_shape[-1] * self.filters // self.groups


@keras.saving.register_keras_serializable(package="keras_effconv")
class DepthwiseSeparableBlock(_base.Layer):
    """MobileNet v1 block: DepthwiseConv2D -> BN -> ReLU6 -> 1x1 conv -> BN -> ReLU6 ('same')."""

    def __init__(self, filters, kernel_size=3, strides=1, dilation_rate=1, groups=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_tuple(kernel_size, 2, "kernel_size")
        self.strides = int_tuple(strides, 2, "strides")
        self.dilation_rate = int_tuple(dilation_rate, 2, "dilation_rate")
        self.groups = positive_int(groups, "groups")
        _base.check_strides_dilation(self.strides, self.dilation_rate)
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, padding="same", dilation_rate=self.dilation_rate,
            use_bias=False, name="depthwise", dtype=self.dtype_policy,
        )
        self.depthwise_bn = FusedBatchNormalization(name="depthwise_bn", dtype=self.dtype_policy)
        if self.groups == 1:
            self.pointwise = keras.layers.Conv2D(
                self.filters, 1, use_bias=False, name="pointwise", dtype=self.dtype_policy
            )
        else:
            self.pointwise = GroupPointwiseConv(
                self.filters, self.groups, name="pointwise", dtype=self.dtype_policy
            )
        self.pointwise_bn = FusedBatchNormalization(name="pointwise_bn", dtype=self.dtype_policy)

    def build(self, input_shape):
        check_groups(self, input_shape, self.groups)
        self.depthwise.build(input_shape)
        shape = self.depthwise.compute_output_shape(input_shape)
        self.depthwise_bn.build(shape)
        self.pointwise.build(shape)
        shape = self.pointwise.compute_output_shape(shape)
        self.pointwise_bn.build(shape)
        self.finish_build(input_shape)

    def call(self, inputs, training=None):
        x = self.depthwise(inputs)
        x = keras.ops.relu6(self.depthwise_bn(x, training=training))
        x = self.pointwise(x)
        return keras.ops.relu6(self.pointwise_bn(x, training=training))

    def compute_output_shape(self, input_shape):
        check_groups(self, input_shape, self.groups)
        return pad.conv_output_shape(input_shape, self.kernel_size, self.strides, self.dilation_rate, "same",
                                     self.filters, self)

    def compute_macs(self, input_shape):
        """Depthwise kh*kw*C_in plus pointwise C_in*filters/groups, per output pixel."""
        _, height, width, _ = self.compute_output_shape(input_shape)
        channels = input_shape[-1]
        per_pixel = self.kernel_size[0] * self.kernel_size[1] * channels + channels * self.filters // self.groups
        return height * width * per_pixel
