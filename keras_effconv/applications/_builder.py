"""Plumbing shared by every model family: arguments, inputs, classifier top and weights.

Mirrors keras.applications: same arguments, same validation and messages (`validation.py`), weights
resolved through `weights.py` (keras.utils.get_file with a file hash).
"""

import keras

from keras_effconv.applications import validation
from keras_effconv.applications import weights as weights_lib
from keras_effconv.applications.registry import register_model

POOLINGS = (None, "avg", "max")


def make_input(model_name, weights, include_top, input_tensor, input_shape, classes, pooling,
               classifier_activation, default_size=224, min_size=32):
    """Validate the factory arguments; return (image input tensor, model inputs)."""
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}; received pooling={pooling!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive int; received classes={classes!r}")
    input_shape = validation.validate_application_args(
        model_name, weights, include_top, classes, input_shape, default_size=default_size, min_size=min_size,
        classifier_activation=classifier_activation, require_flatten=include_top,
    )
    if input_tensor is None:
        image = keras.layers.Input(shape=input_shape)
    elif not keras.backend.is_keras_tensor(input_tensor):
        image = keras.layers.Input(tensor=input_tensor, shape=input_shape)
    else:
        image = input_tensor
    inputs = image if input_tensor is None else keras.utils.get_source_inputs(input_tensor)
    return image, inputs


def classifier(x, include_top, pooling, classes, classifier_activation):
    """Global average pooling + dense predictions, or the feature extractor's pooling."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def load_weights(model, model_name, weights, include_top):
    """Load `weights` (None, preset name, path or URL) into `model`."""
    return weights_lib.load_application_weights(model, model_name, weights, include_top)


def make_factory(builder, variant, public_name, twin, classes=1000):
    """A keras.applications-style factory `public_name(include_top=True, weights=None, ...)` that
    calls `builder(variant, ...)`, registered in the model registry."""
    def factory(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=classes, classifier_activation="softmax", name=None):
        return builder(variant, include_top, weights, input_tensor, input_shape, pooling, classes,
                       classifier_activation, name or public_name.lower())

    factory.__name__ = factory.__qualname__ = public_name
    factory.__doc__ = f"""Instantiates {public_name}; arguments as `keras.applications.{twin}`.

    weights: None (random initialization; the default, since no ImageNet weights are published yet),
    a preset name registered with `keras_effconv.applications.weights.register_preset`, or the path
    or http(s)/file URL of a `.weights.h5` file.
    """
    return register_model(public_name, factory)
