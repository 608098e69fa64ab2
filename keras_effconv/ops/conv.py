"""Plain N-D convolution kernels shared by the factorized, decoupled and structured layers.

`conv` / `pointwise` are dense (CONV_2D / CONV_3D); `depthwise_2d` / `depthwise_nd` run an
intra-channel convolution on the path `keras_effconv.implementation.resolve` picked.
"""

import functools
import math

import tensorflow as tf

from keras_effconv import implementation
from keras_effconv.ops import intra_channel
from keras_effconv.ops.padding import output_length
from keras_effconv.ops.padding import same_pads
from keras_effconv.ops.padding import shape_list


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def conv(x, kernel, strides=1, padding="same", dilation_rate=1):
    """N-D convolution (2-D -> CONV_2D, 3-D -> CONV_3D), channels last."""
    n = len(kernel.shape) - 2
    strides = (1,) + _tuple(strides, n) + (1,)
    dilations = (1,) + _tuple(dilation_rate, n) + (1,)
    op = tf.nn.conv2d if n == 2 else tf.nn.conv3d  # explicit data_format: eager Conv3D grads need it
    data_format = "NHWC" if n == 2 else "NDHWC"
    if max(dilations) > 1 and x.dtype in (tf.float16, tf.bfloat16) and not implementation.in_xla_context():
        # TF's CPU kernels have no half-precision dilated conv gradient: dilate by space-to-batch instead.
        return tf.nn.with_space_to_batch(
            x, dilations[1:-1], padding.upper(),
            lambda t, num_spatial_dims, padding: op(t, kernel, strides, padding, data_format=data_format),
        )
    return op(x, kernel, strides, padding.upper(), data_format=data_format, dilations=dilations)


@functools.lru_cache(maxsize=None)
def grouped_gradients_supported():
    """Whether TF differentiates a grouped conv2d here. Without oneDNN (TF's default on CPUs with no
    AVX-512 VNNI/BF16/AMX, e.g. AVX2-only AMD EPYC) the CPU kernel refuses: "Gradients for grouped
    convolutions are not supported on CPU". Probed once on a 1x2x2x2 input, 2 groups."""
    with tf.init_scope():  # eager even while tracing (where tapes pause): call the gradient op itself
        try:
            tf.raw_ops.Conv2DBackpropInput(input_sizes=[1, 2, 2, 2], filter=tf.ones([1, 1, 1, 2]),
                                           out_backprop=tf.ones([1, 2, 2, 2]), strides=[1, 1, 1, 1],
                                           padding="VALID").numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            return False
    return True


def _per_group_conv2d(x, kernel, strides, padding, dilations, groups):
    outputs = [tf.nn.conv2d(xg, kg, strides, padding, dilations=dilations)
               for xg, kg in zip(tf.split(x, groups, axis=-1), tf.split(kernel, groups, axis=-1))]
    return tf.concat(outputs, axis=-1)


def grouped_conv2d(x, kernel, strides, padding, dilations):
    """tf.nn.conv2d, also for a grouped kernel (input depth = groups x kernel depth). The forward op is
    always the grouped conv (one CONV_2D in exports, on every machine); where TF has no grouped-conv
    gradient, the gradient is that of the same groups run as separate convs and concatenated."""
    groups = x.shape[-1] // kernel.shape[2]
    if groups == 1 or implementation.in_xla_context() or grouped_gradients_supported():
        return tf.nn.conv2d(x, kernel, strides, padding, dilations=dilations)

    @tf.custom_gradient
    def grouped_with_per_group_gradient(x, kernel):
        def grad(dy):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = _per_group_conv2d(x, kernel, strides, padding, dilations, groups)
            return tape.gradient(y, [x, kernel], output_gradients=dy)

        return tf.nn.conv2d(x, kernel, strides, padding, dilations=dilations), grad

    return grouped_with_per_group_gradient(x, kernel)


def pointwise(x, matrix):
    """1x1(x1) convolution with a (C_in, C_out) matrix."""
    n = len(x.shape) - 2
    return conv(x, tf.reshape(matrix, (1,) * n + tuple(matrix.shape)))


def depthwise_2d(x, kernel, path, strides=(1, 1), padding="same", dilation_rate=(1, 1)):
    """Depthwise 2-D convolution with a (kh, kw, C) kernel (channel multiplier 1) on `path`.

    The "xla" shift-and-add needs static spatial dims; with unknown ones the "tf" kernel runs.
    """
    if path == "xla" and None in x.shape[1:3]:
        path = "tf"
    return intra_channel.depthwise(x, kernel[..., None], path, tuple(strides), padding, tuple(dilation_rate))


def depthwise_nd(x, kernel, path, strides, padding, dilation_rate):
    """Depthwise N-D convolution, kernel (k_1..k_N, C). 3-D runs one depthwise 2-D conv per depth tap."""
    if len(kernel.shape) == 3:
        return depthwise_2d(x, kernel, path, strides, padding, dilation_rate)
    depth, k, s, d = x.shape[1], kernel.shape[0], strides[0], dilation_rate[0]
    if depth is None:
        raise ValueError("3-D depthwise ('mobilenet') needs a static depth dim; received depth=None")
    if padding == "same":
        x = tf.pad(x, [[0, 0], same_pads(depth, k, s, d), [0, 0], [0, 0], [0, 0]])
    out = output_length(depth, k, s, d, padding)
    dims = shape_list(x)
    total = None
    for t in range(k):
        tap = x[:, t * d: t * d + (out - 1) * s + 1: s]
        y = depthwise_2d(tf.reshape(tap, [-1] + dims[2:]), kernel[t], path, strides[1:], padding, dilation_rate[1:])
        total = y if total is None else total + y
    new = shape_list(total)
    return tf.reshape(total, [-1, out] + new[1:])


def along_axis(x, axis, fn):
    """Apply a 2-D op `fn` that convolves along axis 1 of a 4-D tensor to tensor axis `axis` of `x`."""
    dims = shape_list(x)
    post = math.prod(dims[axis + 1:-1]) if dims[axis + 1:-1] else 1
    y = fn(tf.reshape(x, [-1, dims[axis], post, dims[-1]]))
    new = shape_list(y)
    return tf.reshape(y, dims[:axis] + [new[1]] + dims[axis + 1:-1] + [new[-1]])
