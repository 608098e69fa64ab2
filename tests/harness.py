"""The shared layer-test harness (in the way keras-hub's `run_layer_test` collapses per-file copies).

`run_layer_test(make_layer, input_shape, tmp_path)` checks the contract every layer of the package
meets: complete config and `from_config`; reference, "tf" and "xla" paths with equal outputs and
gradients (and each run took the path it should: `resolved_implementation`); `.keras` round trip (same
outputs, same layer config), SavedModel and builtins-only TFLite parity (it returns the TFLite op names
for further checks); a training step eagerly and under XLA; mixed_float16 (float16 outputs close to
float32, float32 variables, optionally training steps). The pieces are usable alone (`run_paths`,
`assert_paths_agree`, `assert_config_complete`, ...).
"""

import contextlib
import inspect
import json

import keras
import numpy as np
import tensorflow as tf

from keras_effconv import implementation as impl
from tests import helpers

PATHS = ("reference", "tf", "xla")


def _forward_and_grads(layer, x, cotangent, call_kwargs):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    grads = tape.gradient(loss, [x] + list(layer.trainable_weights))
    return y, grads


def _clear_paths(layer):
    for sub in [layer] + list(layer._flatten_layers(include_self=False, recursive=True)):
        if getattr(sub, "resolved_implementation", None) is not None:
            sub.resolved_implementation = None


def run_paths(layer, x, **call_kwargs):
    """Runs one layer on the reference, "tf" and "xla" paths: {path: (output, gradients)} (see module doc)."""
    x = tf.constant(x)
    y = layer(x, **call_kwargs)  # builds the layer
    cotangent = tf.constant(helpers.random_input(y.shape, seed=7))
    results = {}
    for path in PATHS:
        _clear_paths(layer)
        if path == "reference":
            with impl.implementation("reference"):
                y, grads = _forward_and_grads(layer, x, cotangent, call_kwargs)
        elif path == "tf":
            y, grads = _forward_and_grads(layer, x, cotangent, call_kwargs)
        else:
            fn = tf.function(lambda v: _forward_and_grads(layer, v, cotangent, call_kwargs), jit_compile=True)
            y, grads = fn(x)
        seen = set(impl.resolved_implementations(layer).values())
        assert seen == {path}, f"expected only the {path!r} path, the layers took {seen}"
        assert all(g is not None for g in grads), f"missing gradient on the {path!r} path"
        results[path] = (np.asarray(y), [np.asarray(g) for g in grads])
    return results


def assert_paths_agree(results, rtol=1e-5):
    """Outputs and gradients of the fast paths equal the reference within `rtol` (relative to scale)."""
    y_ref, grads_ref = results["reference"]
    for path in ("tf", "xla"):
        y, grads = results[path]
        assert y.shape == y_ref.shape
        np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=rtol * max(1.0, np.abs(y_ref).max()),
                                   err_msg=f"{path} output")
        assert len(grads) == len(grads_ref)
        for i, (g, g_ref) in enumerate(zip(grads, grads_ref)):
            np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=rtol * max(1.0, np.abs(g_ref).max()),
                                       err_msg=f"{path} gradient {i}")


def assert_config_complete(layer):
    """get_config() has every constructor argument and from_config() reproduces the config."""
    config = layer.get_config()
    names = set()
    for cls in type(layer).__mro__:
        if cls is keras.layers.Layer:
            break
        if "__init__" in vars(cls):
            params = inspect.signature(cls.__init__).parameters.values()
            names |= {p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    missing = names - set(config)
    assert not missing, f"get_config() lacks constructor arguments {sorted(missing)}"
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    return clone


@contextlib.contextmanager
def mixed_float16_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def assert_mixed_precision_close(make_layer, x, atol=5e-2, **call_kwargs):
    """Under mixed_float16: runs, outputs float16, close to the float32 layer with the same weights."""
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    half = make_layer()
    y_half = half(x, **call_kwargs)
    assert y_half.dtype == tf.float16
    assert all(w.dtype == "float32" for w in half.weights), "mixed_float16 variables must stay float32"
    keras.mixed_precision.set_global_policy("float32")
    try:
        full = make_layer()
        full(x, **call_kwargs)
        full.set_weights(half.get_weights())
        y_full = np.asarray(full(x, **call_kwargs))
    finally:
        keras.mixed_precision.set_global_policy("mixed_float16")
    y_half = np.asarray(y_half, dtype=np.float32)
    assert np.all(np.isfinite(y_half))
    np.testing.assert_allclose(y_half, y_full, rtol=atol, atol=atol * max(1.0, np.abs(y_full).max()))


def set_random_batchnorm_stats(layer, seed=1):
    """Random gamma/beta/moving stats for every BatchNormalization inside `layer` (so folding matters)."""
    rng = np.random.default_rng(seed)
    count = 0
    layers = [layer] if isinstance(layer, keras.layers.BatchNormalization) else \
        layer._flatten_layers(include_self=False, recursive=True)
    for sub in layers:
        if isinstance(sub, keras.layers.BatchNormalization):
            n = sub.gamma.shape[0]
            sub.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            sub.beta.assign(rng.normal(0, 0.5, n).astype("float32"))
            sub.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            sub.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            count += 1
    assert count, "no BatchNormalization found"
    return count


def _as_saved(config):
    """A config as the .keras file stores it (JSON: tuples become lists)."""
    return json.loads(json.dumps(config))


def run_layer_test(make_layer, input_shape, tmp_path, *, batch=2, call_kwargs=None, rtol=1e-5, paths=True,
                   export=True, train=(False, True), mixed_atol=5e-2, mixed_train=(), batchnorm_stats=False):
    """The layer contract (see module docstring) for the layers `make_layer()` builds on `input_shape`.

    `paths=False` for layers without alternative paths; `mixed_train`: the jit_compile flags of training
    steps under mixed_float16. Returns the TFLite op names (empty set when `export=False`).
    """
    call_kwargs = call_kwargs or {}
    x = helpers.random_input((batch, *input_shape))
    assert_config_complete(make_layer())
    if paths:
        layer = make_layer()
        layer(tf.constant(x), **call_kwargs)
        if batchnorm_stats:
            set_random_batchnorm_stats(layer)
        assert_paths_agree(run_paths(layer, x, **call_kwargs), rtol=rtol)
    layer = make_layer()
    model = helpers.wrap(layer, input_shape)
    if batchnorm_stats:
        set_random_batchnorm_stats(layer)
    restored = helpers.assert_keras_roundtrip(model, x, tmp_path)
    assert _as_saved(restored.layers[-1].get_config()) == _as_saved(layer.get_config())
    ops = set()
    if export:
        helpers.assert_savedmodel_parity(model, x, tmp_path)
        ops = helpers.assert_tflite_parity(model, x)
    for jit_compile in train:
        model = helpers.wrap(make_layer(), input_shape)
        y = helpers.random_input((batch, *model.output.shape[1:]), seed=1)
        helpers.assert_trains(model, x, y, jit_compile)
    if mixed_atol is not None:
        with mixed_float16_policy():
            assert_mixed_precision_close(make_layer, x, atol=mixed_atol, **call_kwargs)
    for jit_compile in mixed_train:
        with mixed_float16_policy():
            layer = make_layer()
        model = helpers.wrap(layer, input_shape)  # float32 model: no loss scaling skipping the one step
        y = helpers.random_input((batch, *model.output.shape[1:]), seed=1)
        helpers.assert_trains(model, x, y, jit_compile)
        assert layer.compute_dtype == "float16"
    return ops
