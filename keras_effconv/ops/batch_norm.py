"""Training-mode batch normalization over the last axis of an NHWC tensor: reference and fused.

Both return ``(y, batch_mean, batch_variance)`` with the *biased* variance (divided by n, the number
of values per channel), the statistic Keras' `BatchNormalization` averages into `moving_variance`.
The reference is Keras' composite (`tf.nn.moments` + `tf.nn.batch_normalization`); the fast path is
one `FusedBatchNormV3` op (and its fused gradient), ~2.2x faster fwd+bwd on the TF CPU runtime
(DEVELOPERS.md). That op returns the Bessel-corrected variance, so it is scaled back by (n - 1) / n.
"""

import numpy as np
import tensorflow as tf

# `tf.compat.v1.nn.fused_batch_norm` raises a smaller epsilon to this (a cuDNN limit).
MIN_FUSED_EPSILON = 1.001e-5
FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


def fused_supported(x, epsilon):
    """True when the fused op computes exactly what the reference does for `x` and `epsilon`."""
    return x.shape.rank == 4 and x.dtype in FUSED_DTYPES and epsilon >= MIN_FUSED_EPSILON


def _scale_offset(x, gamma, beta):
    channels = tf.shape(x)[-1:] if x.shape[-1] is None else [x.shape[-1]]
    gamma = tf.ones(channels, tf.float32) if gamma is None else tf.cast(gamma, tf.float32)
    beta = tf.zeros(channels, tf.float32) if beta is None else tf.cast(beta, tf.float32)
    return gamma, beta


def _fused_operands(x, gamma, beta, epsilon):
    """x in float32 and gamma / beta (1 and 0 for None), after the checks the fused op needs."""
    if x.shape.rank != 4:
        raise ValueError(f"`x` must be a 4-D NHWC tensor; received x.shape={tuple(x.shape)!r}")
    if epsilon < MIN_FUSED_EPSILON:
        raise ValueError(f"`epsilon` must be >= {MIN_FUSED_EPSILON} for the fused op; received epsilon={epsilon!r}")
    x = tf.cast(x, tf.float32)
    return (x, *_scale_offset(x, gamma, beta))


def _values_per_channel(x):
    """n = N * H * W as float32 (static when the shape is known: no SHAPE ops in the graph)."""
    lead = x.shape[:-1]
    if lead.is_fully_defined():
        return tf.constant(float(np.prod(lead.as_list())), tf.float32)
    return tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)


def batch_norm_train_reference(x, gamma, beta, epsilon):
    """Keras' composite in float32: moments over all axes but the last, then normalize.

    x: [..., C] (any float dtype, computed in float32); gamma, beta: [C] or None (1 and 0).
    Returns (y float32, mean [C], biased variance [C]).
    """
    x = tf.cast(x, tf.float32)
    gamma, beta = _scale_offset(x, gamma, beta)
    mean, variance = tf.nn.moments(x, axes=list(range(x.shape.rank - 1)))
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon), mean, variance


def batch_norm_train_fused(x, gamma, beta, epsilon):
    """The same as `batch_norm_train_reference` with one FusedBatchNormV3 (x: 4-D NHWC)."""
    x, gamma, beta = _fused_operands(x, gamma, beta, epsilon)
    y, mean, corrected = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=epsilon, data_format="NHWC", is_training=True
    )
    n = _values_per_channel(x)
    # The op divides by max(n - 1, 1); for n = 1 both variances are 0.
    variance = corrected * ((n - 1.0) / n)
    return y, mean, variance


def batch_norm_infer_fused(x, gamma, beta, mean, variance, epsilon):
    """Inference-mode BN with the moving statistics as one FusedBatchNormV3 (x: 4-D NHWC, computed in
    float32). Grappler can fold it into the convolution before it; Keras' composite is two passes."""
    x, gamma, beta = _fused_operands(x, gamma, beta, epsilon)
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, mean=tf.cast(mean, tf.float32), variance=tf.cast(variance, tf.float32),
        epsilon=epsilon, data_format="NHWC", is_training=False,
    )
    return y
