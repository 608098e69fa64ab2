"""DecoupledConv2D: the unrelaxed form is a standard conv; relaxed forms are convs with `equivalent_kernel`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers.decoupled import DecoupledConv2D
from tests import helpers
from tests.harness import assert_paths_agree
from tests.harness import run_layer_test

GEOMETRY = [dict(strides=1, padding="same", dilation_rate=1), dict(strides=2, padding="same", dilation_rate=1),
            dict(strides=1, padding="valid", dilation_rate=(2, 1)), dict(strides=(1, 2), padding="valid")]


def _explicit_unrelaxed(conv):
    """Build the two-step decoupling of `conv` by hand: 1x1 to K*C_out, one-hot shifts, group sums."""
    kernel = np.array(conv.kernel)
    kh, kw, cin, cout = kernel.shape
    area = kh * kw
    pointwise = np.zeros((cin, cout * area), "float32")
    spatial = np.zeros((kh, kw, cout * area), "float32")
    for o in range(cout):
        for u in range(kh):
            for v in range(kw):
                m = (u * kw + v) * cout + o  # intermediate channel of output o and offset (u, v)
                pointwise[:, m] = kernel[u, v, :, o]
                spatial[u, v, m] = 1.0
    layer = DecoupledConv2D(cout, (kh, kw), conv.strides, conv.padding, conv.dilation_rate)
    layer.build((None, None, None, cin))
    layer.pointwise_kernel.assign(pointwise)
    layer.spatial_kernel.assign(spatial)
    layer.bias.assign(np.array(conv.bias))
    return layer


@pytest.mark.parametrize("geometry", GEOMETRY, ids=["s1", "s2", "d21valid", "s12valid"])
def test_unrelaxed_equals_standard_conv(geometry):
    x = helpers.random_input((2, 9, 10, 4))
    conv = keras.layers.Conv2D(5, (3, 2), bias_initializer="random_normal", **geometry)
    conv.build(x.shape)
    layer = _explicit_unrelaxed(conv)
    y, (gx, gp, gs, gb) = helpers.outputs_and_gradients(layer, x, [layer.pointwise_kernel, layer.spatial_kernel, layer.bias])
    y_ref, (gx_ref, gk_ref, gb_ref) = helpers.outputs_and_gradients(conv, x, [conv.kernel, conv.bias])
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, atol=1e-4)
    np.testing.assert_allclose(gb, gb_ref, atol=1e-4)
    # d/d pointwise[:, q*C_out + o] is d/d kernel[q, :, o] (the spatial filter is a one-hot selector)
    kh, kw, cin, cout = gk_ref.shape
    np.testing.assert_allclose(gp.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3), gk_ref, atol=1e-4)
    # from_conv builds the same equivalence; "fixed" freezes the shifts
    for configuration in ("fixed", "learned"):
        built = DecoupledConv2D.from_conv(conv, spatial_configuration=configuration)
        np.testing.assert_allclose(built(x), y_ref, atol=1e-5)
    assert DecoupledConv2D.from_conv(conv).trainable_weights[1].name == "bias"


@pytest.mark.parametrize("intermediate_channels", [None, 10, 5])
@pytest.mark.parametrize("geometry", GEOMETRY[:3], ids=["s1", "s2", "d21valid"])
def test_relaxed_equals_conv_with_equivalent_kernel(intermediate_channels, geometry):
    x = helpers.random_input((2, 9, 8, 3))
    layer = DecoupledConv2D(5, 3, intermediate_channels=intermediate_channels, bias_initializer="ones", **geometry)
    layer.build(x.shape)
    y, grads = helpers.outputs_and_gradients(layer, x, layer.trainable_weights)
    conv = keras.layers.Conv2D(5, 3, bias_initializer="ones", **geometry)
    conv.build(x.shape)
    conv.kernel.assign(layer.equivalent_kernel())
    y_ref, grads_ref = helpers.outputs_and_gradients(conv, x, [])
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(grads[0], grads_ref[0], atol=1e-4)
    assert layer.pointwise_kernel.shape == (3, intermediate_channels or 45)


@pytest.mark.parametrize("kwargs", [dict(intermediate_channels=10, strides=2), dict(dilation_rate=(1, 2))])
def test_reference_tf_xla_paths_agree(run_paths, kwargs):
    layer = DecoupledConv2D(5, 3, **kwargs)
    assert_paths_agree(run_paths(layer, helpers.random_input((2, 9, 8, 3))), rtol=1e-4)


def test_initial_output_scale_matches_a_dense_conv():
    x = helpers.random_input((4, 16, 16, 32))
    dense = keras.layers.Conv2D(32, 3, padding="same")(x)
    for m in (None, 64):
        y = DecoupledConv2D(32, 3, intermediate_channels=m)(x)
        assert 0.5 < float(tf.math.reduce_std(y) / tf.math.reduce_std(dense)) < 2.0


@pytest.mark.parametrize("kwargs", [dict(intermediate_channels=12, strides=2), dict(spatial_configuration="fixed",
                                                                                  dilation_rate=2)])
def test_tflite_builtins_parity(kwargs):
    model = helpers.wrap(DecoupledConv2D(6, 3, **kwargs), (10, 10, 4))
    ops = helpers.assert_tflite_parity(model, helpers.random_input((2, 10, 10, 4)))
    assert "DEPTHWISE_CONV_2D" in ops


def test_fixed_configuration_does_not_train_the_shifts():
    model = helpers.wrap(DecoupledConv2D(4, 3, spatial_configuration="fixed"), (8, 8, 3))
    layer = model.layers[-1]
    assert [w.name for w in layer.non_trainable_weights] == ["spatial_kernel"]
    before = np.array(layer.spatial_kernel)
    helpers.assert_trains(model, helpers.random_input((4, 8, 8, 3)), helpers.random_input((4, 8, 8, 4), seed=1),
                          jit_compile=True)
    np.testing.assert_array_equal(before, layer.spatial_kernel)


def test_compute_macs():
    layer = DecoupledConv2D(10, 3, strides=2, intermediate_channels=20)
    assert layer.compute_macs((None, 16, 12, 8)) == 16 * 12 * 8 * 20 + 8 * 6 * 20 * 9
    assert DecoupledConv2D(10, 3).compute_macs((1, 4, 4, 2)) == 16 * 2 * 90 + 16 * 90 * 9


@pytest.mark.parametrize("kwargs,match", [
    (dict(intermediate_channels=7), "intermediate_channels"),
    (dict(intermediate_channels=0), "intermediate_channels"),
    (dict(spatial_configuration="fixed", intermediate_channels=8), "intermediate_channels"),
    (dict(spatial_configuration="random"), "spatial_configuration"),
    (dict(filters=-1), "filters"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(padding="full"), "padding"),
    (dict(strides=2, dilation_rate=2), "dilation_rate"),
])
def test_invalid_arguments(kwargs, match):
    args = dict(filters=4, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DecoupledConv2D(**args)


@pytest.mark.parametrize("make,options", [
    (lambda: DecoupledConv2D(4, 3, intermediate_channels=8, activation="relu"), dict(mixed_train=(False, True))),
    (lambda: DecoupledConv2D(4, (3, 1), 2, "valid", spatial_configuration="fixed"), {}),
    (lambda: DecoupledConv2D(6, 3, strides=2, intermediate_channels=12, activation="relu"),
     dict(paths=False, train=(), mixed_atol=None)),
], ids=["learned", "fixed-valid-s2", "s2-export"])
def test_layer_contract(make, options, tmp_path):
    run_layer_test(make, (8, 8, 3), tmp_path, rtol=1e-4, **options)
