"""Topological subdivisioning as a Keras layer (the paper's Algorithm 4).

The connectivity and both execution plans live in `keras_effconv.ops.topology`; this layer owns the
compact kernel (one weight per kept connection) and picks the plan through
`keras_effconv.implementation`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_effconv import implementation as impl
from keras_effconv.layers import _base
from keras_effconv.ops import padding as pad
from keras_effconv.ops import topology as ops


@keras.saving.register_keras_serializable(package="keras_effconv")
class TopologicalConv2D(_base.Layer):
    """Convolution whose output channels each see a cyclic `neighborhood` of the input `layout`.

    layout: (d1, ..., ds) with product = input channels; default (C,) (1-D).
    neighborhood: (c1, ..., cs), 1 <= c_t <= d_t; default = layout (a dense convolution).
    Output channel o sits at flat layout position o * C_in // filters (see `ops.topology`).
    """

    def __init__(
        self, filters, kernel_size=1, layout=None, neighborhood=None, strides=1, padding="same",
        dilation_rate=1, use_bias=False, kernel_initializer="he_normal", bias_initializer="zeros",
        kernel_regularizer=None, implementation="auto", **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _base.positive_int(filters, "filters")
        self.kernel_size = _base.int_tuple(kernel_size, 2, "kernel_size")
        self.layout = None if layout is None else ops._as_tuple(layout, "layout")
        self.neighborhood = None if neighborhood is None else ops._as_tuple(neighborhood, "neighborhood")
        if self.layout is not None and self.neighborhood is not None:
            ops.Topology(self.layout, self.neighborhood, out_channels=self.filters)  # validate early
        self.strides = _base.int_tuple(strides, 2, "strides")
        self.padding = _base.check_padding(padding)
        self.dilation_rate = _base.int_tuple(dilation_rate, 2, "dilation_rate")
        self.use_bias = _base.check_bool(use_bias, "use_bias")
        self.set_keras_objects(kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                               kernel_regularizer=kernel_regularizer)
        self.implementation = impl.validate_policy(implementation)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        channels = self.input_channels(input_shape)
        layout = self.layout or (channels,)
        self.topology = ops.Topology(layout, self.neighborhood or layout, channels, self.filters)
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, self.topology.window, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer) if self.use_bias else None
        self.finish_build(input_shape)

    @property
    def connection_ratio(self):
        """Fraction of input channels each output channel sees (1.0 = dense)."""
        return self.topology.connection_ratio

    def dense_kernel_tensor(self):
        """The equivalent masked dense kernel [kh, kw, C_in, filters] as a tensor."""
        return ops.dense_kernel(self.topology, tf.convert_to_tensor(self.kernel))

    def dense_kernel(self):
        """The equivalent masked dense kernel [kh, kw, C_in, filters] (numpy)."""
        return np.asarray(self.dense_kernel_tensor())

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        path = self.resolve_path()
        if path == "custom" and self._pointwise():
            from keras_effconv.ops import custom

            y = custom.topological_projection(inputs, kernel[0, 0], self.topology.index.astype("int32"))
        elif path == "reference":
            y = ops.conv_reference(inputs, self.topology, kernel, self.strides, self.padding, self.dilation_rate)
        else:
            y = ops.conv_fast(inputs, self.topology, kernel, self.strides, self.padding, self.dilation_rate, path)
        return y + tf.cast(self.bias, y.dtype) if self.use_bias else y

    def _pointwise(self):
        return self.kernel_size == (1, 1) and self.strides == (1, 1) and self.dilation_rate == (1, 1)

    def compute_output_shape(self, input_shape):
        self.input_channels(input_shape)
        return pad.conv_output_shape(input_shape, self.kernel_size, self.strides, self.dilation_rate,
                                     self.padding, self.filters, self)

    def compute_macs(self, input_shape):
        """Kept connections only: H_out * W_out * kh * kw * window * filters."""
        _, h, w, _ = self.compute_output_shape(input_shape)
        window = int(np.prod(self.neighborhood or self.layout or (input_shape[-1],)))
        return h * w * self.kernel_size[0] * self.kernel_size[1] * window * self.filters
