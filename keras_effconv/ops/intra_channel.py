"""Intra-channel (depthwise, one k x k filter per channel) convolution and its transpose.

Kernels are stored as ``[kh, kw, C, 1]`` (the layout of `tf.nn.depthwise_conv2d` and Keras
`DepthwiseConv2D`). Three variants, picked by `keras_effconv.implementation.resolve`:

- reference: a dense convolution with a diagonal kernel (obviously right, C times the work);
- "tf": `tf.nn.depthwise_conv2d` (TFLite `DEPTHWISE_CONV_2D`);
- "xla": a sum of k*k shifted, per-channel-scaled slices, which XLA fuses into one loop; XLA's own
  depthwise convolution on CPU is ~50x slower than the TF runtime's.

The transpose (intra-channel deconvolution) zero-stuffs the input with reshape + pad (static
shapes, TFLite builtins) and runs a depthwise convolution with the flipped kernel.
"""

import tensorflow as tf

from keras_effconv.ops.padding import output_length
from keras_effconv.ops.padding import same_pads


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _diagonal_kernel(kernel):
    """[kh, kw, C, 1] -> dense [kh, kw, C, C] with the filters on the diagonal."""
    channels = kernel.shape[2]
    return kernel * tf.eye(channels, dtype=kernel.dtype)


def depthwise_reference(x, kernel, strides=1, padding="same", dilation_rate=1):
    """Dense conv with a diagonal kernel: output channel c sees only input channel c."""
    return tf.nn.conv2d(
        x, _diagonal_kernel(kernel), strides=_pair(strides), padding=padding.upper(),
        dilations=_pair(dilation_rate),
    )


def depthwise_tf(x, kernel, strides=1, padding="same", dilation_rate=1):
    sh, sw = _pair(strides)
    if max(sh, sw) > 1 and max(_pair(dilation_rate)) > 1:
        # tf.nn.depthwise_conv2d refuses strides and dilation together; shift-and-add needs static sizes.
        if None in x.shape[1:3]:
            return depthwise_reference(x, kernel, strides, padding, dilation_rate)
        return depthwise_xla(x, kernel, strides, padding, dilation_rate)
    return tf.nn.depthwise_conv2d(
        x, kernel, strides=(1, sh, sw, 1), padding=padding.upper(), dilations=_pair(dilation_rate)
    )


def depthwise_xla(x, kernel, strides=1, padding="same", dilation_rate=1):
    """Shift-and-add: out = sum_(a,b) w[a,b,:] * x_padded[a*d :: s, b*d :: s, :]."""
    if None in x.shape[1:3]:  # the slices need static sizes (e.g. a trace with relaxed shapes)
        return depthwise_tf(x, kernel, strides, padding, dilation_rate)
    kh, kw = kernel.shape[0], kernel.shape[1]
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    height, width = x.shape[1], x.shape[2]
    out_h = output_length(height, kh, sh, dh, padding)
    out_w = output_length(width, kw, sw, dw, padding)
    if padding == "same":
        x = tf.pad(x, [[0, 0], same_pads(height, kh, sh, dh), same_pads(width, kw, sw, dw), [0, 0]])
    weights = kernel[:, :, :, 0]
    total = None
    for a in range(kh):
        for b in range(kw):
            window = x[:, a * dh: a * dh + (out_h - 1) * sh + 1: sh, b * dw: b * dw + (out_w - 1) * sw + 1: sw, :]
            term = window * weights[a, b]
            total = term if total is None else total + term
    return total


_FORWARD = {"reference": depthwise_reference, "tf": depthwise_tf, "xla": depthwise_xla, "custom": depthwise_tf}


def depthwise(x, kernel, path, strides=1, padding="same", dilation_rate=1):
    """Intra-channel convolution on the path chosen by `implementation.resolve`."""
    return _FORWARD[path](x, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate)


def transpose_reference(x, kernel, factor):
    """`conv2d_transpose` ("SAME", stride `factor`) with a diagonal kernel."""
    shape = tf.shape(x)
    fh, fw = _pair(factor)
    output_shape = tf.stack([shape[0], shape[1] * fh, shape[2] * fw, shape[3]])
    return tf.nn.conv2d_transpose(x, _diagonal_kernel(kernel), output_shape, strides=(fh, fw), padding="SAME")


def zero_stuff(x, factor):
    """[N, H, W, C] -> [N, H*fh, W*fw, C] with x at (i*fh, j*fw) and zeros elsewhere (static shapes)."""
    fh, fw = _pair(factor)
    dynamic = tf.shape(x) if None in x.shape[1:] else None  # static shapes keep TFLite free of Shape ops
    height, width, channels = [x.shape[i] if x.shape[i] is not None else dynamic[i] for i in (1, 2, 3)]
    x = tf.reshape(x, [-1, width, 1, channels])
    x = tf.pad(x, [[0, 0], [0, 0], [0, fw - 1], [0, 0]])
    x = tf.reshape(x, [-1, 1, width * fw * channels])
    x = tf.pad(x, [[0, 0], [0, fh - 1], [0, 0]])
    return tf.reshape(x, [-1, height * fh, width * fw, channels])


def depthwise_transpose(x, kernel, factor, path):
    """Intra-channel transposed convolution: "SAME" padding, stride `factor`, output H*f x W*f."""
    if path == "reference":
        return transpose_reference(x, kernel, factor)
    fh, fw = _pair(factor)
    kh, kw = kernel.shape[0], kernel.shape[1]
    # The transpose of a strided "SAME" conv is a stride-1 correlation of the zero-stuffed input with
    # the flipped kernel, padded by (k - 1 - before) on the left and `before` on the right.
    before_h = max(kh - fh, 0) // 2
    before_w = max(kw - fw, 0) // 2
    z = zero_stuff(x, factor)
    z = tf.pad(z, [[0, 0], [kh - 1 - before_h, before_h], [kw - 1 - before_w, before_w], [0, 0]])
    flipped = tf.reverse(kernel, axis=[0, 1])
    return depthwise(z, flipped, path, padding="valid")
