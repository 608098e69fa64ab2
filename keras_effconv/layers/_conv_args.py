"""Argument checks and convolution helpers shared by the factorized, decoupled and structured layers."""

import math
import numbers

import keras
import tensorflow as tf

from keras_effconv import implementation
from keras_effconv.layers._common import _is_int  # noqa: F401 (re-exported for the layers here)
from keras_effconv.layers._common import check_padding  # noqa: F401
from keras_effconv.layers._common import int_tuple  # noqa: F401
from keras_effconv.layers._common import positive_int  # noqa: F401
from keras_effconv.ops import intra_channel



def check_strides_dilation(strides, dilation_rate):
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            "`strides` > 1 and `dilation_rate` > 1 cannot be combined; "
            f"received strides={strides!r}, dilation_rate={dilation_rate!r}"
        )


def check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; received {name}={value!r}")
    return value


def output_length(length, kernel, stride, dilation, padding):
    """Output size of one spatial axis for TF `SAME`/`VALID` padding."""
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    return max(-(-(length - (kernel - 1) * dilation) // stride), 0)


def same_pads(length, kernel, stride, dilation):
    """(before, after) zero padding TF applies for `SAME` on one axis (needs a static length)."""
    out = -(-length // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - length, 0)
    return total // 2, total - total // 2


def spatial_sizes(input_shape, kernel_size, strides, dilation_rate, padding):
    """Static (input, output) spatial sizes; raises if a spatial size is unknown."""
    spatial = tuple(input_shape[1:-1])
    if any(s is None for s in spatial):
        raise ValueError(f"`compute_macs` needs static spatial dims; received input_shape={tuple(input_shape)!r}")
    out = tuple(
        output_length(n, k, s, d, padding) for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)
    )
    return spatial, out


def conv(x, kernel, strides=1, padding="same", dilation_rate=1):
    """N-D convolution (2-D -> CONV_2D, 3-D -> CONV_3D), channels last."""
    n = len(kernel.shape) - 2
    strides = (1,) + int_tuple(strides, n, "strides") + (1,)
    dilations = (1,) + int_tuple(dilation_rate, n, "dilation_rate") + (1,)
    op = tf.nn.conv2d if n == 2 else tf.nn.conv3d  # explicit data_format: eager Conv3D grads need it
    data_format = "NHWC" if n == 2 else "NDHWC"
    if max(dilations) > 1 and x.dtype in (tf.float16, tf.bfloat16) and not implementation.in_xla_context():
        # TF's CPU kernels have no half-precision dilated conv gradient: dilate by space-to-batch instead.
        return tf.nn.with_space_to_batch(
            x, dilations[1:-1], padding.upper(),
            lambda t, num_spatial_dims, padding: op(t, kernel, strides, padding, data_format=data_format),
        )
    return op(x, kernel, strides, padding.upper(), data_format=data_format, dilations=dilations)


def pointwise(x, matrix):
    """1x1(x1) convolution with a (C_in, C_out) matrix."""
    n = len(x.shape) - 2
    return conv(x, tf.reshape(matrix, (1,) * n + tuple(matrix.shape)))


def shape_list(x):
    """Static dims where known, dynamic scalars otherwise."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def depthwise_2d(x, kernel, strides=(1, 1), padding="same", dilation_rate=(1, 1)):
    """Depthwise 2-D convolution with a (kh, kw, C) kernel (channel multiplier 1).

    Runs on the path `implementation.resolve()` picks (shift-and-add under XLA, whose native depthwise
    conv is slow on CPU; needs static spatial dims there).
    """
    path = implementation.resolve()
    if path == "xla" and None in x.shape[1:3]:
        path = "tf"
    return intra_channel.depthwise(x, kernel[..., None], path, tuple(strides), padding, tuple(dilation_rate))


def scaled_normal_std(fan_in, fan_out, contracted, n_factors):
    """Std of i.i.d. normal factors whose product-sum kernel has Glorot variance 2/(fan_in+fan_out)."""
    target = 2.0 / (fan_in + fan_out)
    return (target / contracted) ** (1.0 / (2 * n_factors))


def prod(values):
    return math.prod(values)


class ConvBase(keras.layers.Layer):
    """Common arguments, bias and output handling of the package's convolution layers (not registered).

    Subclasses set the class attribute `spatial_rank` (2 or 3).
    """

    spatial_rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="same", dilation_rate=1,
                 activation=None, use_bias=True, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        rank = self.spatial_rank
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_tuple(kernel_size, rank, "kernel_size")
        self.strides = int_tuple(strides, rank, "strides")
        self.padding = check_padding(padding)
        self.dilation_rate = int_tuple(dilation_rate, rank, "dilation_rate")
        check_strides_dilation(self.strides, self.dilation_rate)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=rank + 2)

    def input_channels(self, input_shape):
        if len(input_shape) != self.spatial_rank + 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects a {self.spatial_rank + 2}-D channels-last input with a known "
                f"channel dim; received input_shape={tuple(input_shape)!r}"
            )
        return int(input_shape[-1])

    def build_bias(self):
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)

    def finish(self, y):
        """Adds the bias and applies the activation."""
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return self.activation(y) if self.activation is not None else y

    def cast(self, variable):
        return tf.cast(variable, self.compute_dtype)

    def output_spatial(self, input_shape):
        return tuple(
            output_length(n, k, s, d, self.padding)
            for n, k, s, d in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_spatial(input_shape) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


def pad_same(x, kernel_size, strides, dilation_rate):
    """Zero-pads the spatial axes of `x` as TF `SAME` would (static or dynamic sizes)."""
    dims = shape_list(x)
    pads = [[0, 0]]
    for axis, (k, s, d) in enumerate(zip(kernel_size, strides, dilation_rate), start=1):
        if isinstance(dims[axis], int):
            pads.append(list(same_pads(dims[axis], k, s, d)))
        else:
            n = dims[axis]
            total = tf.maximum(((n + s - 1) // s - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append([total // 2, total - total // 2])
    pads.append([0, 0])
    return tf.pad(x, pads)
