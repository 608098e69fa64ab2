"""TopologicalConv2D: paths agree, connectivity, MACs, config, export, training, mixed precision, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers import TopologicalConv2D
from keras_effconv.ops import topology as tp
from tests import helpers
from tests.harness import assert_paths_agree
from tests.harness import run_layer_test
from tests.ops.test_topology_ops import brute_force_mask

CASES = [  # filters, kernel_size, layout, neighborhood, geometry
    (16, 1, (16,), (4,), {}),
    (8, 3, (4, 4), (2, 3), dict(strides=2)),
    (32, 3, (2, 8), (1, 8), dict(padding="valid", dilation_rate=2)),
    (16, (3, 1), (2, 2, 4), (2, 1, 3), dict(strides=(1, 2))),
    (24, 3, None, None, {}),  # dense, filters not a multiple of the channels
]


@pytest.mark.parametrize("filters,kernel_size,layout,neighborhood,geometry", CASES,
                         ids=["1d-band", "2d-s2", "blockdiag-valid-d2", "3d-s12", "dense"])
def test_paths_match_reference(run_paths, filters, kernel_size, layout, neighborhood, geometry):
    layer = TopologicalConv2D(filters, kernel_size, layout, neighborhood, use_bias=True,
                              bias_initializer="random_normal", **geometry)
    results = run_paths(layer, helpers.random_input((2, 8, 8, 16)))
    assert_paths_agree(results)


@pytest.mark.parametrize("filters,kernel_size,layout,neighborhood,geometry", CASES[:4],
                         ids=["1d-band", "2d-s2", "blockdiag-valid-d2", "3d-s12"])
def test_equals_dense_conv_with_masked_kernel(filters, kernel_size, layout, neighborhood, geometry):
    layer = TopologicalConv2D(filters, kernel_size, layout, neighborhood, **geometry)
    x = helpers.random_input((2, 8, 8, 16))
    y = layer(x)
    dense = layer.dense_kernel()
    mask = brute_force_mask(layout, neighborhood, filters)
    assert dense.shape == (*layer.kernel_size, 16, filters)
    np.testing.assert_array_equal(dense[..., mask == 0], 0.0)  # zeros exactly where the mask is 0
    assert np.all(dense[..., mask == 1] != 0.0)
    np.testing.assert_array_equal(np.sort(dense[..., mask == 1], axis=None), np.sort(np.asarray(layer.kernel), axis=None))
    expected = tf.nn.conv2d(x, dense, layer.strides, layer.padding.upper(), dilations=layer.dilation_rate)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert layer.connection_ratio == pytest.approx(np.prod(neighborhood) / 16)
    assert layer.connection_ratio == pytest.approx(mask.sum() / mask.size)


def test_output_depends_only_on_connected_inputs():
    layer = TopologicalConv2D(8, 1, (8,), (3,))
    x = np.zeros((1, 2, 2, 8), "float32")
    x[..., 5] = 1.0
    y = np.asarray(layer(x))[0, 0, 0]
    # Output o sits at position o and sees inputs o, o+1, o+2 (mod 8): input 5 reaches outputs 3, 4, 5.
    np.testing.assert_array_equal(np.nonzero(y)[0], [3, 4, 5])


def test_dense_default_is_a_plain_conv():
    layer = TopologicalConv2D(12, 3, strides=2)
    x = helpers.random_input((2, 8, 8, 6))
    y = layer(x)
    assert layer.connection_ratio == 1.0
    conv = keras.layers.Conv2D(12, 3, strides=2, padding="same", use_bias=False)
    conv.build(x.shape)
    conv.set_weights([layer.dense_kernel()])
    np.testing.assert_allclose(y, conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filters,kernel_size,layout,neighborhood,geometry", CASES,
                         ids=["1d-band", "2d-s2", "blockdiag-valid-d2", "3d-s12", "dense"])
def test_compute_macs(filters, kernel_size, layout, neighborhood, geometry):
    layer = TopologicalConv2D(filters, kernel_size, layout, neighborhood, **geometry)
    y = layer(helpers.random_input((1, 8, 8, 16)))
    window = int(np.prod(neighborhood)) if neighborhood else 16
    kh, kw = layer.kernel_size
    expected = y.shape[1] * y.shape[2] * kh * kw * window * filters
    assert layer.compute_macs((None, 8, 8, 16)) == expected
    assert expected == y.shape[1] * y.shape[2] * np.count_nonzero(layer.dense_kernel())  # kept connections only
    assert tuple(y.shape) == layer.compute_output_shape((1, 8, 8, 16))


@pytest.mark.parametrize("layout,neighborhood", [((4, 16), (1, 16)), ((8, 8), (1, 8)), ((64,), (1,))])
def test_block_diagonal_layout_has_no_gather(layout, neighborhood):
    layer = TopologicalConv2D(64, 1, layout, neighborhood)
    layer.build((None, 8, 8, 64))
    assert layer.topology.gathers == 0
    assert len(layer.topology.terms) == 1


def test_block_diagonal_tflite_has_no_gather():
    model = helpers.wrap(TopologicalConv2D(16, 1, (4, 4), (1, 4)), (8, 8, 16))
    ops = helpers.assert_tflite_parity(model, helpers.random_input((2, 8, 8, 16)))
    assert not {"GATHER", "GATHER_ND", "CONCATENATION"} & ops


@pytest.mark.parametrize("layer_kwargs", [dict(filters=16, kernel_size=3, layout=(16,), neighborhood=(4,), use_bias=True),
                                          dict(filters=8, kernel_size=1, layout=(4, 4), neighborhood=(2, 2), strides=2)],
                         ids=["band", "2d-s2"])
def test_keras_savedmodel_tflite(layer_kwargs, tmp_path):
    """Export-only contract runs (the full one is test_layer_contract)."""
    run_layer_test(lambda: TopologicalConv2D(**layer_kwargs), (8, 8, 16), tmp_path, paths=False, train=(), mixed_atol=None)


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0), "filters=0"),
    (dict(filters=8, kernel_size=0), "kernel_size=0"),
    (dict(filters=8, strides=-1), "strides=-1"),
    (dict(filters=8, dilation_rate=(1, 0)), r"dilation_rate=\(1, 0\)"),
    (dict(filters=8, padding="causal"), "padding='causal'"),
    (dict(filters=8, implementation="gpu"), "implementation='gpu'"),
    (dict(filters=16, layout=(4, 4), neighborhood=(5, 1)), r"neighborhood=\(5, 1\)"),
    (dict(filters=16, layout=(4, 4), neighborhood=(2,)), r"neighborhood=\(2,\)"),
    (dict(filters=16, layout=(4, 0), neighborhood=(1, 1)), r"layout=\(4, 0\)"),
    (dict(filters=24, layout=(4, 4), neighborhood=(2, 2)), "filters=24"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TopologicalConv2D(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=12, layout=(4, 3), neighborhood=(2, 2)), r"layout=\(4, 3\)"),
    (dict(filters=16, layout=(4, 8)), r"layout=\(4, 8\)"),
    (dict(filters=16, neighborhood=(2, 2)), r"neighborhood=\(2, 2\)"),
    (dict(filters=24, neighborhood=(4,)), "filters=24"),
])
def test_invalid_for_the_input(kwargs, match):
    """Errors that need the input channel count (16) are raised when the layer is built."""
    layer = TopologicalConv2D(**kwargs)
    with pytest.raises(ValueError, match=match):
        layer(helpers.random_input((1, 4, 4, 16)))


def test_topology_matches_ops():
    layer = TopologicalConv2D(8, 1, (4, 4), (2, 3))
    layer.build((None, 4, 4, 16))
    np.testing.assert_array_equal(layer.topology.mask(), tp.Topology((4, 4), (2, 3), 16, 8).mask())


@pytest.mark.parametrize("make", [
    lambda: TopologicalConv2D(8, 3, (4, 4), (2, 2), use_bias=True),
    lambda: TopologicalConv2D(16, (3, 1), (4, 4), (2, 3), strides=2, padding="valid", use_bias=True,
                              kernel_regularizer="l2", name="topo"),
], ids=["band-bias", "2d-s2-valid"])
def test_layer_contract(make, tmp_path):
    run_layer_test(make, (8, 8, 16), tmp_path)
