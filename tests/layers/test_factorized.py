"""FactorizedConv2D / FactorizedConv3D: executions agree, decomposition of trained convs, TFLite parity of
every execution, the layer contract (tests/harness.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.layers.factorized import FactorizedConv2D
from keras_effconv.layers.factorized import FactorizedConv3D
from tests import helpers
from tests.harness import assert_config_complete
from tests.harness import assert_paths_agree
from tests.harness import run_layer_test

CASES_2D = [("cp", 4, "factorized"), ("cp", 4, "mobilenet"), ("tucker", (3, 5), "factorized"),
            ("tt", (3, 4, 2), "factorized")]
GEOMETRY = [dict(strides=1, padding="same", dilation_rate=1), dict(strides=2, padding="same", dilation_rate=1),
            dict(strides=1, padding="valid", dilation_rate=2), dict(strides=(2, 1), padding="valid", dilation_rate=1)]


def _reference(layer, x):
    """A plain convolution with the layer's reconstructed kernel."""
    kernel = tf.cast(layer.reconstruct_kernel(), tf.float32)
    y = tf.nn.convolution(x, kernel, strides=layer.strides, padding=layer.padding.upper(),
                          dilations=layer.dilation_rate)
    return y + layer.bias


def _outputs_and_grads(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * helpers.random_input(y.shape, seed=7))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("factorization,rank,execution", CASES_2D)
@pytest.mark.parametrize("geometry", GEOMETRY, ids=["s1", "s2", "d2valid", "s21valid"])
def test_2d_matches_reconstructed_conv(factorization, rank, execution, geometry):
    x = helpers.random_input((2, 9, 8, 5))
    layer = FactorizedConv2D(6, 3, rank, factorization, execution, seed=3, bias_initializer="ones", **geometry)
    twin = FactorizedConv2D(6, 3, rank, factorization, "reconstructed", seed=3, bias_initializer="ones", **geometry)
    _assert_matches_twin(layer, twin, x)


def _assert_matches_twin(layer, twin, x):
    """Outputs equal a plain conv with the rebuilt kernel and the "reconstructed" twin; gradients equal the twin's."""
    y, grads = _outputs_and_grads(layer, x)
    y_ref, grads_ref = _outputs_and_grads(twin, x)
    np.testing.assert_allclose(y, _reference(layer, x), atol=1e-5)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("factorization,rank,execution", [
    ("cp", 3, "factorized"), ("cp", 3, "mobilenet"), ("tucker", 3, "factorized"), ("tt", 2, "factorized")])
@pytest.mark.parametrize("strides,dilation_rate", [(1, 1), (2, 1), (1, (2, 1, 2))])
def test_3d_matches_reconstructed_conv(factorization, rank, execution, strides, dilation_rate):
    x = helpers.random_input((2, 7, 6, 5, 3))
    layer = FactorizedConv3D(4, (3, 3, 2), rank, factorization, execution, strides=strides,
                             dilation_rate=dilation_rate, seed=1)
    twin = FactorizedConv3D(4, (3, 3, 2), rank, factorization, "reconstructed", strides=strides,
                            dilation_rate=dilation_rate, seed=1)
    _assert_matches_twin(layer, twin, x)


@pytest.mark.parametrize("cls,shape,execution", [
    (FactorizedConv2D, (2, 9, 8, 4), "factorized"), (FactorizedConv2D, (2, 9, 8, 4), "mobilenet"),
    (FactorizedConv3D, (2, 5, 6, 4, 3), "factorized"), (FactorizedConv3D, (2, 5, 6, 4, 3), "mobilenet")])
def test_reference_tf_xla_paths_agree(run_paths, cls, shape, execution):
    layer = cls(4, 3, 3, "cp", execution, strides=2, seed=0)
    assert_paths_agree(run_paths(layer, helpers.random_input(shape)), rtol=1e-4)


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
def test_config_complete(factorization):
    assert_config_complete(FactorizedConv3D(4, (3, 1, 3), 2, factorization, strides=(1, 2, 1), seed=3))


