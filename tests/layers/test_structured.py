"""StructuredConv2D (sum-pool + small conv == conv with dense_kernel), decompose, StructuralRegularizer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers.structured import StructuralRegularizer
from keras_effconv.layers.structured import StructuredConv2D
from keras_effconv.layers.structured import band
from keras_effconv.layers.structured import decompose
from keras_effconv.layers.structured import expand
from keras_effconv.layers.structured import structural_error
from tests import helpers
from tests.harness import run_layer_test

GEOMETRY = [dict(strides=1, padding="same", dilation_rate=1), dict(strides=2, padding="same", dilation_rate=1),
            dict(strides=1, padding="same", dilation_rate=2), dict(strides=(2, 1), padding="valid")]
STRUCTURES = [(3, (4, 2)), (5, (3, 3, 2)), (3, (6, 3)), ((3, 2), (2, 1))]


def _dense_kernel_by_hand(alpha, kernel_shape):
    """Sum of alpha-scaled all-ones blocks, one per offset (the paper's definition, loop form)."""
    nh, nw, cin, cout = kernel_shape
    bh, bw, c, _ = alpha.shape
    kernel = np.zeros(kernel_shape)
    for b in range(bh):
        for e in range(bw):
            for a in range(c):
                kernel[b:b + nh - bh + 1, e:e + nw - bw + 1, a:a + cin - c + 1, :] += alpha[b, e, a]
    return kernel


@pytest.mark.parametrize("kernel_size,structure", STRUCTURES, ids=["3-c4n2", "5-c3n3x2", "3-full", "3x2-c2n1"])
@pytest.mark.parametrize("geometry", GEOMETRY, ids=["s1", "s2", "d2", "s21valid"])
def test_sum_pool_execution_equals_dense_conv(kernel_size, structure, geometry):
    x = helpers.random_input((2, 11, 10, 6))
    layer = StructuredConv2D(7, kernel_size, structure, bias_initializer="ones", **geometry)
    layer.build(x.shape)
    y, (gx, galpha, _) = helpers.outputs_and_gradients(layer, x, layer.trainable_weights)
    dense = np.array(layer.dense_kernel())
    np.testing.assert_allclose(dense, _dense_kernel_by_hand(np.array(layer.alpha), dense.shape), atol=1e-6)
    conv = keras.layers.Conv2D(7, kernel_size, bias_initializer="ones", **geometry)
    conv.build(x.shape)
    conv.kernel.assign(dense)
    y_ref, (gx_ref, gk_ref) = helpers.outputs_and_gradients(conv, x, [conv.kernel])
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, atol=1e-4)
    # chain rule through W = A alpha: dL/dalpha = A^T dL/dW
    c, bh, bw = layer.structure
    a_h, a_w, a_c = band(dense.shape[0], bh), band(dense.shape[1], bw), band(6, c)
    np.testing.assert_allclose(galpha, np.einsum("ub,ve,ca,uvco->beao", a_h, a_w, a_c, gk_ref), atol=1e-3, rtol=1e-4)


def test_decompose_is_exact_on_structured_kernels():
    x = helpers.random_input((2, 9, 9, 8))
    alpha = helpers.random_input((2, 2, 5, 6))
    conv = keras.layers.Conv2D(6, 3, strides=2, padding="same", bias_initializer="random_normal")
    conv.build(x.shape)
    conv.kernel.assign(expand(alpha.astype(np.float64), (3, 3, 8, 6), (5, 2, 2)).astype("float32"))
    layer = decompose(conv, (5, 2))
    assert layer.projection_error < 1e-6
    np.testing.assert_allclose(layer.alpha, alpha, atol=1e-4)
    np.testing.assert_allclose(layer(x), conv(x), atol=1e-4, rtol=1e-5)
    assert layer.compute_macs(x.shape) == 5 * 5 * (5 * 2 * 2) * 6 + 9 * 9 * 8 * 5


def test_decompose_reports_projection_error_on_plain_kernels():
    conv = keras.layers.Conv2D(6, 3, padding="same")
    conv.build((None, 8, 8, 8))
    coarse, fine = decompose(conv, (4, 2)), decompose(conv, (7, 2))
    assert 0.3 < coarse.projection_error < 1.0
    assert fine.projection_error < coarse.projection_error
    assert decompose(conv, (8, 3)).projection_error < 1e-6  # the full structure spans every kernel
    x = helpers.random_input((1, 8, 8, 8))
    # the decomposed layer is the conv with the projected kernel
    np.testing.assert_allclose(coarse(x), tf.nn.conv2d(x, coarse.dense_kernel(), 1, "SAME"), atol=1e-5)


