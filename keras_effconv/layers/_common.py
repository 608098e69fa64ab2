"""Small helpers shared by the layers: argument normalisation and BatchNorm folding."""

import keras
import numpy as np
import tensorflow as tf

from keras_effconv.ops.intra_channel import output_size
from keras_effconv.ops.topology import Topology


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_tuple(value, n, name, minimum=1):
    """An int or a length-n sequence of ints >= minimum, as a tuple; ValueError naming `name`."""
    if _is_int(value):
        values = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(_is_int(v) for v in value):
        values = tuple(int(v) for v in value)
    else:
        values = None
    if values is None or min(values) < minimum:
        raise ValueError(f"`{name}` must be an int or a tuple of {n} ints >= {minimum}; received {name}={value!r}")
    return values


def positive_int(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
    return int(value)


def check_groups(input_shape, groups):
    """The input channels, known and divisible by `groups` (ValueError otherwise)."""
    channels = input_shape[-1]
    if channels is None or channels % groups:
        raise ValueError(
            f"The input channels must be known and divisible by groups={groups}; "
            f"received input_shape={tuple(input_shape)!r}"
        )
    return channels


def check_padding(padding, allowed=("same", "valid")):
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise ValueError(f"`padding` must be one of {allowed}; received padding={padding!r}")
    return padding.lower()


def check_topology(topology):
    """None, {'layout': ..., 'neighborhood': ...}, {'blocks': G, 'band': c}, or a list of those (per step)."""
    if isinstance(topology, (list, tuple)) and topology:
        return [check_topology(t) for t in topology]
    if topology is None:
        return None
    if isinstance(topology, dict) and set(topology) == {"layout", "neighborhood"}:
        Topology(topology["layout"], topology["neighborhood"])  # ValueError naming layout/neighborhood
        return dict(topology)
    if isinstance(topology, dict) and set(topology) == {"blocks", "band"}:
        blocks, band = topology["blocks"], topology["band"]
        if not (_is_int(blocks) and _is_int(band) and 1 <= band <= blocks):
            raise ValueError(f"`topology` needs ints 1 <= band <= blocks; received topology={topology!r}")
        return dict(topology)
    raise ValueError(
        "`topology` must be None, {'layout': ..., 'neighborhood': ...}, {'blocks': G, 'band': c} or a list "
        f"of those; received topology={topology!r}"
    )


def layout_for(topology, channels, step=0):
    """(layout, neighborhood) for a projection reading `channels` channels, or (None, None) for dense.

    {'blocks': G, 'band': c} lays the channels out as (G, channels // G); each output reads c
    consecutive blocks (cyclically), all channels within them: connection ratio c / G.
    A list gives one topology per step (the last one repeats).
    """
    if isinstance(topology, list):
        topology = topology[min(step, len(topology) - 1)]
    if topology is None:
        return None, None
    if "layout" in topology:
        return tuple(topology["layout"]), tuple(topology["neighborhood"])
    blocks, band = topology["blocks"], topology["band"]
    if channels % blocks:
        raise ValueError(f"`topology` blocks={blocks} must divide the channels ({channels}); received topology={topology!r}")
    return (blocks, channels // blocks), (band, channels // blocks)


def conv_output_shape(input_shape, kernel_size, strides, dilation_rate, padding, channels):
    """NHWC output shape of a 2-D convolution (unknown spatial sizes stay None)."""
    n, h, w, _ = input_shape
    size = [None if s is None else output_size(s, k, st, d, padding)
            for s, k, st, d in zip((h, w), kernel_size, strides, dilation_rate)]
    return (n, *size, channels)


def batchnorm_scale_bias(bn, dtype):
    """Inference-mode BatchNorm as y = x * scale + bias (folded into the preceding kernel)."""
    variance = tf.cast(bn.moving_variance, tf.float32)
    scale = tf.math.rsqrt(variance + bn.epsilon)
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, tf.float32)
    bias = -tf.cast(bn.moving_mean, tf.float32) * scale
    if bn.center:
        bias = bias + tf.cast(bn.beta, tf.float32)
    return tf.cast(scale, dtype), tf.cast(bias, dtype)


def make_batchnorm(name, momentum, epsilon, dtype):
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name, dtype=dtype)
