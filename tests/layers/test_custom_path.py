"""Layers on the "custom" path (C++ ops) equal the composite path; exports never use the ops."""

import numpy as np
import pytest
import tensorflow as tf

from keras_effconv import implementation
from keras_effconv.export import tflite_op_names
from keras_effconv.export import to_tflite
from keras_effconv.layers import SIConv2D
from keras_effconv.layers import TopologicalConv2D
from keras_effconv.ops import custom
from tests import helpers


@pytest.fixture
def custom_ops():
    if not custom.available(build=True):
        pytest.skip(f"custom ops unavailable: {custom.unavailable_reason()}")
    implementation.enable_custom_ops(True)
    yield
    implementation.enable_custom_ops(False)


def _graph_ops(fn, x):
    graph = fn.get_concrete_function(tf.TensorSpec(x.shape)).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {n.op for n in nodes}


def _sic_with_stats(x):
    layer = SIConv2D(16, topology=[None, {"blocks": 4, "band": 2}])
    layer(x)
    rng = np.random.default_rng(1)
    for bn in layer.batchnorms:
        bn.moving_mean.assign(rng.uniform(-1, 1, 16))
        bn.moving_variance.assign(rng.uniform(0.5, 1.5, 16))
    return layer


def test_custom_path_equals_composite(custom_ops):
    x = helpers.random_input((2, 8, 8, 16))
    implementation.enable_custom_ops(False)
    sic, topo = _sic_with_stats(x), TopologicalConv2D(32, 1, layout=(4, 4), neighborhood=(2, 4))
    expected = [sic(x, training=False), topo(x)]
    implementation.enable_custom_ops(True)
    fn = tf.function(lambda t: (sic(t, training=False), topo(t)))
    for got, want in zip(fn(x), expected):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert {"FusedSICStep", "TopologicalProjection"} <= _graph_ops(fn, x)


def test_training_and_export_stay_composite(custom_ops):
    x = helpers.random_input((2, 8, 8, 16))
    sic = _sic_with_stats(x)
    assert "FusedSICStep" not in _graph_ops(tf.function(lambda t: sic(t, training=True)), x)
    names = tflite_op_names(to_tflite(helpers.wrap(sic, (8, 8, 16))))
    assert not any("Fused" in n or n == "CUSTOM" for n in names)