def test_structural_regularizer_pulls_towards_structure():
    reg = StructuralRegularizer((4, 2), weight=0.5)
    kernel = tf.Variable(0.05 * helpers.random_input((3, 3, 8, 6)))  # the scale of a conv kernel
    value = float(reg(kernel))
    np.testing.assert_allclose(value, 0.5 * structural_error(kernel.numpy(), (4, 2)), rtol=1e-4)
    optimizer = keras.optimizers.SGD(0.5)
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = reg(kernel)
        optimizer.apply_gradients([(tape.gradient(loss, kernel), kernel)])
    assert float(reg(kernel)) < 0.3 * value
    structured = expand(helpers.random_input((2, 2, 4, 6)).astype(np.float64), (3, 3, 8, 6), (4, 2, 2))
    assert float(reg(tf.constant(structured, tf.float32))) < 1e-5
    assert float(StructuralRegularizer((4, 2), weight=0.5, normalize=False)(kernel)) > 0


def test_structural_regularizer_in_a_model(tmp_path):
    reg = StructuralRegularizer((2, 2), weight=0.1)
    model = helpers.wrap(keras.layers.Conv2D(4, 3, padding="same", kernel_regularizer=reg), (8, 8, 3))
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    helpers.assert_trains(model, helpers.random_input((4, 8, 8, 3)), helpers.random_input((4, 8, 8, 4), 1), True)
    restored = helpers.assert_keras_roundtrip(model, helpers.random_input((2, 8, 8, 3)), tmp_path)
    assert restored.layers[-1].kernel_regularizer.get_config() == reg.get_config()


@pytest.mark.parametrize("kwargs", [dict(strides=2), dict(dilation_rate=2)])
def test_tflite_builtins_parity(kwargs):
    model = helpers.wrap(StructuredConv2D(6, 3, (3, 2), **kwargs), (10, 10, 4))
    ops = helpers.assert_tflite_parity(model, helpers.random_input((2, 10, 10, 4)))
    assert "AVERAGE_POOL_2D" in ops and "CONV_2D" in ops


def test_compute_macs():
    layer = StructuredConv2D(10, 3, (4, 2), strides=2, padding="valid")
    assert layer.compute_macs((None, 16, 12, 8)) == 7 * 5 * (4 * 2 * 2) * 10 + 16 * 12 * 8 * 4
    assert StructuredConv2D(10, 3, (8, 2)).compute_macs((None, 16, 12, 8)) == 16 * 12 * (8 * 2 * 2) * 10


def test_dynamic_spatial_dims():
    model = helpers.wrap(StructuredConv2D(4, 3, (2, 2), strides=2), (None, None, 3))
    x = helpers.random_input((2, 9, 7, 3))
    layer = model.layers[-1]
    ref = tf.nn.conv2d(x, layer.dense_kernel(), 2, "SAME") + layer.bias
    np.testing.assert_allclose(model(x), ref, atol=1e-5)


def test_initial_output_scale_matches_a_dense_conv():
    x = helpers.random_input((4, 16, 16, 32))
    dense = keras.layers.Conv2D(32, 3, padding="same")(x)
    y = StructuredConv2D(32, 3, (16, 2))(x)
    assert 0.3 < float(tf.math.reduce_std(y) / tf.math.reduce_std(dense)) < 3.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(structure=(2,)), "structure"),
    (dict(structure=(0, 2)), "structure"),
    (dict(structure=(2, 4)), "structure"),
    (dict(structure="2x2"), "structure"),
    (dict(filters=0), "filters"),
    (dict(padding="causal"), "padding"),
    (dict(strides=2, dilation_rate=2), "dilation_rate"),
])
def test_invalid_arguments(kwargs, match):
    args = dict(filters=4, kernel_size=3, structure=(2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        StructuredConv2D(**args)


def test_invalid_build_and_regularizer_arguments():
    with pytest.raises(ValueError, match="structure"):
        StructuredConv2D(4, 3, (8, 2)).build((None, 8, 8, 4))
    with pytest.raises(ValueError, match="weight"):
        StructuralRegularizer((2, 2), weight=-1.0)
    with pytest.raises(ValueError, match="conv_layer"):
        decompose(keras.layers.Dense(2), (2, 2))


@pytest.mark.parametrize("make,shape,options", [
    (lambda: StructuredConv2D(4, 3, (2, 2), dilation_rate=2), (8, 8, 3), {}),
    (lambda: StructuredConv2D(4, (3, 5), (2, 2, 3), padding="valid", kernel_initializer="ones"), (8, 8, 3), {}),
    (lambda: StructuredConv2D(5, 3, (3, 2), dilation_rate=2), (8, 8, 6), dict(train=(), mixed_train=(False, True))),
    (lambda: StructuredConv2D(6, 3, (2, 2), strides=2, activation="relu"), (8, 8, 4),
     dict(paths=False, train=(), mixed_atol=None)),
], ids=["dilated", "valid-ones", "mixed-train", "s2-export"])
def test_layer_contract(make, shape, options, tmp_path):
    run_layer_test(make, shape, tmp_path, rtol=1e-4, **options)
