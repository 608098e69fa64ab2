"""Models for training: the registry's models behind a pixel-rescaling layer, DemoCNN, `.keras` loading."""

import json
import os
import zipfile

import keras
import numpy as np

from keras_effconv.applications import registry

# Models that normalise pixels themselves (keras.applications.EfficientNet* include a Rescaling).
_RAW_PIXEL_MODELS = ("EfficientNet",)


def demo_cnn(input_shape=(32, 32, 3), classes=10, weights=None, **kwargs):
    """A small plain CNN (~0.1 M params): the default of `effconv train`, quick to train in tests."""
    if weights is not None:
        raise ValueError(f"DemoCNN has no pretrained weights; received weights={weights!r}")
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        for j in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{i}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{i}_{j}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="DemoCNN")


LOCAL_MODELS = {"DemoCNN": demo_cnn}
DEMO_MODEL = "EffResNet20"  # what `effconv demo` trains by default


def model_names():
    """Registered model names plus the models defined here (DemoCNN)."""
    return sorted(set(registry.available_models()) | set(LOCAL_MODELS))


def build_model(name, input_shape, num_classes, rescale="auto"):
    """`get_model(name, weights=None, input_shape=..., classes=...)` behind a pixel-rescaling layer.

    rescale: "auto" (to [-1, 1], except for models that rescale themselves), "symmetric" ([-1, 1]),
    "unit" ([0, 1]) or "none". The returned model takes float RGB pixels in [0, 255].
    """
    input_shape = tuple(int(v) for v in input_shape)
    kwargs = dict(weights=None, input_shape=input_shape, classes=int(num_classes))
    if name in LOCAL_MODELS and name not in registry.available_models():
        base = LOCAL_MODELS[name](**kwargs)
    elif name in registry.available_models():
        base = registry.get_model(name, **kwargs)
    else:
        raise ValueError(f"Unknown model name={name!r}; available: {', '.join(model_names())}")
    if rescale == "auto":
        rescale = "none" if name.startswith(_RAW_PIXEL_MODELS) else "symmetric"
    inputs = keras.Input(input_shape, name="pixels")
    if rescale == "symmetric":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    elif rescale == "unit":
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    elif rescale == "none":
        x = inputs
    else:
        raise ValueError(f"`rescale` must be auto, symmetric, unit or none; received rescale={rescale!r}")
    return keras.Model(inputs, base(x), name=name)


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
