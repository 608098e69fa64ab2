"""Argument validation of the application factories, mirroring keras.applications' checks and messages."""

import warnings

import keras

from keras_effconv.applications.weights import weights_source


def validate_classifier_activation(classifier_activation, weights):
    """Only `None` / `"softmax"` with pretrained top weights (as `keras.applications`)."""
    if weights is None:
        return
    act = keras.activations.get(classifier_activation)
    if act not in {keras.activations.get("softmax"), keras.activations.get(None)}:
        raise ValueError(
            "Only `None` and `softmax` activations are allowed for the `classifier_activation` "
            "argument when using pretrained weights, with `include_top=True`; Received: "
            f"classifier_activation={classifier_activation!r}"
        )


def obtain_input_shape(
    input_shape,
    default_size,
    min_size,
    data_format,
    require_flatten,
    pretrained=False,
    weights_name=None,
):
    """Compute/validate a model's input shape, as `keras.applications`' `obtain_input_shape`.

    Same rules and messages as Keras with `weights="imagenet"` replaced by `pretrained=True`
    (a preset is being loaded): 3 input channels, and with `require_flatten` exactly the default
    shape. `weights_name` is the preset name used in messages.
    """
    weights_name = weights_name or "imagenet"
    if input_shape is not None:
        input_shape = tuple(input_shape)
    if not pretrained and input_shape and len(input_shape) == 3:
        if data_format == "channels_first":
            if input_shape[0] not in {1, 3}:
                warnings.warn(
                    "This model usually expects 1 or 3 input channels. However, it was passed an "
                    f"input_shape with {input_shape[0]} input channels.",
                    stacklevel=3,
                )
            default_shape = (input_shape[0], default_size, default_size)
        else:
            if input_shape[-1] not in {1, 3}:
                warnings.warn(
                    "This model usually expects 1 or 3 input channels. However, it was passed an "
                    f"input_shape with {input_shape[-1]} input channels.",
                    stacklevel=3,
                )
            default_shape = (default_size, default_size, input_shape[-1])
    elif data_format == "channels_first":
        default_shape = (3, default_size, default_size)
    else:
        default_shape = (default_size, default_size, 3)

    if pretrained and require_flatten:
        if input_shape is not None and input_shape != default_shape:
            raise ValueError(
                f"When setting `include_top=True` and loading `{weights_name}` weights, "
                f"`input_shape` should be {default_shape}.  Received: input_shape={input_shape}"
            )
        return default_shape

    if input_shape:
        if len(input_shape) != 3:
            raise ValueError("`input_shape` must be a tuple of three integers.")
        if data_format == "channels_first":
            channels, spatial = input_shape[0], input_shape[1:]
        else:
            channels, spatial = input_shape[-1], input_shape[:2]
        if channels != 3 and pretrained:
            raise ValueError(
                f"The input must have 3 channels; Received `input_shape={input_shape}`"
            )
        if any(s is not None and s < min_size for s in spatial):
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}; Received: "
                f"input_shape={input_shape}"
            )
    elif require_flatten:
        input_shape = default_shape
    elif data_format == "channels_first":
        input_shape = (3, None, None)
    else:
        input_shape = (None, None, 3)

    if require_flatten and None in input_shape:
        raise ValueError(
            "If `include_top` is True, you should specify a static `input_shape`. "
            f"Received: input_shape={input_shape}"
        )
    return input_shape


def validate_application_args(
    model_name,
    weights,
    include_top,
    classes=1000,
    input_shape=None,
    default_size=224,
    min_size=32,
    classifier_activation="softmax",
    require_flatten=None,
    data_format=None,
):
    """The argument checks of a `keras.applications` factory; returns the input shape to build.

    - `weights`: anything `weights.py` accepts (`"imagenet"` without a preset: ValueError
      with guidance).
    - preset + `include_top`: `classes` must equal the preset's classes (1000 for ImageNet).
    - `include_top` + any weights: `classifier_activation` must be `None` or `"softmax"`.
    - input shape as `keras.applications.imagenet_utils.obtain_input_shape`, where loading a
      preset counts as `weights="imagenet"` (3 channels; with `include_top`, exactly the default
      shape, the preset's `config["default_size"]` if set). Paths/URLs are not constrained
      (as in Keras).

    Args:
        require_flatten: whether a static default shape is required (Keras passes
            `include_top`); default `include_top`.
        data_format: default `keras.config.image_data_format()`.

    Returns:
        The input shape tuple (may contain None).
    """
    return validate_source_args(
        model_name, weights_source(model_name, weights, include_top), include_top, classes, input_shape,
        default_size=default_size, min_size=min_size, classifier_activation=classifier_activation,
        require_flatten=require_flatten, data_format=data_format,
    )


def validate_source_args(model_name, source, include_top, classes=1000, input_shape=None, default_size=224,
                         min_size=32, classifier_activation="softmax", require_flatten=None, data_format=None):
    """`validate_application_args` for an already classified `weights.WeightsSource`."""
    if require_flatten is None:
        require_flatten = include_top
    if data_format is None:
        data_format = keras.config.image_data_format()
    if source.pretrained and include_top and classes != source.classes:
        raise ValueError(
            f"If using `weights={source.weights!r}` with `include_top=True`, `classes` should be "
            f"{source.classes}.  Received classes={classes}"
        )
    if include_top:
        validate_classifier_activation(classifier_activation, source.weights)

    return obtain_input_shape(
        input_shape,
        default_size=source.default_size or default_size,
        min_size=min_size,
        data_format=data_format,
        require_flatten=require_flatten,
        pretrained=source.pretrained,
        weights_name=source.name,
    )
