"""Fixtures shared by the foundation-layer tests (intra-channel, topological, SIC, bottleneck, EffConv2D).

`run_paths(layer, x, **call_kwargs)` runs one built layer on the reference, "tf" and "xla" paths and
returns, per path, the output and the gradients of a fixed random projection of the output w.r.t.
the input and every trainable weight. It also checks the path each run took (`resolved_implementation`
of the layer and its sublayers), so a fast path that silently fell back to the reference (or the
reverse) fails.
"""

import inspect

import keras
import numpy as np
import pytest
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


@pytest.fixture
def run_paths():
    def run(layer, x, **call_kwargs):
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

    return run


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


@pytest.fixture
def mixed_float16():
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