def _trained_like_conv(cls, shape, filters, kernel_size, **kwargs):
    """A conv with seeded weights: unseeded, ALS at rank 27 sometimes ends 1e-5 above rank 12 (a flaky test)."""
    conv = (keras.layers.Conv2D if cls is FactorizedConv2D else keras.layers.Conv3D)(
        filters, kernel_size, kernel_initializer=keras.initializers.GlorotUniform(seed=0),
        bias_initializer=keras.initializers.RandomNormal(seed=1), **kwargs)
    conv.build(shape)
    return conv


@pytest.mark.parametrize("cls,shape", [(FactorizedConv2D, (2, 8, 7, 4)), (FactorizedConv3D, (2, 6, 5, 4, 3))])
@pytest.mark.parametrize("factorization", ["tucker", "tt"])
def test_from_conv_full_rank_is_exact(cls, shape, factorization):
    x = helpers.random_input(shape)
    conv = _trained_like_conv(cls, shape, 5, 3, strides=2, padding="same")
    layer = cls.from_conv(conv, rank=64, factorization=factorization)
    np.testing.assert_allclose(layer(x), conv(x), atol=1e-5)
    assert layer.strides == conv.strides
    reconstructed = cls.from_conv(conv, rank=64, factorization=factorization, execution="reconstructed")
    np.testing.assert_allclose(reconstructed(x), conv(x), atol=1e-5)


