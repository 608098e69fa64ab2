"""IntraChannelConv2D / IntraChannelConv2DTranspose: paths agree, math, config, export, training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers import IntraChannelConv2D
from keras_effconv.layers import IntraChannelConv2DTranspose
from tests import helpers
from tests.harness import assert_paths_agree
from tests.harness import run_layer_test

GEOMETRY = [
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=1),
    dict(kernel_size=3, strides=2, padding="same", dilation_rate=1),
    dict(kernel_size=(3, 5), strides=(2, 1), padding="valid", dilation_rate=1),
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=2),
    dict(kernel_size=2, strides=2, padding="same", dilation_rate=2),  # strides and dilation together
]


@pytest.mark.parametrize("geometry", GEOMETRY, ids=["k3s1", "k3s2", "k35s21valid", "d2", "k2s2d2"])
def test_conv_paths_match_reference(run_paths, geometry):
    layer = IntraChannelConv2D(use_bias=True, bias_initializer="random_normal", **geometry)
    results = run_paths(layer, helpers.random_input((2, 9, 8, 6)))
    assert_paths_agree(results)


@pytest.mark.parametrize("kernel_size,strides", [(3, 2), (4, 2), ((3, 2), (2, 3)), (5, 3), (1, 2)])
def test_transpose_paths_match_reference(run_paths, kernel_size, strides):
    layer = IntraChannelConv2DTranspose(kernel_size, strides, use_bias=True, bias_initializer="random_normal")
    # 8 channels, not 6: with 1x1 kernels the reference's filter gradient is a strided 1x1 conv's,
    # and oneDNN's AVX2 kernel for that gets it wrong when channels < 8 (uxlfoundation/oneDNN#6035).
    results = run_paths(layer, helpers.random_input((2, 5, 4, 8)))
    assert_paths_agree(results)


def test_conv_equals_keras_depthwise():
    x = helpers.random_input((2, 9, 8, 6))
    layer = IntraChannelConv2D(3, strides=2, padding="valid", use_bias=True, bias_initializer="random_normal")
    y = layer(x)
    keras_dw = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid")
    keras_dw.build(x.shape)
    keras_dw.set_weights(layer.get_weights())
    np.testing.assert_allclose(y, keras_dw(x), rtol=1e-5, atol=1e-5)


def test_channels_do_not_mix():
    """Output channel c depends on input channel c only."""
    x = np.zeros((1, 6, 6, 4), "float32")
    x[..., 2] = helpers.random_input((1, 6, 6))
    for layer in (IntraChannelConv2D(3), IntraChannelConv2DTranspose(3, 2)):
        y = np.asarray(layer(x))
        assert np.abs(y[..., 2]).max() > 0
        np.testing.assert_array_equal(y[..., [0, 1, 3]], 0.0)


def test_transpose_equals_keras_conv2d_transpose_with_diagonal_kernel():
    x = helpers.random_input((2, 5, 4, 3))
    layer = IntraChannelConv2DTranspose(3, 2)
    y = layer(x)
    dense = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", use_bias=False)
    dense.build(x.shape)
    kernel = np.asarray(layer.kernel)[:, :, :, 0]  # [kh, kw, C]
    diag = np.einsum("abc,cd->abdc", kernel, np.eye(3, dtype="float32"))  # [kh, kw, out, in]
    dense.set_weights([diag])
    assert y.shape == (2, 10, 8, 3)
    np.testing.assert_allclose(y, dense(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("geometry", GEOMETRY[:3], ids=["k3s1", "k3s2", "k35s21valid"])
def test_output_shape_and_macs(geometry):
    layer = IntraChannelConv2D(**geometry)
    y = layer(helpers.random_input((1, 9, 8, 6)))
    assert tuple(y.shape) == layer.compute_output_shape((1, 9, 8, 6))
    kh, kw = layer.kernel_size
    assert layer.compute_macs((None, 9, 8, 6)) == y.shape[1] * y.shape[2] * 6 * kh * kw
    up = IntraChannelConv2DTranspose(3, (2, 3))
    assert tuple(up(y).shape) == up.compute_output_shape(tuple(y.shape)) == (1, y.shape[1] * 2, y.shape[2] * 3, 6)
    assert up.compute_macs(tuple(y.shape)) == y.shape[1] * y.shape[2] * 6 * 9


@pytest.mark.parametrize("kwargs,name,value", [
    (dict(kernel_size=0), "kernel_size", "0"),
    (dict(kernel_size=(3, 0)), "kernel_size", "(3, 0)"),
    (dict(kernel_size=3, strides=-1), "strides", "-1"),
    (dict(kernel_size=3, strides=(1, 2, 3)), "strides", "(1, 2, 3)"),
    (dict(kernel_size=3, dilation_rate=0), "dilation_rate", "0"),
    (dict(kernel_size=3, padding="full"), "padding", "'full'"),
    (dict(kernel_size=3, implementation="cuda"), "implementation", "'cuda'"),
])
def test_invalid_arguments(kwargs, name, value):
    with pytest.raises(ValueError, match=f"{name}={value}".replace("(", r"\(").replace(")", r"\)")):
        IntraChannelConv2D(**kwargs)


@pytest.mark.parametrize("kwargs,name,value", [
    (dict(kernel_size=0), "kernel_size", "0"),
    (dict(kernel_size=3, strides=0), "strides", "0"),
    (dict(kernel_size=3, implementation="fastest"), "implementation", "'fastest'"),
])
def test_transpose_invalid_arguments(kwargs, name, value):
    with pytest.raises(ValueError, match=f"{name}={value}"):
        IntraChannelConv2DTranspose(**kwargs)


def test_unknown_channels_rejected():
    layer = IntraChannelConv2D(3)
    with pytest.raises(ValueError, match="channel"):
        layer.build((None, 8, 8, None))


def test_regularizer_adds_loss():
    layer = IntraChannelConv2D(3, depthwise_regularizer=keras.regularizers.L2(0.1))
    layer(helpers.random_input((1, 4, 4, 2)))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0], 0.1 * tf.reduce_sum(tf.square(layer.kernel)), rtol=1e-5)


def test_layer_implementation_overrides_global_policy():
    """The recorded path: a pinned layer stays on the reference, an "auto" one follows the runtime/policy."""
    from keras_effconv import implementation as impl

    x = helpers.random_input((1, 6, 6, 2))
    pinned, auto = IntraChannelConv2D(3, implementation="reference"), IntraChannelConv2D(3)
    pinned(x), auto(x)
    assert (pinned.resolved_implementation, auto.resolved_implementation) == ("reference", "tf")
    tf.function(lambda v: (pinned(v), auto(v)), jit_compile=True)(x)
    assert (pinned.resolved_implementation, auto.resolved_implementation) == ("reference", "xla")
    with impl.implementation("reference"):
        auto(x)
    assert impl.resolved_implementations(auto) == {auto.name: "reference"}


def test_trace_time_choice_is_kept_until_retrace():
    """Documented: a tf.function traced before `set_implementation` keeps its traced path."""
    from keras_effconv import implementation as impl

    x = helpers.random_input((1, 6, 6, 2))
    layer = IntraChannelConv2D(3)
    fn = tf.function(layer)
    fn(x)
    with impl.implementation("reference"):
        fn(x)  # no retrace: the traced "tf" path runs, nothing is re-resolved
        assert layer.resolved_implementation == "tf"
        layer(x)  # eager call: resolved now
        assert layer.resolved_implementation == "reference"


@pytest.mark.parametrize("make", [lambda: IntraChannelConv2D(3, strides=2, use_bias=True, depthwise_regularizer="l2"),
                                  lambda: IntraChannelConv2DTranspose(3, strides=2, use_bias=True)],
                         ids=["conv", "transpose"])
def test_layer_contract(make, tmp_path):
    ops = run_layer_test(make, (6, 6, 4), tmp_path)
    assert "CONV_2D" not in ops  # intra-channel stays depthwise, no dense conv
