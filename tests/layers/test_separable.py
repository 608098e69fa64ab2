"""DepthwiseSeparableBlock / GroupPointwiseConv: equivalence with plain Keras layers, the layer
contract (tests/harness.py: config, round trips, TFLite parity, training, mixed_float16), argument checks."""

import keras
import numpy as np
import pytest

from keras_effconv.layers.separable import DepthwiseSeparableBlock
from keras_effconv.layers.separable import GroupPointwiseConv
from tests import helpers
from tests.harness import run_layer_test


def block_diagonal(kernel, groups):
    """[1, 1, C/g, F] grouped kernel -> the equivalent dense [1, 1, C, F] kernel."""
    _, _, per_group, filters = kernel.shape
    dense = np.zeros((1, 1, per_group * groups, filters), kernel.dtype)
    step = filters // groups
    for j in range(groups):
        dense[:, :, j * per_group:(j + 1) * per_group, j * step:(j + 1) * step] = kernel[..., j * step:(j + 1) * step]
    return dense


def keras_twin(block, input_shape):
    """The block rebuilt from Keras built-ins (dense Conv2D with a block-diagonal kernel)."""
    inputs = keras.Input(input_shape[1:])
    dw = keras.layers.DepthwiseConv2D(
        block.kernel_size, block.strides, padding="same", dilation_rate=block.dilation_rate, use_bias=False
    )
    bn1, bn2 = keras.layers.BatchNormalization(), keras.layers.BatchNormalization()
    pw = keras.layers.Conv2D(block.filters, 1, use_bias=False)
    x = keras.layers.ReLU(6.0)(bn1(dw(inputs)))
    outputs = keras.layers.ReLU(6.0)(bn2(pw(x)))
    model = keras.Model(inputs, outputs)
    dw.set_weights(block.depthwise.get_weights())
    bn1.set_weights(block.depthwise_bn.get_weights())
    pw.set_weights([block_diagonal(np.asarray(block.pointwise.kernel), block.groups)])
    bn2.set_weights(block.pointwise_bn.get_weights())
    return model


def randomize_bn(block, seed=0):
    rng = np.random.default_rng(seed)
    for bn in (block.depthwise_bn, block.pointwise_bn):
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([
            rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
            rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape),
        ])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=16),
        dict(filters=12, strides=2),
        dict(filters=8, dilation_rate=2, kernel_size=5),
        dict(filters=16, groups=2),
    ],
)
def test_matches_keras_builtins(kwargs):
    x = helpers.random_input((2, 9, 9, 8))
    block = DepthwiseSeparableBlock(**kwargs)
    block.build(x.shape)
    randomize_bn(block)
    twin = keras_twin(block, x.shape)
    y = block(x, training=False)
    assert tuple(y.shape) == block.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, twin(x, training=False), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(block(x, training=True), twin(x, training=True), atol=1e-4, rtol=1e-4)


def test_group_pointwise_reads_own_group_only():
    layer = GroupPointwiseConv(8, groups=2, kernel_initializer="ones")
    x = np.zeros((1, 1, 1, 6), "float32")
    x[..., :3] = 1.0
    y = np.asarray(layer(x))[0, 0, 0]
    np.testing.assert_allclose(y, [3.0] * 4 + [0.0] * 4)
    assert layer.compute_macs((None, 4, 4, 6)) == 16 * 3 * 8


def test_compute_macs():
    block = DepthwiseSeparableBlock(512, strides=2, groups=2)
    assert block.compute_macs((None, 28, 28, 256)) == 14 * 14 * (9 * 256 + 256 * 256)


@pytest.mark.parametrize("make,options", [
    (lambda: DepthwiseSeparableBlock(16, strides=2), dict(train=(), mixed_atol=None)),
    (lambda: DepthwiseSeparableBlock(8, groups=2), {}),
], ids=["s2-export", "groups2"])
def test_layer_contract(make, options, tmp_path):
    """No alternative path (paths=False); BatchNorm with random statistics so the round trips see them."""
    run_layer_test(make, (8, 8, 8), tmp_path, paths=False, batchnorm_stats=True, **options)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: DepthwiseSeparableBlock(0), "filters=0"),
        (lambda: DepthwiseSeparableBlock(8, strides=2, dilation_rate=2), r"dilation_rate=\(2, 2\)"),
        (lambda: DepthwiseSeparableBlock(8, kernel_size=(3, 3, 3)), "kernel_size"),
        (lambda: DepthwiseSeparableBlock(8, groups=0), "groups=0"),
        (lambda: GroupPointwiseConv(9, groups=2), "filters=9"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match="groups=2"):
        DepthwiseSeparableBlock(8, groups=2).build((None, 4, 4, 5))
