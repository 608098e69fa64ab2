"""ChannelNets layers: numpy reference (dense channel-mixing matrix), the layer-level reference policy
vs the fast path (outputs and gradients), and the layer contract (tests/harness.py: config, all three
paths, .keras/SavedModel round trips, TFLite parity without gathers, training, mixed_float16)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers.channelnets import ConvClassifier
from keras_effconv.layers.channelnets import DepthwiseSeparableChannelWiseConv
from keras_effconv.layers.channelnets import GroupChannelWiseConv
from tests import helpers
from tests.harness import run_layer_test


def channel_matrix(kernel, channels, stride):
    """Dense [C, F * C/s] matrix of F 'SAME' channel-wise convs (taps kernel[:, 0, f]), by loops."""
    taps, _, filters = kernel.shape
    length = -(-channels // stride)
    pad_left = max((length - 1) * stride + taps - channels, 0) // 2
    matrix = np.zeros((channels, filters * length), np.float64)
    for f in range(filters):
        for o in range(length):
            for k in range(taps):
                c = o * stride + k - pad_left
                if 0 <= c < channels:
                    matrix[c, f * length + o] += kernel[k, 0, f]
    return matrix


def numpy_gcw(layer, x):
    kernel = np.asarray(layer.kernel)
    return np.einsum("nhwc,co->nhwo", x, channel_matrix(kernel, x.shape[-1], layer.groups))


def numpy_dwscw(layer, x):
    depthwise = keras.layers.DepthwiseConv2D(
        layer.kernel_size, strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
        use_bias=False,
    )
    depthwise.build(x.shape)
    depthwise.set_weights([np.asarray(layer.depthwise_kernel)])
    y = np.asarray(depthwise(x), np.float64)
    return np.einsum("nhwc,co->nhwo", y, channel_matrix(np.asarray(layer.kernel), x.shape[-1], 1))


def numpy_classifier(layer, x):
    kernel = np.asarray(layer.kernel)[..., 0, 0]
    depth = kernel.shape[2]
    out = np.stack([np.einsum("nhwc,hwc->n", x[..., o:o + depth], kernel) for o in range(layer.classes)], -1)
    return out + (np.asarray(layer.bias) if layer.use_bias else 0.0)


def twin(layer, input_shape, implementation):
    """The same layer (same weights) on another implementation path."""
    config = layer.get_config() | {"implementation": implementation, "name": layer.name + "_" + implementation}
    other = type(layer).from_config(config)
    other.build(input_shape)
    other.set_weights(layer.get_weights())
    return other


def assert_paths_agree(layer, x):
    """Fast ("auto") and reference paths: same outputs, same gradients w.r.t. input and weights."""
    reference = twin(layer, x.shape, "reference")
    x = tf.constant(x)
    cotangent = None
    results = []
    for lay in (layer, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = lay(x)
            if cotangent is None:
                cotangent = tf.constant(helpers.random_input(y.shape, seed=7))
            loss = tf.reduce_sum(y * cotangent)
        grads = tape.gradient(loss, [x] + lay.trainable_weights)
        results.append((y, grads))
    (y_fast, g_fast), (y_ref, g_ref) = results
    np.testing.assert_allclose(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


GCW_CASES = [(2, 8, 16), (2, 2, 12), (3, 5, 12), (4, 16, 32), (1, 3, 7), (2, 30, 8)]


@pytest.mark.parametrize("groups,kernel_size,channels", GCW_CASES)
def test_gcw_matches_numpy_and_reference(groups, kernel_size, channels):
    x = helpers.random_input((2, 3, 4, channels))
    layer = GroupChannelWiseConv(groups, kernel_size)
    y = layer(x)
    np.testing.assert_allclose(y, numpy_gcw(layer, x), atol=1e-5, rtol=1e-5)
    assert_paths_agree(layer, x)


def test_gcw_fuses_groups():
    """Output group j reads every input group (the point of GCWConv), a group conv would not."""
    layer = GroupChannelWiseConv(2, 8, kernel_initializer="ones")
    layer.build((None, 1, 1, 16))
    matrix = channel_matrix(np.asarray(layer.kernel), 16, 2)
    for j in range(2):
        columns = matrix[:, j * 8:(j + 1) * 8]
        assert columns[:8].any() and columns[8:].any()
    assert layer.kernel.shape == (8, 1, 2) and layer.compute_output_shape((None, 5, 5, 16)) == (None, 5, 5, 16)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, channel_kernel_size=5),
        dict(kernel_size=3, channel_kernel_size=64, dilation_rate=2),
        dict(kernel_size=(3, 5), channel_kernel_size=8, strides=2),
        dict(kernel_size=3, channel_kernel_size=4, padding="valid"),
    ],
)
def test_dwscw_matches_numpy_and_reference(kwargs):
    x = helpers.random_input((2, 9, 8, 24))
    layer = DepthwiseSeparableChannelWiseConv(**kwargs)
    y = layer(x)
    assert tuple(y.shape) == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, numpy_dwscw(layer, x), atol=1e-5, rtol=1e-5)
    assert_paths_agree(layer, x)


@pytest.mark.parametrize(
    "classes,use_bias,shape", [(10, True, (3, 3, 24)), (1, False, (2, 4, 5)), (24, True, (1, 1, 24))]
)
def test_classifier_matches_numpy_and_reference(classes, use_bias, shape):
    x = helpers.random_input((3,) + shape)
    layer = ConvClassifier(classes, use_bias=use_bias)
    layer.build(x.shape)
    if use_bias:
        layer.bias.assign(helpers.random_input((classes,), seed=3))
    y = layer(x)
    assert y.shape == (3, classes)
    np.testing.assert_allclose(y, numpy_classifier(layer, x), atol=1e-5, rtol=1e-5)
    assert_paths_agree(layer, x)
    assert layer.kernel.shape == shape[:2] + (shape[2] - classes + 1, 1, 1)


def test_compute_macs():
    assert GroupChannelWiseConv(2, 8).compute_macs((None, 14, 14, 512)) == 14 * 14 * 512 * 8
    dws = DepthwiseSeparableChannelWiseConv(3, 64, strides=2)
    assert dws.compute_macs((None, 14, 14, 1024)) == 7 * 7 * 1024 * (9 + 64)
    assert ConvClassifier(1000).compute_macs((None, 7, 7, 1024)) == 1000 * 49 * 25


LAYERS = [
    (lambda: GroupChannelWiseConv(2, 8), (6, 6, 16)),
    (lambda: DepthwiseSeparableChannelWiseConv(3, 6, dilation_rate=2), (6, 6, 16)),
    (lambda: ConvClassifier(5, use_bias=True), (4, 4, 16)),
]
IDS = ["gcw", "dwscw", "classifier"]


@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_layer_contract(make, shape, tmp_path):
    ops = run_layer_test(make, shape, tmp_path, rtol=1e-4)
    assert "GATHER" not in ops and "GATHER_ND" not in ops


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: GroupChannelWiseConv(0), "groups=0"),
        (lambda: GroupChannelWiseConv(4, 3), "kernel_size=3"),
        (lambda: GroupChannelWiseConv(2, implementation="fastest"), "implementation='fastest'"),
        (lambda: DepthwiseSeparableChannelWiseConv(channel_kernel_size=0), "channel_kernel_size=0"),
        (lambda: DepthwiseSeparableChannelWiseConv(strides=2, dilation_rate=2), r"dilation_rate=\(2, 2\)"),
        (lambda: DepthwiseSeparableChannelWiseConv(padding="full"), "padding='full'"),
        (lambda: DepthwiseSeparableChannelWiseConv(kernel_size=(3, 0)), "kernel_size"),
        (lambda: ConvClassifier(0), "classes=0"),
        (lambda: ConvClassifier(3, use_bias="yes"), "use_bias='yes'"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer,shape,match",
    [
        (GroupChannelWiseConv(3), (None, 4, 4, 16), "groups=3"),
        (ConvClassifier(20), (None, 4, 4, 16), "classes=20"),
        (ConvClassifier(2), (None, None, None, 16), "static"),
    ],
)
def test_invalid_input_shapes(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.build(shape)


def test_unknown_spatial_dims():
    inputs = keras.Input((None, None, 16))
    outputs = DepthwiseSeparableChannelWiseConv(3, 5)(GroupChannelWiseConv(2)(inputs))
    model = keras.Model(inputs, outputs)
    assert model(helpers.random_input((2, 5, 7, 16))).shape == (2, 5, 7, 16)
