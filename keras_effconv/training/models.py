"""Models for training: the registry's factory models (raw RGB in, normalised inside), `.keras` loading."""

import json
import os
import zipfile

import keras
import numpy as np

from keras_effconv.applications import registry

DEMO_MODEL = "EffResNet20"  # what `effconv demo` trains by default


def demo_cnn(input_shape=(32, 32, 3), classes=10, **kwargs):
    """`keras_effconv.applications.DemoCNN`: the default of `effconv train`, quick to train in tests."""
    from keras_effconv.applications import DemoCNN

    return DemoCNN(input_shape=input_shape, classes=classes, **kwargs)


# Models trained by name without being in the registry (tests add small ones here); everything the
# package ships, DemoCNN included, is in `keras_effconv.applications`' registry.
LOCAL_MODELS = {}


def model_names():
    """The registered model names (`keras_effconv.applications.available_models`) plus LOCAL_MODELS."""
    return sorted(set(registry.available_models()) | set(LOCAL_MODELS))


def build_model(name, input_shape, num_classes, weights=None):
    """`get_model(name, weights=..., input_shape=..., classes=...)`: the factory's model as it is.

    Nothing wraps it: like every factory model it takes RGB pixels in [0, 255] and normalises them
    inside (`include_preprocessing=True`), so a checkpoint loads into the bare factory and into presets.
    """
    kwargs = dict(weights=weights, input_shape=tuple(int(v) for v in input_shape), classes=int(num_classes))
    if name in LOCAL_MODELS:
        return LOCAL_MODELS[name](**kwargs)
    if name not in registry.available_models():
        raise ValueError(f"Unknown model name={name!r}; available: {', '.join(model_names())}")
    return registry.get_model(name, **kwargs)


def outputs_are_probabilities(model):
    """True if the model ends in a softmax (rows of a random batch are non-negative and sum to 1)."""
    x = np.random.default_rng(0).uniform(0, 255, (2,) + tuple(model.input_shape[1:])).astype("float32")
    y = np.asarray(model(x, training=False))
    return bool(np.all(y >= 0) and np.allclose(y.sum(-1), 1.0, atol=1e-3))


def load_model(path):
    """Load a `.keras` file, uncompiled (`import keras_effconv` has registered the custom layers).

    A missing file raises FileNotFoundError; a file that is not a readable `.keras` archive (corrupt,
    truncated, another format) raises ValueError naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path!r}")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        kind = "a folder" if os.path.isdir(path) else "not a zip archive: corrupt, truncated or another format"
        raise ValueError(f"{path!r} is not a readable .keras model file ({kind})")
    try:
        return keras.saving.load_model(path, compile=False)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, json.JSONDecodeError, ValueError) as error:
        raise ValueError(f"cannot load the .keras model {path!r}: {type(error).__name__}: {error}") from None


def compile_for_eval(model, label_smoothing=0.0):
    from_logits = not outputs_are_probabilities(model)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
    return model
