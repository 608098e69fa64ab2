"""SpatialBottleneck: paths agree, structure, odd sizes, MACs, config, export (static TFLite graph),
training, mixed precision, errors."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_effconv import implementation as impl
from keras_effconv.layers import SpatialBottleneck
from tests import helpers
from tests.harness import assert_paths_agree
from tests.harness import run_layer_test
from tests.harness import set_random_batchnorm_stats

CASES = {
    "f2": (dict(filters=16, factor=2), (8, 8)),
    "f2-odd-band": (dict(filters=16, factor=2, topology={"blocks": 4, "band": 2}), (7, 9)),
    "f3-k4-layout": (dict(filters=8, factor=3, kernel_size=4, topology={"layout": (4, 4), "neighborhood": (2, 2)}), (8, 7)),
    "no-bn": (dict(filters=32, factor=2, kernel_size=(3, 2), use_batchnorm=False, activation="tanh"), (8, 8)),
}


@pytest.mark.parametrize("case,training", [(case, False) for case in CASES] + [("f2-odd-band", True)],
                         ids=[f"{case}-inference" for case in CASES] + ["f2-odd-band-training"])
def test_paths_match_reference(run_paths, case, training):
    kwargs, (h, w) = CASES[case]
    layer, x = _built(case)
    results = run_paths(layer, x, training=training)
    assert results["reference"][0].shape == (2, h, w, kwargs["filters"])
    assert_paths_agree(results)


def _built(case):
    """The case's layer, built, with random BatchNorm statistics, and an input."""
    kwargs, (h, w) = CASES[case]
    layer = SpatialBottleneck(**kwargs)
    x = helpers.random_input((2, h, w, 16))
    layer(x)
    if layer.use_batchnorm:
        set_random_batchnorm_stats(layer)
    return layer, x


def _manual(layer, x):
    """DW(stride f, SAME) -> act(BN(P)) -> intra-channel conv2d_transpose(stride f, SAME), cropped to H x W."""
    f = layer.factor
    z = tf.nn.depthwise_conv2d(x, layer.down.kernel, (1, f, f, 1), "SAME")
    z = tf.nn.conv2d(z, layer.projection.dense_kernel(), 1, "SAME")
    if layer.projection.use_bias:
        z = z + layer.projection.bias
    if layer.use_batchnorm:
        bn = layer.batchnorm
        z = (z - bn.moving_mean) / np.sqrt(bn.moving_variance + bn.epsilon) * bn.gamma + bn.beta
    z = layer.activation(z)
    n, h, w, c = z.shape
    kernel = np.asarray(layer.up.kernel)[:, :, :, 0]
    diagonal = np.einsum("abc,cd->abcd", kernel, np.eye(c, dtype="float32"))
    y = tf.nn.conv2d_transpose(z, diagonal, (n, h * f, w * f, c), f, "SAME")
    return np.asarray(y)[:, :x.shape[1], :x.shape[2]]


@pytest.mark.parametrize("case", ["f2", "f2-odd-band", "f3-k4-layout", "no-bn"])
def test_equals_manual_algorithm(case):
    layer, x = _built(case)
    expected = _manual(layer, x)
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))


@settings(max_examples=15, deadline=None)
@given(height=st.integers(2, 11), width=st.integers(2, 11), factor=st.integers(2, 3), kernel_size=st.integers(1, 5),
       filters=st.sampled_from([4, 8]))
def test_keeps_spatial_size(height, width, factor, kernel_size, filters):
    layer = SpatialBottleneck(filters, factor, kernel_size)
    x = helpers.random_input((1, height, width, 4))
    y = layer(x)
    assert tuple(y.shape) == (1, height, width, filters) == layer.compute_output_shape((1, height, width, 4))
    with impl.implementation("reference"):
        y_ref = layer(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(y_ref).max()))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_unknown_spatial_size_is_cropped(jit_compile):
    """Regression: with unknown H, W the output of odd-sized inputs was not cropped (8x10 for 7x9)."""
    layer = SpatialBottleneck(8, 2)
    x = helpers.random_input((2, 7, 9, 16))
    expected = layer(x)
    fn = tf.function(lambda v: layer(v), input_signature=[tf.TensorSpec((None, None, None, 16))],
                     jit_compile=jit_compile)
    y = fn(x)
    assert tuple(y.shape) == (2, 7, 9, 8)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_compute_macs():
    layer = SpatialBottleneck(8, 2, 3, topology={"blocks": 4, "band": 1})
    layer(helpers.random_input((1, 7, 8, 16)))
    # low resolution 4x4: down 4*4*16*9, projection 4*4*(16/4)*8, up 4*4*8*9
    assert layer.compute_macs((None, 7, 8, 16)) == 4 * 4 * 16 * 9 + 4 * 4 * 4 * 8 + 4 * 4 * 8 * 9
    assert layer.projection.connection_ratio == 0.25


@pytest.mark.parametrize("size", [8, 7])
def test_keras_savedmodel_tflite_static_graph(size, tmp_path):
    ops = run_layer_test(lambda: SpatialBottleneck(16, 2, topology={"blocks": 4, "band": 1}), (size, size, 16),
                         tmp_path, batchnorm_stats=True, paths=False, train=(), mixed_atol=None)
    assert not {"SHAPE", "PACK"} & ops, ops
    assert "TRANSPOSE_CONV" not in ops and "DEPTHWISE_CONV_2D" in ops  # zero-stuff + depthwise, no dense deconv
    assert "GATHER" not in ops  # block-diagonal projection


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0), "filters=0"),
    (dict(filters=8, factor=0), "factor=0"),
    (dict(filters=8, factor=-2), "factor=-2"),
    (dict(filters=8, kernel_size=0), "kernel_size=0"),
    (dict(filters=8, implementation="xla"), "implementation='xla'"),
    (dict(filters=8, topology={"band": 1}), r"topology=\{'band': 1\}"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatialBottleneck(**kwargs)


def test_layer_contract(tmp_path):
    run_layer_test(lambda: SpatialBottleneck(8, factor=2, kernel_size=(3, 5), activation="relu6",
                                             topology={"blocks": 4, "band": 2}, momentum=0.9, epsilon=1e-4),
                   (8, 8, 16), tmp_path, call_kwargs={"training": False}, batchnorm_stats=True, rtol=1e-4)
