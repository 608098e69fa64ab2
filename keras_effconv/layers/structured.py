"""Structured convolutions, after Bhalgat, Zhang, Lin and Porikli, NeurIPS 2020 (arXiv:2008.02454).

A C x N_h x N_w kernel (per output channel) is *structured* with structure (c, n_h, n_w) when it is a
sum of c*n_h*n_w binary all-ones blocks of size (C-c+1) x (N_h-n_h+1) x (N_w-n_w+1), one at every
offset, with free coefficients alpha (n_h, n_w, c, C_out). Since the blocks are sums of shifted ones,

    conv(x, W) = conv(sum_pool(x), alpha),

sum-pooling over (C-c+1) channels and (N_h-n_h+1) x (N_w-n_w+1) pixels (stride 1, valid, dilated like
the conv) on the SAME-padded input, then an n_h x n_w conv with c input channels, the layer's stride and
dilation, valid padding. Execution: the channel sum-pool is a constant 0/1 1x1 conv (C_in -> c; on this
2-core CPU it beat add-only variants -- avg-pool over a channel axis, cumsum -- on TF, XLA and LiteRT),
the spatial sum-pool is an average pool (AVERAGE_POOL_2D) whose area is folded into alpha.

In matrix form W (N_h*N_w*C, C_out) = A alpha with A = A_h (x) A_w (x) A_c, A_x the (N, n) band matrix
of ones; projections onto the structured subspace use A A^+ = (A_h A_h^+) (x) (A_w A_w^+) (x) (A_c A_c^+).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_effconv.layers import _base
from keras_effconv.ops import conv as ops
from keras_effconv.ops.padding import pad_same


def normalize_structure(structure):
    """(c, n) or (c, n_h, n_w) -> (c, n_h, n_w)."""
    values = tuple(structure) if isinstance(structure, (tuple, list)) else None
    if values is not None and len(values) == 2:
        values = (values[0], values[1], values[1])
    try:
        return _base.int_tuple(values, 3, "structure")
    except ValueError:
        raise ValueError(
            f"`structure` must be (c, n) or (c, n_h, n_w) of positive ints; received structure={structure!r}"
        ) from None


def band(size, n):
    """(size, n) basis of one axis: column b is ones on rows b .. b + size - n."""
    rows = np.arange(size)[:, None]
    cols = np.arange(n)[None, :]
    return ((rows >= cols) & (rows <= cols + size - n)).astype(np.float64)


def _bases(kernel_shape, structure):
    """Per-axis band matrices (A_h, A_w, A_c) for a (N_h, N_w, C, C_out) kernel."""
    nh, nw, cin = kernel_shape[:3]
    c, bh, bw = structure = normalize_structure(structure)
    if c > cin or bh > nh or bw > nw:
        raise ValueError(
            f"`structure` (c, n_h, n_w) must not exceed (C_in, N_h, N_w)={(cin, nh, nw)}; "
            f"received structure={structure!r}"
        )
    return band(nh, bh), band(nw, bw), band(cin, c)


def expand(alpha, kernel_shape, structure):
    """Dense (N_h, N_w, C, C_out) kernel A alpha of (n_h, n_w, c, C_out) coefficients (numpy or tensor)."""
    a_h, a_w, a_c = _bases(kernel_shape, structure)
    if isinstance(alpha, np.ndarray):
        return np.einsum("ub,ve,ca,beao->uvco", a_h, a_w, a_c, alpha)
    dtype = alpha.dtype
    return tf.einsum("ub,ve,ca,beao->uvco", *(tf.constant(a, dtype) for a in (a_h, a_w, a_c)), alpha)


def project(kernel, structure):
    """Least-squares coefficients alpha = A^+ W of a (N_h, N_w, C, C_out) numpy kernel."""
    pinv = [np.linalg.pinv(a) for a in _bases(kernel.shape, structure)]
    return np.einsum("bu,ev,ac,uvco->beao", *pinv, kernel)


def structural_error(kernel, structure):
    """||W - A A^+ W||_F / ||W||_F of a numpy kernel: 0 iff the kernel is structured."""
    kernel = np.asarray(kernel, np.float64)
    residual = kernel - expand(project(kernel, structure), kernel.shape, structure)
    return float(np.linalg.norm(residual) / max(np.linalg.norm(kernel), 1e-30))


@keras.saving.register_keras_serializable(package="keras_effconv")
class StructuredConv2D(_base.ConvBase):
    """2-D conv whose kernel is structured (c, n_h, n_w); runs as sum-pooling + a c x n_h x n_w conv.

    structure: (c, n) or (c, n_h, n_w), with c <= C_in and n <= kernel_size. Trainable weight: `alpha`
    (n_h, n_w, c, filters). `dense_kernel()` is the equivalent (N_h, N_w, C_in, filters) kernel.
    """

    def __init__(self, filters, kernel_size, structure, strides=1, padding="same", dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer=None, bias_initializer="zeros", implementation="auto", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias, bias_initializer,
                         implementation, **kwargs)
        self.structure = normalize_structure(structure)
        if any(n > k for n, k in zip(self.structure[1:], self.kernel_size)):
            raise ValueError(
                f"`structure` spatial size must not exceed kernel_size={self.kernel_size}; "
                f"received structure={structure!r}"
            )
        self.kernel_initializer = None if kernel_initializer is None else keras.initializers.get(kernel_initializer)

    def _windows(self, cin):
        c, nh, nw = self.structure
        return cin - c + 1, (self.kernel_size[0] - nh + 1, self.kernel_size[1] - nw + 1)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        cin = self.input_channels(input_shape)
        if self.structure[0] > cin:
            raise ValueError(
                f"`structure` c must not exceed the {cin} input channels; received structure={self.structure!r}"
            )
        self._input_channels = cin
        c, nh, nw = self.structure
        window_c, (wh, ww) = self._windows(cin)
        initializer = self.kernel_initializer or keras.initializers.VarianceScaling(
            scale=1.0 / (window_c * wh * ww), mode="fan_avg", distribution="uniform"
        )
        self.alpha = self.add_weight(name="alpha", shape=(nh, nw, c, self.filters), initializer=initializer)
        self.build_bias()
        self.finish_build(input_shape)

    def convolution_op(self, x, path):
        if path == "reference":  # one conv with the composite kernel A alpha
            return ops.conv(x, self.cast(self.dense_kernel()), self.strides, self.padding, self.dilation_rate)
        cin = x.shape[-1]
        window_c, window = self._windows(cin)
        if window_c > 1:  # channel sum-pool as a constant 0/1 1x1 conv; linear, so it commutes with zero padding
            x = ops.pointwise(x, tf.constant(band(cin, self.structure[0]), x.dtype))
        if self.padding == "same":
            x = pad_same(x, self.kernel_size, self.strides, self.dilation_rate)
        if window != (1, 1):  # spatial sum-pool as an average pool; its area is folded into alpha
            x = tf.nn.pool(x, window, "AVG", strides=(1, 1), padding="VALID", dilations=self.dilation_rate)
        alpha = self.cast(self.alpha) * float(math.prod(window))
        return ops.conv(x, alpha, self.strides, "valid", self.dilation_rate)

    def dense_kernel(self):
        """The composite (N_h, N_w, C_in, filters) kernel A alpha."""
        shape = self.kernel_size + (self._input_channels, self.filters)
        return expand(tf.convert_to_tensor(self.alpha), shape, self.structure)

    def compute_macs(self, input_shape):
        """H_out*W_out*c*n_h*n_w*filters + (if c < C_in) H_in*W_in*C_in*c for the 0/1 channel-pooling conv.

        The spatial average pool is additions only (not counted).
        """
        spatial, out = self.static_sizes(input_shape)
        cin, c = int(input_shape[-1]), self.structure[0]
        channel_pool = math.prod(spatial) * cin * c if c < cin else 0
        return math.prod(out) * math.prod(self.structure) * self.filters + channel_pool


def decompose(conv_layer, structure):
    """A StructuredConv2D from a built keras Conv2D by least-squares projection onto the structured subspace.

    Exact when the kernel is already structured. The relative projection error ||W - A A^+ W|| / ||W|| is
    stored as `layer.projection_error`.
    """
    if not isinstance(conv_layer, keras.layers.Conv2D) or not conv_layer.built or conv_layer.groups != 1:
        raise ValueError(
            f"`conv_layer` must be a built keras.layers.Conv2D with groups=1; received conv_layer={conv_layer!r}"
        )
    kernel = np.asarray(keras.ops.convert_to_numpy(conv_layer.kernel), np.float64)
    structure = normalize_structure(structure)
    alpha = project(kernel, structure)
    layer = StructuredConv2D(
        conv_layer.filters, conv_layer.kernel_size, structure, strides=conv_layer.strides, padding=conv_layer.padding,
        dilation_rate=conv_layer.dilation_rate, activation=conv_layer.activation, use_bias=conv_layer.use_bias,
        dtype=conv_layer.dtype_policy,
    )
    layer.build((None, None, None, kernel.shape[2]))
    layer.alpha.assign(alpha.astype(layer.alpha.dtype))
    if conv_layer.use_bias:
        layer.bias.assign(keras.ops.convert_to_numpy(conv_layer.bias))
    layer.projection_error = structural_error(kernel, structure)
    return layer


@keras.saving.register_keras_serializable(package="keras_effconv")
class StructuralRegularizer(keras.regularizers.Regularizer):
    """Structural regularization (Bhalgat et al., Sec. 4): weight * ||(I - A A^+) W||_F / ||W||_F.

    Attach as `kernel_regularizer` of a plain Conv2D to pull its kernel towards `structure`; then
    `decompose(conv, structure)` loses little. normalize=False drops the division by ||W||_F.
    """

    def __init__(self, structure, weight=0.1, normalize=True):
        self.structure = normalize_structure(structure)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"`weight` must be a non-negative number; received weight={weight!r}")
        self.weight = float(weight)
        self.normalize = bool(normalize)

    def __call__(self, kernel):
        dtype = kernel.dtype
        kernel32 = tf.cast(kernel, tf.float32)
        projections = [a @ np.linalg.pinv(a) for a in _bases(tuple(kernel.shape), self.structure)]
        projected = tf.einsum("uU,vV,cC,UVCo->uvco", *(tf.constant(p, tf.float32) for p in projections), kernel32)
        residual = kernel32 - projected
        loss = tf.sqrt(tf.reduce_sum(residual * residual) + 1e-24)  # smooth at a structured kernel
        if self.normalize:
            loss = loss / tf.sqrt(tf.reduce_sum(kernel32 * kernel32) + 1e-24)
        return tf.cast(self.weight * loss, dtype)

    def get_config(self):
        return {"structure": self.structure, "weight": self.weight, "normalize": self.normalize}
