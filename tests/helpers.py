"""Checks shared by the layer, model and workflow tests (one copy, used everywhere)."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_effconv.export import LiteRTRunner
from keras_effconv.export import assert_builtins_only
from keras_effconv.export import to_tflite


def wrap(layer, input_shape):
    """A functional model around one layer, for export and training checks."""
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def random_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def assert_keras_roundtrip(model, x, tmp_path, atol=1e-5):
    """`.keras` save/load gives the same outputs and the same config."""
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(x), model(x), atol=atol, rtol=1e-5)
    return restored


def assert_savedmodel_parity(model, x, tmp_path, atol=1e-5):
    """`model.export` (SavedModel) reloads with `tf.saved_model.load` and matches the Keras model."""
    path = os.path.join(str(tmp_path), "saved_model")
    model.export(path, verbose=False)
    reloaded = tf.saved_model.load(path)
    np.testing.assert_allclose(reloaded.serve(tf.constant(x)), model(x), atol=atol, rtol=1e-5)


def assert_tflite_parity(model, x, atol=1e-4):
    """Builtins-only conversion, no Flex/custom op, and LiteRT output within `atol` of Keras."""
    flatbuffer = to_tflite(model)
    ops = assert_builtins_only(flatbuffer)
    np.testing.assert_allclose(LiteRTRunner(flatbuffer)(x), model(x), atol=atol, rtol=1e-4)
    return ops


def assert_trains(model, x, y, jit_compile, loss="mse"):
    """One optimizer step runs (optionally under XLA), gives a finite loss and changes the weights."""
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=jit_compile)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, epochs=1, batch_size=len(x), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.allclose(b, np.array(a)) for b, a in zip(before, model.trainable_weights)]
    assert any(changed), "no trainable weight changed after a training step"


def outputs_and_gradients(layer, x, weights):
    """(outputs, [d loss/d x] + [d loss/d w for w in weights]) for a fixed random projection loss."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * random_input(y.shape, seed=5))
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, [x] + weights)]
