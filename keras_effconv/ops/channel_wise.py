"""Channel-wise convolution kernels of ChannelNets (Gao, Wang & Ji, NeurIPS 2018).

A channel-wise convolution is a 1-D convolution sliding along the channel axis, the same small kernel
at every pixel. The reference is the literal definition (`tf.nn.conv1d` per filter); the fast path runs
it *polyphase*: the channels of each pixel are cut into blocks of B (a free reshape) and a small dense
[A, B, F*B/s] kernel built from the taps is applied with one CONV_2D over the block axis. The
convolutional classifier's kernels (a 'valid' 3-D conv, and its banded matmul form) are here too.
"""

import numpy as np
import tensorflow as tf

from keras_effconv.ops.padding import same_pads


def channel_conv_reference(x, kernel, stride):
    """Literal definition: per filter f, a 1-D 'SAME' conv of stride `stride` along the channels
    of every pixel (`tf.nn.conv1d`, 1 in/1 out channel); the F outputs are concatenated.

    x: [..., C]; kernel: [d, 1, F]. Returns [..., F * ceil(C / stride)].
    """
    rows = tf.reshape(x, [-1, x.shape[-1], 1])
    outs = [
        tf.nn.conv1d(rows, kernel[:, :, f:f + 1], stride=stride, padding="SAME")[..., 0]
        for f in range(kernel.shape[-1])
    ]
    y = tf.concat(outs, axis=-1) if len(outs) > 1 else outs[0]
    return _unflatten(y, x)


def _unflatten(y, x):
    """[P, ..., C'] -> x's leading dims + [C'], static where known (no SHAPE ops on export)."""
    channels = int(np.prod(y.shape[1:]))
    lead = list(x.shape[1:-1])
    if any(d is None for d in lead):
        return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [channels]], axis=0))
    return tf.reshape(y, [-1] + lead + [channels])


class PolyphasePlan:
    """How a stride-`s`, `d`-tap channel-wise conv over C channels runs as one block convolution.

    Output position o (of each filter) reads input channels o*s + k - pad_left, k < d. Cutting the
    channels into C/B blocks of B (B a multiple of s dividing C), block i of the output (B/s
    positions) depends on input blocks i + a, a in [-h, h], through a dense [B, B/s] matrix per a.
    `selector[k, a, r, t]` = 1 where tap k links input r of block i + a to output t of block i.
    """

    def __init__(self, channels, taps, stride):
        self.pad_left = same_pads(channels, taps, stride, 1)[0]
        best = None
        for block in range(stride, channels + 1, stride):
            if channels % block:
                continue
            per_block = block // stride
            lo = (-self.pad_left) // block
            hi = ((per_block - 1) * stride + taps - 1 - self.pad_left) // block
            half = max(-lo, hi)
            # MACs per output value; blocks under 16 channels measured slower on CPU whatever the MACs.
            cost = (block < min(16, channels), (2 * half + 1) * block)
            if best is None or cost < best[0]:
                best = (cost, block, half)
        _, self.block, self.half = best
        self.channels, self.taps, self.stride = channels, taps, stride
        self.per_block = self.block // stride
        width = 2 * self.half + 1
        selector = np.zeros((taps, width, self.block, self.per_block), np.float32)
        for t in range(self.per_block):
            for k in range(taps):
                q = t * stride + k - self.pad_left  # input channel relative to the block start
                a, r = q // self.block, q % self.block
                selector[k, a + self.half, r, t] = 1.0
        self.selector = selector

    def block_kernel(self, kernel):
        """[d, 1, F] taps -> [1, A, B, F * B/s] CONV_2D kernel (filter-major output columns)."""
        dense = tf.einsum("kf,kart->arft", kernel[:, 0, :], tf.constant(self.selector, kernel.dtype))
        width = 2 * self.half + 1
        return tf.reshape(dense, [1, width, self.block, kernel.shape[-1] * self.per_block])

    def __call__(self, x, kernel):
        """x: [..., C] -> [..., F * C/s], filter-major like `channel_conv_reference`."""
        filters, blocks = kernel.shape[-1], self.channels // self.block
        y = tf.reshape(x, [-1, 1, blocks, self.block])
        y = tf.nn.conv2d(y, self.block_kernel(kernel), strides=1, padding="SAME")
        if filters > 1:  # [P, blocks, F, B/s] -> [P, F, blocks, B/s]: moves runs of B/s values
            y = tf.transpose(tf.reshape(y, [-1, blocks, filters, self.per_block]), [0, 2, 1, 3])
        return _unflatten(y, x)


def channel_conv(x, kernel, stride, path, plan):
    if path == "reference":
        return channel_conv_reference(x, kernel, stride)
    return plan(x, kernel)



def classifier_reference(x, kernel, classes):
    """ConvClassifier's literal definition: a 'valid' 3-D conv of the [N, H, W, C, 1] map -> [N, classes]."""
    y = tf.nn.conv3d(x[..., None], kernel, strides=[1] * 5, padding="VALID")
    return tf.reshape(y, [-1, classes])


def classifier_banded(x, kernel, classes):
    """The same as a matmul and a diagonal band read (pad + reshape + slice, no gather).

    z[n, k, c] = sum_hw K[hw, k] x[n, hw, c]; out[n, o] = sum_k z[n, k, o + k]: flattening z and padding
    each of the `depth` rows by one value (rows of C + 1) lines the band up in columns.
    """
    height, width, channels = x.shape[1:]
    pixels, depth = height * width, kernel.shape[2]
    taps = tf.transpose(tf.reshape(kernel, [pixels, depth]))  # [depth, HW]
    z = tf.matmul(taps[None], tf.reshape(x, [-1, pixels, channels]))  # [N, depth, C]
    z = tf.pad(tf.reshape(z, [-1, depth * channels]), [[0, 0], [0, depth]])
    z = tf.reshape(z, [-1, depth, channels + 1])[:, :, :classes]  # z[n, k, o + k]
    return tf.reduce_sum(z, axis=1)
