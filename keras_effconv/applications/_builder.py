"""Plumbing shared by every model family: inputs, classifier top, pooling and weights.

Mirrors keras.applications: same arguments, same validation and messages, weights resolved through
`keras_effconv.applications.weights` (keras.utils.get_file with a file hash).
"""

import keras
from keras.src.applications import imagenet_utils as keras_imagenet_utils
from keras.src.utils import file_utils

POOLINGS = (None, "avg", "max")


def check_args(weights, include_top, classes, pooling, classifier_activation):
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}; received pooling={pooling!r}")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"`classes` must be a positive int; received classes={classes!r}")
    if weights is not None and not isinstance(weights, str):
        raise ValueError(
            "`weights` must be None (random initialization), a preset name, or the path or URL of a weights "
            f"file; received weights={weights!r}"
        )
    del include_top, classifier_activation  # checked against presets in `weights.resolve`


def make_input(input_tensor, input_shape, default_size, min_size, include_top, weights):
    """(image input tensor, model inputs) as keras.applications does it."""
    input_shape = keras_imagenet_utils.obtain_input_shape(
        input_shape, default_size=default_size, min_size=min_size, data_format="channels_last",
        require_flatten=include_top, weights=None if weights is None or file_utils.exists(weights) else "imagenet",
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
        keras_imagenet_utils.validate_activation(classifier_activation, None)
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def load_weights(model, model_name, weights, include_top, classes):
    """Load `weights` (None, preset name, path or URL) into `model` (see applications.weights)."""
    if weights is None:
        return model
    from keras_effconv.applications import weights as weights_lib

    path = weights_lib.resolve_weights(model_name, weights, include_top)
    weights_lib.load_model_weights(model, path)
    return model