def test_from_conv_cp_error_decreases_with_rank():
    conv = _trained_like_conv(FactorizedConv2D, (1, 6, 6, 3), 3, 3)
    kernel = np.array(conv.kernel)
    errors = []
    for rank in (1, 2, 4, 12, 40):  # 40 is clipped to 27 = size / largest mode
        layer = FactorizedConv2D.from_conv(conv, rank=rank, factorization="cp")
        errors.append(np.linalg.norm(np.array(layer.reconstruct_kernel()) - kernel) / np.linalg.norm(kernel))
    assert all(b <= a + 1e-5 for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 0.3 and errors[-1] < 1e-4, errors
    assert layer.rank == (27,)
    x = helpers.random_input((2, 6, 6, 3))
    np.testing.assert_allclose(layer(x), conv(x), atol=1e-2)


@pytest.mark.parametrize("factorization,rank,execution", CASES_2D + [
    ("cp", 4, "reconstructed"), ("tucker", (3, 5), "reconstructed"), ("tt", (3, 4, 2), "reconstructed")])
def test_tflite_builtins_parity_2d(factorization, rank, execution):
    model = helpers.wrap(FactorizedConv2D(6, 3, rank, factorization, execution, strides=2, seed=0), (10, 10, 4))
    ops = helpers.assert_tflite_parity(model, helpers.random_input((2, 10, 10, 4)))
    if execution == "mobilenet":
        assert "DEPTHWISE_CONV_2D" in ops


@pytest.mark.parametrize("factorization,execution", [("cp", "factorized"), ("cp", "mobilenet"),
                                                          ("tt", "factorized"), ("cp", "reconstructed")])
def test_tflite_builtins_parity_3d(factorization, execution):
    model = helpers.wrap(FactorizedConv3D(4, 3, 3, factorization, execution, seed=0), (5, 6, 6, 3))
    helpers.assert_tflite_parity(model, helpers.random_input((1, 5, 6, 6, 3)))


# The contract per layer; paths and TFLite that test_reference_tf_xla_paths_agree and the TFLite tests
# above already check for a case are not repeated here (paths=False / export=False).
CONTRACT = {
    "tt-2d": (lambda: FactorizedConv2D(6, 3, (2, 3, 2), "tt", strides=2, activation="relu", seed=0), (8, 8, 4), {}),
    "cp-2d": (lambda: FactorizedConv2D(4, 3, 3, "cp", "factorized", seed=0), (8, 8, 3),
              dict(paths=False, export=False)),
    "cp-mobilenet-2d": (lambda: FactorizedConv2D(6, 3, 4, "cp", "mobilenet", seed=0), (8, 8, 4),
                        dict(paths=False, export=False, mixed_train=(False, True))),
    "cp-mobilenet-3d": (lambda: FactorizedConv3D(3, 3, 2, "cp", "mobilenet", seed=0), (5, 6, 4, 2),
                        dict(paths=False, export=False, train=())),
    "tucker-3d": (lambda: FactorizedConv3D(4, 3, (2, 3), "tucker", seed=0), (4, 6, 6, 3), dict(train=(True,))),
}


@pytest.mark.parametrize("case", list(CONTRACT))
def test_layer_contract(case, tmp_path):
    make, shape, options = CONTRACT[case]
    run_layer_test(make, shape, tmp_path, rtol=1e-4, **options)


def test_compute_macs():
    shape = (None, 16, 12, 8)
    cp = FactorizedConv2D(10, 3, 4, "cp", strides=2)
    # 1x1 at 16x12, k along H at 8x12, k along W at 8x6, 1x1 at 8x6
    assert cp.compute_macs(shape) == 16 * 12 * 8 * 4 + 8 * 12 * 3 * 4 + 8 * 6 * 3 * 4 + 8 * 6 * 4 * 10
    mobile = FactorizedConv2D(10, 3, 4, "cp", "mobilenet", strides=2)
    assert mobile.compute_macs(shape) == 16 * 12 * 8 * 4 + 8 * 6 * 9 * 4 + 8 * 6 * 4 * 10
    tucker = FactorizedConv2D(10, 3, (4, 5), "tucker")
    assert tucker.compute_macs(shape) == 16 * 12 * (8 * 4 + 9 * 4 * 5 + 5 * 10)
    tt = FactorizedConv2D(10, 3, (4, 5, 6), "tt")
    assert tt.compute_macs(shape) == 16 * 12 * (8 * 4 + 3 * 4 * 5 + 3 * 5 * 6 + 6 * 10)
    full = FactorizedConv2D(10, 3, 4, "cp", "reconstructed", padding="valid")
    assert full.compute_macs(shape) == 14 * 10 * 9 * 8 * 10
    assert FactorizedConv3D(2, 3, 2, "tt").compute_macs((1, 4, 4, 4, 1)) == 64 * (2 + 3 * 2 * 2 * 3 + 2 * 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rank=0), "rank"),
    (dict(rank=(2, 3)), "rank"),
    (dict(rank=(2, 3), factorization="tt"), "rank"),
    (dict(factorization="svd"), "factorization"),
    (dict(implementation="slow"), "implementation"),
    (dict(execution="fast"), "execution"),
    (dict(factorization="tucker", rank=2, execution="mobilenet"), "execution"),
    (dict(seed=1.5), "seed"),
    (dict(filters=0), "filters"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(padding="causal"), "padding"),
    (dict(strides=2, dilation_rate=2), "dilation_rate"),
])
def test_invalid_arguments(kwargs, match):
    args = dict(filters=4, kernel_size=3, rank=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FactorizedConv2D(**args)


def test_from_conv_rejects_wrong_layer():
    with pytest.raises(ValueError, match="conv_layer"):
        FactorizedConv2D.from_conv(keras.layers.Dense(3), rank=2)
    conv = keras.layers.Conv3D(2, 3)
    conv.build((None, 4, 4, 4, 2))
    with pytest.raises(ValueError, match="conv_layer"):
        FactorizedConv2D.from_conv(conv, rank=2)


def test_old_config_with_execution_in_implementation_loads():
    """Configs saved when `implementation` named the execution still load, with the standard policy."""
    config = FactorizedConv2D(4, 3, 2, "cp", "mobilenet").get_config()
    config.pop("execution")
    config["implementation"] = "mobilenet"
    layer = FactorizedConv2D.from_config(config)
    assert (layer.execution, layer.implementation) == ("mobilenet", "auto")


@pytest.mark.parametrize("execution", ["factorized", "mobilenet", "reconstructed"])
def test_reference_policy_runs_one_dense_conv(execution):
    """implementation="reference" is the obviously right path (one conv with the rebuilt kernel) and equals the fast one."""
    x = helpers.random_input((2, 7, 7, 3))
    fast = FactorizedConv2D(4, 3, 2, "cp", execution, seed=0)
    reference = FactorizedConv2D(4, 3, 2, "cp", execution, seed=0, implementation="reference")
    y = fast(x)
    np.testing.assert_allclose(reference(x), y, atol=1e-5)
    assert (fast.resolved_implementation, reference.resolved_implementation) == ("tf", "reference")
