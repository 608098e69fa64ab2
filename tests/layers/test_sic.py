"""SIConv2D (single intra-channel convolution): paths agree, step structure, shortcut rule, BatchNorm at
inference, topology forms, config, export, training, mixed precision, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers import SIConv2D
from keras_effconv.layers import _base
from tests import helpers
from tests.harness import assert_config_complete
from tests.harness import assert_paths_agree
from tests.harness import run_layer_test
from tests.harness import set_random_batchnorm_stats

CASES = {
    "identity": dict(filters=16, kernel_size=3),
    "s2-blocks": dict(filters=8, kernel_size=3, strides=2, topology={"blocks": 4, "band": 2}),
    "d2-layout-depth3": dict(filters=16, kernel_size=(3, 2), dilation_rate=2, depth=3,
                             topology={"layout": (4, 4), "neighborhood": (2, 3)}),
    "no-bn-tanh": dict(filters=32, kernel_size=3, use_batchnorm=False, activation="tanh", strides=(2, 1)),
}


@pytest.mark.parametrize("case,training", [(case, False) for case in CASES] + [("s2-blocks", True)],
                         ids=[f"{case}-inference" for case in CASES] + ["s2-blocks-training"])
def test_paths_match_reference(run_paths, case, training):
    layer = SIConv2D(**CASES[case])
    x = helpers.random_input((2, 8, 8, 16))
    layer(x)
    if layer.use_batchnorm:
        set_random_batchnorm_stats(layer)
    assert_paths_agree(run_paths(layer, x, training=training))


def _bn(bn, y):
    return (y - bn.moving_mean) / np.sqrt(bn.moving_variance + bn.epsilon) * bn.gamma + bn.beta


def _manual(layer, x):
    """Algorithm 3 spelled out with plain TF ops and inference BatchNorm from its formula."""
    x = tf.constant(x)
    for i in range(layer.depth):
        intra, projection = layer.intras[i], layer.projections[i]
        z = tf.nn.depthwise_conv2d(x, intra.kernel, (1, *intra.strides, 1), "SAME", dilations=intra.dilation_rate)
        y = tf.nn.conv2d(z, projection.dense_kernel(), 1, "SAME")
        if projection.use_bias:
            y = y + projection.bias
        if layer.use_batchnorm:
            y = _bn(layer.batchnorms[i], y)
        shortcut = i > 0 or (x.shape[-1] == layer.filters and layer.strides == (1, 1))
        x = layer.activation(x + y if shortcut else y)
    return np.asarray(x)


@pytest.mark.parametrize("case", ["identity", "s2-blocks", "no-bn-tanh"])
def test_inference_equals_algorithm_with_batchnorm_applied(case):
    """Inference output equals BN applied by its formula (the composite paths run BatchNorm as its own op;
    only the C++ fused step, tested in test_custom_path.py, folds it into the projection)."""
    layer = SIConv2D(**CASES[case])
    x = helpers.random_input((2, 8, 8, 16))
    layer(x)
    if layer.use_batchnorm:
        set_random_batchnorm_stats(layer)
    expected = _manual(layer, x)
    for call in (lambda v: layer(v, training=False), lambda v: layer(v)):
        np.testing.assert_allclose(call(x), expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))


def test_batchnorm_scale_bias_equals_batchnorm():
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    bn.build((None, 6))
    set_random_batchnorm_stats(bn)
    x = helpers.random_input((4, 6))
    scale, bias = _base.batchnorm_scale_bias(bn, tf.float32)
    np.testing.assert_allclose(x * scale + bias, bn(x, training=False), rtol=1e-5, atol=1e-6)


def _zero_projections(layer, steps):
    for i in steps:
        layer.projections[i].kernel.assign(tf.zeros_like(layer.projections[i].kernel))
        bn = layer.batchnorms[i]
        bn.beta.assign(tf.zeros_like(bn.beta))
        bn.moving_mean.assign(tf.zeros_like(bn.moving_mean))


@pytest.mark.parametrize("training", [False, True])
def test_identity_first_step_keeps_shortcut(training):
    layer = SIConv2D(16, 3, depth=2)
    x = helpers.random_input((2, 8, 8, 16))
    layer(x)
    assert layer.first_shortcut
    _zero_projections(layer, range(2))
    # Every step adds nothing: x -> relu(x + 0), twice.
    np.testing.assert_allclose(layer(x, training=training), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(filters=8), dict(filters=16, strides=2)], ids=["filters", "strides"])
def test_first_step_has_no_shortcut_when_shape_changes(kwargs):
    layer = SIConv2D(kernel_size=3, depth=3, **kwargs)
    x = helpers.random_input((2, 8, 8, 16))
    y0 = layer(x)
    assert not layer.first_shortcut
    _zero_projections(layer, [0])
    # Step 0 outputs relu(BN(0)) = 0 (no shortcut); the identity steps then see zeros plus their own term.
    expected = tf.zeros(y0.shape)
    for i in (1, 2):
        z = layer.projections[i](layer.intras[i](expected))
        expected = tf.nn.relu(expected + layer.batchnorms[i](z, training=False))
    np.testing.assert_allclose(layer(x, training=False), expected, atol=1e-6)
    _zero_projections(layer, [0, 1, 2])
    np.testing.assert_array_equal(layer(x, training=False), 0.0)  # no path for x at all


def test_identity_steps_keep_shortcut_after_projection_step():
    layer = SIConv2D(8, 3, depth=2)
    x = helpers.random_input((2, 8, 8, 16))
    layer(x)
    _zero_projections(layer, [1])
    first = tf.nn.relu(layer.batchnorms[0](layer.projections[0](layer.intras[0](x)), training=False))
    np.testing.assert_allclose(layer(x, training=False), tf.nn.relu(first), atol=1e-6)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_depth_and_macs(depth):
    layer = SIConv2D(8, 3, strides=2, depth=depth, topology={"blocks": 4, "band": 1})
    y = layer(helpers.random_input((1, 8, 8, 16)))
    assert tuple(y.shape) == (1, 4, 4, 8) == layer.compute_output_shape((1, 8, 8, 16))
    assert len(layer.intras) == len(layer.projections) == len(layer.batchnorms) == depth
    assert layer.intras[0].strides == (2, 2) and all(intra.strides == (1, 1) for intra in layer.intras[1:])
    # weights: per step k*k*C_in (intra) + window*filters (projection) + 4*filters (BN, 2 trainable)
    assert len(layer.trainable_weights) == 4 * depth
    # MACs: step 0: 4*4*16*9 + 4*4*(16/4)*8; later steps: 4*4*8*9 + 4*4*(8/4)*8
    expected = 4 * 4 * 16 * 9 + 4 * 4 * 4 * 8 + (depth - 1) * (4 * 4 * 8 * 9 + 4 * 4 * 2 * 8)
    assert layer.compute_macs((None, 8, 8, 16)) == expected


@pytest.mark.parametrize("topology,layouts,ratios", [
    ({"blocks": 4, "band": 1}, [(4, 4), (4, 4)], [0.25, 0.25]),
    ({"blocks": 2, "band": 1}, [(2, 8), (2, 8)], [0.5, 0.5]),
    ({"layout": (4, 4), "neighborhood": (2, 4)}, [(4, 4), (4, 4)], [0.5, 0.5]),
    ([None, {"blocks": 4, "band": 1}], [None, (4, 4)], [1.0, 0.25]),
    (None, [None, None], [1.0, 1.0]),
])
def test_topology_forms(topology, layouts, ratios):
    layer = SIConv2D(16, 3, topology=topology)
    layer(helpers.random_input((1, 8, 8, 16)))
    assert [p.layout for p in layer.projections] == layouts
    assert [p.connection_ratio for p in layer.projections] == ratios
    assert assert_config_complete(layer).topology == layer.topology


def test_blocks_band_is_block_diagonal():
    layer = SIConv2D(16, 3, topology={"blocks": 4, "band": 1})
    layer(helpers.random_input((1, 8, 8, 16)))
    assert all(p.topology.gathers == 0 for p in layer.projections)
    mask = layer.projections[0].topology.mask()
    np.testing.assert_array_equal(mask, np.kron(np.eye(4), np.ones((4, 4))))


def test_config_complete_and_round_trip():
    layer = SIConv2D(8, (3, 5), strides=2, depth=3, dilation_rate=1, activation="relu6", use_batchnorm=True,
                     topology={"blocks": 2, "band": 1}, momentum=0.9, epsilon=1e-4, kernel_regularizer="l2",
                     implementation="reference", name="sic")
    clone = assert_config_complete(layer)
    assert clone.depth == 3 and clone.strides == (2, 2) and clone.momentum == 0.9


@pytest.mark.parametrize("kwargs", [dict(filters=16, topology={"blocks": 4, "band": 2}),
                                    dict(filters=8, strides=2, depth=3)], ids=["identity-band", "s2-dense"])
def test_keras_savedmodel_tflite(kwargs, tmp_path):
    """Export-only contract runs (the full one is test_layer_contract), BatchNorm with random statistics."""
    run_layer_test(lambda: SIConv2D(**kwargs), (8, 8, 16), tmp_path, batchnorm_stats=True, paths=False, train=(), mixed_atol=None)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_trains(jit_compile):
    layer = SIConv2D(8, 3, strides=2, topology={"blocks": 4, "band": 1})
    model = helpers.wrap(layer, (8, 8, 16))
    x = helpers.random_input((4, 8, 8, 16))
    moving_mean = np.array(layer.batchnorms[0].moving_mean)
    helpers.assert_trains(model, x, helpers.random_input((4, 4, 4, 8), seed=1), jit_compile)
    assert not np.allclose(moving_mean, layer.batchnorms[0].moving_mean)  # BN ran in training mode


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0), "filters=0"),
    (dict(filters=8, kernel_size=0), "kernel_size=0"),
    (dict(filters=8, strides=-1), "strides=-1"),
    (dict(filters=8, depth=0), "depth=0"),
    (dict(filters=8, dilation_rate=0), "dilation_rate=0"),
    (dict(filters=8, padding="valid"), "padding='valid'"),
    (dict(filters=8, implementation="c++"), r"implementation='c\+\+'"),
    (dict(filters=8, topology={"blocks": 4}), r"topology=\{'blocks': 4\}"),
    (dict(filters=8, topology={"layout": (4, 4)}), "topology="),
    (dict(filters=8, topology="banded"), "topology='banded'"),
    (dict(filters=8, topology={"blocks": 0, "band": 1}), "topology="),
    (dict(filters=8, topology={"blocks": 4, "band": 5}), "topology="),
    (dict(filters=8, topology={"layout": (4, 4), "neighborhood": (5, 1)}), "neighborhood="),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SIConv2D(**kwargs)


def test_blocks_must_divide_channels():
    layer = SIConv2D(16, 3, topology={"blocks": 3, "band": 1})
    with pytest.raises(ValueError, match="blocks=3"):
        layer(helpers.random_input((1, 4, 4, 16)))


def test_per_step_topology_keras_round_trip(tmp_path):
    layer = SIConv2D(16, 3, topology=[None, {"blocks": 4, "band": 1}])
    model = helpers.wrap(layer, (8, 8, 16))
    set_random_batchnorm_stats(layer)
    restored = helpers.assert_keras_roundtrip(model, helpers.random_input((2, 8, 8, 16)), tmp_path)
    assert list(restored.layers[1].get_config()["topology"]) == [None, {"blocks": 4, "band": 1}]
    assert [p.layout for p in restored.layers[1].projections] == [None, (4, 4)]


def test_layer_contract(tmp_path):
    run_layer_test(lambda: SIConv2D(16, 3, topology={"blocks": 4, "band": 2}, momentum=0.9, epsilon=1e-4),
                   (8, 8, 16), tmp_path, call_kwargs={"training": False}, batchnorm_stats=True, rtol=1e-4,
                   train=())
