"""ops.conv.grouped_conv2d: the per-group fallback (no grouped-conv gradient in TF) against a dense conv."""

import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.ops import conv as conv_ops


def _block_diagonal(kernel, groups):
    """The dense [kh, kw, C_in, C_out] kernel a grouped kernel [kh, kw, C_in / groups, C_out] means."""
    kh, kw, rows, filters = kernel.shape
    per = filters // groups
    dense = np.zeros((kh, kw, rows * groups, filters), np.float32)
    for g in range(groups):
        dense[:, :, g * rows:(g + 1) * rows, g * per:(g + 1) * per] = kernel[..., g * per:(g + 1) * per]
    return dense


@pytest.mark.parametrize("supported", [False, True], ids=["per-group", "native-if-supported"])
@pytest.mark.parametrize("kernel_size,strides,groups", [(1, 1, 4), (3, 2, 2), (3, 1, 1)])
def test_grouped_conv2d_matches_block_diagonal_dense_conv(monkeypatch, supported, kernel_size, strides, groups):
    if supported and groups > 1 and not conv_ops.grouped_gradients_supported():
        pytest.skip("this TF build has no grouped-conv gradient on CPU; the per-group case covers it")
    monkeypatch.setattr(conv_ops, "grouped_gradients_supported", lambda: supported)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 7, 9, 8)), tf.float32)
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 8 // groups, 12)), tf.float32)
    dense = tf.constant(_block_diagonal(kernel.numpy(), groups))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel, dense])
        y = conv_ops.grouped_conv2d(x, kernel, strides, "SAME", 1)
        want = tf.nn.conv2d(x, dense, strides, "SAME")
    np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), tape.gradient(want, x).numpy(), rtol=1e-5, atol=1e-5)
    dk = tape.gradient(y, kernel).numpy()
    dk_dense = tape.gradient(want, dense).numpy()
    np.testing.assert_allclose(_block_diagonal(dk, groups), dk_dense * (_block_diagonal(np.ones_like(dk), groups)),
                               rtol=1e-4, atol=1e-4)


def test_grouped_gradients_supported_is_a_cached_bool():
    assert conv_ops.grouped_gradients_supported() in (True, False)
    assert conv_ops.grouped_gradients_supported.cache_info().currsize == 1
