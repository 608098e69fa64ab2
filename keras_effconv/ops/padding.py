"""TF "SAME" / "VALID" padding and convolution output sizes: the one copy every layer and kernel uses.

Rule for "valid": an axis whose output would be empty (size < (k - 1) * d + 1) raises a ValueError
naming the layer and the input shape; unknown (None) sizes stay None.
"""

import tensorflow as tf


def same_pads(size, kernel, stride=1, dilation=1):
    """(before, after) zero padding TF applies for "SAME" on one axis of static `size`."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def output_length(size, kernel, stride=1, dilation=1, padding="same"):
    """Output size of one axis (None stays None); ValueError when "valid" leaves nothing."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    out = -(-(size - (kernel - 1) * dilation) // stride)
    if out <= 0:
        raise ValueError(
            f"'valid' padding leaves no output on an axis of size {size} (kernel {kernel}, dilation {dilation})"
        )
    return out


def output_spatial(input_shape, kernel_size, strides, dilation_rate, padding, layer=None):
    """Output spatial sizes of a channels-last conv on `input_shape` (batch and channels excluded)."""
    spatial = tuple(input_shape[1:-1])
    try:
        return tuple(
            output_length(n, k, s, d, padding) for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)
        )
    except ValueError as exc:
        owner = "The convolution" if layer is None else f"{type(layer).__name__} {layer.name!r}"
        raise ValueError(f"{owner}: {exc}; received input_shape={tuple(input_shape)!r}") from None


def conv_output_shape(input_shape, kernel_size, strides, dilation_rate, padding, channels, layer=None):
    """Channels-last output shape of a convolution with `channels` outputs."""
    spatial = output_spatial(input_shape, kernel_size, strides, dilation_rate, padding, layer)
    return (input_shape[0], *spatial, channels)


def shape_list(x):
    """Static dims where known, dynamic scalars otherwise."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def pad_same(x, kernel_size, strides, dilation_rate):
    """Zero-pads the spatial axes of `x` as TF "SAME" would (static or dynamic sizes)."""
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
