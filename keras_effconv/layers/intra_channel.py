"""Single intra-channel convolution: one k x k filter per channel (depth multiplier 1).

`IntraChannelConv2D` is the spatial half of SIC; `IntraChannelConv2DTranspose` is the intra-channel
deconvolution of the spatial bottleneck. Both run through `keras_effconv.ops.intra_channel`, which
holds the reference and the per-runtime fast paths.
"""

import keras
import tensorflow as tf

from keras_effconv import implementation as impl
from keras_effconv.layers import _base
from keras_effconv.ops import intra_channel as ops
from keras_effconv.ops import padding as pad


class _IntraChannelBase(_base.Layer):
    def __init__(
        self, kernel_size, strides=1, use_bias=False, depthwise_initializer="glorot_uniform",
        bias_initializer="zeros", depthwise_regularizer=None, implementation="auto", **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = _base.int_tuple(kernel_size, 2, "kernel_size")
        self.strides = _base.int_tuple(strides, 2, "strides")
        self.use_bias = _base.check_bool(use_bias, "use_bias")
        self.set_keras_objects(depthwise_initializer=depthwise_initializer, bias_initializer=bias_initializer,
                               depthwise_regularizer=depthwise_regularizer)
        self.implementation = impl.validate_policy(implementation)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # rank, channels and output size checked before any kernel runs
        channels = self.input_channels(input_shape)
        self.kernel = self.add_weight(
            name="depthwise_kernel", shape=(*self.kernel_size, channels, 1),
            initializer=self.depthwise_initializer, regularizer=self.depthwise_regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer=self.bias_initializer) if self.use_bias else None
        self.finish_build(input_shape)

    def _finish(self, y):
        return y + tf.cast(self.bias, y.dtype) if self.use_bias else y


@keras.saving.register_keras_serializable(package="keras_effconv")
class IntraChannelConv2D(_IntraChannelBase):
    """Depthwise k x k convolution, one filter per channel (the SIC spatial step)."""

    def __init__(self, kernel_size, strides=1, padding="same", dilation_rate=1, **kwargs):
        super().__init__(kernel_size, strides, **kwargs)
        self.padding = _base.check_padding(padding)
        self.dilation_rate = _base.int_tuple(dilation_rate, 2, "dilation_rate")

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        y = ops.depthwise(inputs, kernel, self.resolve_path(), self.strides, self.padding, self.dilation_rate)
        return self._finish(y)

    def compute_output_shape(self, input_shape):
        channels = self.input_channels(input_shape)
        return pad.conv_output_shape(input_shape, self.kernel_size, self.strides, self.dilation_rate,
                                     self.padding, channels, self)

    def compute_macs(self, input_shape):
        _, h, w, c = self.compute_output_shape(input_shape)
        return h * w * c * self.kernel_size[0] * self.kernel_size[1]


@keras.saving.register_keras_serializable(package="keras_effconv")
class IntraChannelConv2DTranspose(_IntraChannelBase):
    """Intra-channel deconvolution: upsamples by `strides` ("same" padding), one filter per channel."""

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        return self._finish(ops.depthwise_transpose(inputs, kernel, self.strides, self.resolve_path()))

    def compute_output_shape(self, input_shape):
        self.input_channels(input_shape)
        n, h, w, c = input_shape
        return (n, None if h is None else h * self.strides[0], None if w is None else w * self.strides[1], c)

    def compute_macs(self, input_shape):
        _, h, w, c = input_shape
        return h * w * c * self.kernel_size[0] * self.kernel_size[1]
