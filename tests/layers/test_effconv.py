"""EffConv2D: structure switch, Conv2D compatibility, config, the layer contract (tests/harness.py:
paths agree, export, training, mixed precision), errors."""

import keras
import numpy as np
import pytest

from keras_effconv.layers import EffConv2D
from keras_effconv.layers import SIConv2D
from keras_effconv.layers import SpatialBottleneck
from keras_effconv.layers import TopologicalConv2D
from tests import helpers
from tests.harness import assert_config_complete
from tests.harness import run_layer_test

CASES = {
    "sic": dict(filters=16, kernel_size=3, topology={"blocks": 4, "band": 2}),
    "sic-s2": dict(filters=8, kernel_size=3, strides=2, activation="relu"),
    "bottleneck": dict(filters=16, kernel_size=3, sic=False, bottleneck=True, topology={"blocks": 2, "band": 1}),
    "topological": dict(filters=16, kernel_size=3, sic=False, strides=2, padding="valid",
                        topology={"layout": (4, 4), "neighborhood": (2, 2)}),
    "dense": dict(filters=12, kernel_size=3, sic=False, dilation_rate=2, activation="tanh"),
}
INNER = {"sic": SIConv2D, "sic-s2": SIConv2D, "bottleneck": SpatialBottleneck, "topological": TopologicalConv2D,
         "dense": TopologicalConv2D}


def _layer(case, **overrides):
    return EffConv2D(**{**CASES[case], "bias_initializer": "random_normal", **overrides})


@pytest.mark.parametrize("case", list(CASES))
def test_structure_and_output_bias_activation(case):
    layer = _layer(case)
    x = helpers.random_input((2, 8, 8, 16))
    y = layer(x)
    assert type(layer.inner) is INNER[case]
    inner_kwargs = {} if isinstance(layer.inner, TopologicalConv2D) else {"training": False}
    expected = layer.activation(layer.inner(x, **inner_kwargs) + layer.bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert tuple(y.shape) == layer.compute_output_shape((2, 8, 8, 16))
    assert layer.compute_macs((None, 8, 8, 16)) == layer.inner.compute_macs((None, 8, 8, 16)) > 0


def test_topology_reaches_every_projection():
    layer = _layer("sic", depth=3)
    layer(helpers.random_input((1, 8, 8, 16)))
    assert layer.inner.depth == 3
    assert [p.layout for p in layer.inner.projections] == [(4, 4)] * 3
    assert [p.connection_ratio for p in layer.inner.projections] == [0.5] * 3
    bneck = _layer("bottleneck", bottleneck_factor=4)
    bneck(helpers.random_input((1, 8, 8, 16)))
    assert bneck.inner.factor == 4 and bneck.inner.projection.layout == (2, 8)
    conv = _layer("topological")
    conv(helpers.random_input((1, 8, 8, 16)))
    assert conv.inner.neighborhood == (2, 2) and conv.inner.kernel_size == (3, 3)


def test_dense_is_a_drop_in_conv2d():
    layer = EffConv2D(12, (3, 5), strides=2, padding="valid", sic=False, activation="relu",
                      bias_initializer="random_normal")
    x = helpers.random_input((2, 9, 9, 6))
    y = layer(x)
    conv = keras.layers.Conv2D(12, (3, 5), strides=2, padding="valid", activation="relu")
    conv.build(x.shape)
    conv.set_weights([layer.inner.dense_kernel(), np.asarray(layer.bias)])
    np.testing.assert_allclose(y, conv(x), rtol=1e-5, atol=1e-5)


def test_config_complete_and_round_trip():
    layer = EffConv2D(8, 3, strides=2, dilation_rate=1, activation="relu", use_bias=False, sic=True,
                      topology={"blocks": 2, "band": 1}, depth=3, bottleneck_factor=2, kernel_regularizer="l2",
                      implementation="reference", name="eff")
    clone = assert_config_complete(layer)
    assert clone.depth == 3 and clone.topology == {"blocks": 2, "band": 1} and not clone.use_bias


@pytest.mark.parametrize("case,options", [
    ("sic-s2", {}),
    ("bottleneck", dict(train=(False,))),
    ("topological", dict(train=(False,))),
    pytest.param("sic", {}, marks=pytest.mark.slow),
    pytest.param("dense", {}, marks=pytest.mark.slow),
    pytest.param("bottleneck", {}, marks=pytest.mark.slow, id="bottleneck-jit"),
])
def test_layer_contract(case, options, tmp_path):
    """The harness contract at inference (training=False), BatchNorm with random statistics."""
    ops = run_layer_test(lambda: _layer(case), (8, 8, 16), tmp_path, call_kwargs={"training": False},
                         batchnorm_stats=case.startswith(("sic", "bottleneck")), **options)
    if case == "bottleneck":
        assert not {"SHAPE", "PACK"} & ops, ops


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=8, kernel_size=3, sic=True, bottleneck=True), "sic=True, bottleneck=True"),
    (dict(filters=0, kernel_size=3), "filters=0"),
    (dict(filters=8, kernel_size=0), "kernel_size=0"),
    (dict(filters=8, kernel_size=3, strides=-1), "strides=-1"),
    (dict(filters=8, kernel_size=3, depth=0), "depth=0"),
    (dict(filters=8, kernel_size=3, bottleneck_factor=0), "bottleneck_factor=0"),
    (dict(filters=8, kernel_size=3, dilation_rate=(1, -1)), r"dilation_rate=\(1, -1\)"),
    (dict(filters=8, kernel_size=3, padding="full"), "padding='full'"),
    (dict(filters=8, kernel_size=3, padding="valid"), "padding='valid'"),  # SIC needs 'same'
    (dict(filters=8, kernel_size=3, sic=False, bottleneck=True, padding="valid"), "padding='valid'"),
    (dict(filters=8, kernel_size=3, sic=False, bottleneck=True, strides=2), "strides=2"),
    (dict(filters=8, kernel_size=3, implementation="turbo"), "implementation='turbo'"),
    (dict(filters=8, kernel_size=3, topology={"blocks": 4, "bands": 1}), "topology="),
    (dict(filters=8, kernel_size=3, topology=4), "topology=4"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EffConv2D(**kwargs)


def test_layout_must_match_channels():
    layer = EffConv2D(16, 3, sic=False, topology={"layout": (4, 8), "neighborhood": (2, 8)})
    with pytest.raises(ValueError, match=r"layout=\(4, 8\)"):
        layer(helpers.random_input((1, 4, 4, 16)))


def test_filters_incompatible_with_layout():
    layer = EffConv2D(24, 3, sic=False, topology={"layout": (4, 4), "neighborhood": (2, 2)})
    with pytest.raises(ValueError, match="filters=24"):
        layer(helpers.random_input((1, 4, 4, 16)))
