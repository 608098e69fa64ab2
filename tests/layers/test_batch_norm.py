"""FusedBatchNormalization: the fused training step equals Keras' BatchNormalization (outputs, gradients,
moving statistics; float32, mixed_float16, XLA); fused inference equals Keras' and stays out of exports
and XLA; every unsupported case is Keras' own path."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.applications import cifar
from keras_effconv.layers import FusedBatchNormalization
from keras_effconv.ops import batch_norm as bn_ops
from tests import harness
from tests import helpers

SHAPE = (4, 6, 6, 8)


def _input(shape=SHAPE, dtype="float32"):
    return tf.constant(helpers.random_input(shape) * 3.0 + 1.0, dtype)


def _pair(x, implementation="auto", **kwargs):
    """A FusedBatchNormalization and a Keras BatchNormalization with the same random weights and stats."""
    fused = FusedBatchNormalization(implementation=implementation, **kwargs)
    reference = keras.layers.BatchNormalization(**kwargs)
    fused(x), reference(x)
    harness.set_random_batchnorm_stats(fused)
    reference.set_weights(fused.get_weights())
    return fused, reference


def _train_call(layer, x):
    """Output and d loss / d [x, gamma, beta] of one training call (fixed random projection loss)."""
    cotangent = tf.constant(helpers.random_input(x.shape, seed=5))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    return y, tape.gradient(loss, [x, layer.gamma, layer.beta])


def _close(got, want, rtol, what):
    want = np.asarray(want, np.float32)
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max()),
                               err_msg=what)


@pytest.mark.parametrize("affine", [True, False])
def test_fused_op_equals_reference_eagerly_and_in_a_graph(affine):
    x = _input()
    gamma, beta = (tf.constant(np.linspace(0.5, 1.5, 8), tf.float32), tf.constant(np.linspace(-1, 1, 8), tf.float32))
    params = [gamma, beta] if affine else [None, None]

    def run(op):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y, mean, variance = op(x, *params, 1e-3)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x] + ([gamma, beta] if affine else []))
        return [y, mean, variance] + grads

    want = run(bn_ops.batch_norm_train_reference)
    np.testing.assert_allclose(want[2], np.var(np.asarray(x), axis=(0, 1, 2)), rtol=1e-5)  # biased
    for op in (bn_ops.batch_norm_train_fused, tf.function(bn_ops.batch_norm_train_fused)):
        for i, (g, w) in enumerate(zip(run(op), want)):
            _close(g, w, 1e-5, f"result {i}")


def test_paths_agree_in_training(run_paths):
    harness.assert_paths_agree(run_paths(FusedBatchNormalization(), _input(), training=True))


@pytest.mark.parametrize("policy,jit", [("float32", False), ("float32", True), ("mixed_float16", False)])
def test_training_step_equals_keras(policy, jit):
    keras.mixed_precision.set_global_policy(policy)
    try:
        x = _input(dtype=keras.mixed_precision.global_policy().compute_dtype)
        fused, reference = _pair(x, momentum=0.9)
        before = np.array(fused.moving_variance)
        results = []
        for layer in (fused, reference):
            step = tf.function(_train_call, jit_compile=True) if jit else _train_call
            results.append(step(layer, x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert fused.resolved_implementation == ("xla" if jit else "tf")
    (y, grads), (y_ref, grads_ref) = results
    assert y.dtype == y_ref.dtype == x.dtype
    rtol = 2e-3 if policy == "mixed_float16" else 1e-5
    _close(y, y_ref, rtol, "output")
    for name, g, g_ref in zip(("x", "gamma", "beta"), grads, grads_ref):
        _close(g, g_ref, rtol, f"gradient of {name}")
    for name in ("moving_mean", "moving_variance"):
        _close(getattr(fused, name), getattr(reference, name), 1e-6, name)
    assert not np.allclose(fused.moving_variance, before)


def _ops(fn, x):
    return {op.type for op in tf.function(fn).get_concrete_function(x).graph.get_operations()}


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
def test_inference_and_frozen_layers_equal_keras_batchnorm(dtype):
    with harness.mixed_float16_policy() if dtype == "mixed_float16" else contextlib.nullcontext():
        x = _input()
        fused, reference = _pair(x)
        rtol = 1e-5 if dtype == "float32" else 2e-3
        _close(fused(x, training=False), reference(x, training=False), rtol, "inference")
        assert fused(x, training=False).dtype == reference(x, training=False).dtype
        assert fused.resolved_implementation is None
        fused.trainable = reference.trainable = False  # frozen: moving statistics even with training=True
        _close(fused(x, training=True), reference(x, training=True), rtol, "frozen")
        assert fused.resolved_implementation is None


def test_inference_is_fused_on_the_tf_runtime_and_keras_ops_in_exports_and_xla():
    from keras_effconv import implementation

    x = _input()
    fused, reference = _pair(x)
    assert "FusedBatchNormV3" in _ops(lambda t: fused(t, training=False), x)
    with implementation.exporting():
        exported = _ops(lambda t: fused(t, training=False), x)
    assert not any(op.startswith("FusedBatchNorm") for op in exported)
    with implementation.implementation("reference"):
        assert not any(op.startswith("FusedBatchNorm") for op in _ops(lambda t: fused(t, training=False), x))
    xla = tf.function(lambda t: fused(t, training=False), jit_compile=True)
    _close(xla(x), reference(x, training=False), 1e-5, "xla inference")
    assert "FusedBatchNormV3" in _ops(lambda t: fused(t, training=True), x)


@pytest.mark.parametrize("shape,kwargs", [
    ((2, 3, 4, 4, 8), {}),  # 5-D
    ((4, 8, 6, 6), {"axis": 1}),  # channels first
    (SHAPE, {"epsilon": 1e-6}),  # below the fused op's epsilon floor
    (SHAPE, {"renorm": True}),
    (SHAPE, {"implementation": "reference"}),
])
def test_unsupported_cases_fall_back_to_keras(shape, kwargs):
    x = _input(shape)
    fused, reference = _pair(x, **{"momentum": 0.9, **kwargs})
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), rtol=1e-6, atol=1e-6)
    assert fused.resolved_implementation == "reference"
    np.testing.assert_allclose(fused.moving_variance, reference.moving_variance, rtol=1e-6)


def test_config_round_trip_and_subclass(tmp_path):
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-4, implementation="fast", name="bn")
    assert isinstance(layer, keras.layers.BatchNormalization)
    config = layer.get_config()
    assert config["implementation"] == "fast"
    assert FusedBatchNormalization.from_config(config).get_config() == config
    model = helpers.wrap(layer, SHAPE[1:])
    harness.set_random_batchnorm_stats(layer)
    restored = helpers.assert_keras_roundtrip(model, _input(), tmp_path)
    bn = restored.get_layer("bn")
    assert type(bn) is FusedBatchNormalization and bn.implementation == "fast"
    assert [w.path for w in bn.weights] == [w.path for w in layer.weights]


def test_weight_files_are_interchangeable_with_keras_batchnorm(tmp_path):
    """`.weights.h5` keys layers by class name: a Keras-BN model's file loads into the fused one."""
    def model(bn_class):
        inputs = keras.Input(SHAPE[1:])
        y = bn_class(name="b")(keras.layers.Conv2D(8, 1, name="c")(bn_class(name="a")(inputs)))
        return keras.Model(inputs, y)

    source, target = model(keras.layers.BatchNormalization), model(FusedBatchNormalization)
    harness.set_random_batchnorm_stats(source)
    source.save_weights(tmp_path / "model.weights.h5")
    target.load_weights(tmp_path / "model.weights.h5")
    x = _input()
    for a, b in zip(target.weights, source.weights):
        np.testing.assert_array_equal(a, b)
    _close(target(x), source(x), 1e-5, "loaded model")
    assert keras.saving.get_registered_name(type(target.get_layer("a"))) == "keras_effconv>FusedBatchNormalization"


def test_jit_compiled_training_step_uses_the_fused_path():
    layer = FusedBatchNormalization()
    model = helpers.wrap(layer, SHAPE[1:])
    helpers.assert_trains(model, _input(), helpers.random_input(SHAPE, seed=1), jit_compile=True)
    assert layer.resolved_implementation == "xla"
    assert not np.allclose(layer.moving_mean, 0.0)


def test_bad_implementation_is_a_value_error():
    with pytest.raises(ValueError, match="implementation='fused'"):
        FusedBatchNormalization(implementation="fused")


def test_cifar_pair_uses_the_same_fused_batchnorm():
    """ResNet-n's basic block and EffResNet-n's block (shortcut projections included) build the same BN."""
    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, [cifar.basic_block(inputs, 32, 2, "he"), cifar.eff_block(inputs, 40, 2, "eff")])
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 6 and all(type(bn) is FusedBatchNormalization for bn in bns)
