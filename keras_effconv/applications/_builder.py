"""The one factory shape shared by every model family.

A family module writes a *body*, `body(x, *, include_top, pooling, classes, classifier_activation,
**block_config) -> outputs` (most end with `classifier`), and declares its feature levels; then
`make_factory(public_name, body, ...)` gives the keras.applications-style factory

    Name(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
         classes=None, classifier_activation="softmax", name=None, include_preprocessing=True)

which validates the arguments (`validation.py`, keras' checks and messages), builds the input and the
in-model normalisation (`imagenet_utils.preprocessing_layers`), calls the body with keywords, records
the build on the model (`spec`: factory, rebuild kwargs, feature levels; read by `save_preset` and
`feature_extractor`), loads `weights` (`weights.py` / `presets.py`) and registers the factory.
"""

import keras

from keras_effconv.applications import imagenet_utils
from keras_effconv.applications import validation
from keras_effconv.applications import weights as weights_lib
from keras_effconv.applications.registry import register_model

POOLINGS = (None, "avg", "max")
SPEC_ATTRIBUTE = "_keras_effconv_spec"


def spec(model):
    """What the factory recorded on `model`: {"factory", "config", "feature_levels"}, or None."""
    return getattr(model, SPEC_ATTRIBUTE, None)


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


def _check_common(pooling, classes, include_preprocessing):
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}; received pooling={pooling!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive int; received classes={classes!r}")
    if not isinstance(include_preprocessing, bool):
        raise ValueError(
            f"`include_preprocessing` must be True or False; received include_preprocessing={include_preprocessing!r}"
        )


def _make_input(input_tensor, input_shape):
    if input_tensor is None:
        return keras.layers.Input(shape=input_shape), None
    if not keras.backend.is_keras_tensor(input_tensor):
        image = keras.layers.Input(tensor=input_tensor, shape=input_shape)
        return image, image
    return input_tensor, input_tensor


def _activation_name(activation):
    if activation is None or isinstance(activation, str):
        return activation
    return keras.activations.serialize(activation)


def build(model_name, body, *, feature_levels, default_classes, default_size, min_size, block_config,
          self_normalising, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name,
          include_preprocessing):
    """Validate, build `body` behind the input contract, record the spec and load `weights`."""
    source = weights_lib.weights_source(model_name, weights, include_top)
    if classes is None:  # keras-hub: a preset decides the class count unless the caller does
        classes = source.classes if source.classes is not None and include_top else default_classes
    _check_common(pooling, classes, include_preprocessing)
    if self_normalising and not include_preprocessing:
        raise ValueError(f"{model_name} always normalises its input inside (its own layers); "
                         f"received include_preprocessing={include_preprocessing!r}")
    input_shape = validation.validate_source_args(
        model_name, source, include_top, classes, input_shape, default_size=default_size, min_size=min_size,
        classifier_activation=classifier_activation,
    )
    image, tensor = _make_input(input_tensor, input_shape)
    x = imagenet_utils.preprocessing_layers(image) if include_preprocessing and not self_normalising else image
    outputs = body(x, include_top=include_top, pooling=pooling, classes=classes,
                   classifier_activation=classifier_activation, **block_config)
    inputs = image if tensor is None else keras.utils.get_source_inputs(tensor)
    model = keras.Model(inputs, outputs, name=name or model_name.lower())
    levels = feature_levels(**block_config) if callable(feature_levels) else feature_levels
    setattr(model, SPEC_ATTRIBUTE, {
        "factory": model_name,
        "config": {
            "include_top": include_top, "input_shape": list(image.shape[1:]), "pooling": pooling,
            "classes": classes, "classifier_activation": _activation_name(classifier_activation),
            "include_preprocessing": include_preprocessing,
        },
        "feature_levels": dict(levels) if levels else None,
    })
    source.load(model, include_top)
    return model


def make_factory(public_name, body, *, twin=None, classes=1000, default_size=224, min_size=32,
                 feature_levels=None, self_normalising=False, doc=None, **block_config):
    """Register and return the factory `public_name(...)` that builds `body` with `block_config`.

    feature_levels: {"C2": layer name, ...} (or a function of `block_config` returning it): the stage
    outputs `feature_extractor` gives; None for a family without them.
    twin: the keras.applications model it is compared with (stored in the registry only).
    self_normalising: the body normalises raw pixels itself (keras' EfficientNet): no layers added.
    """
    default_classes = classes

    def factory(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", name=None, include_preprocessing=True):
        return build(
            public_name, body, feature_levels=feature_levels, default_classes=default_classes,
            default_size=default_size, min_size=min_size, block_config=block_config,
            self_normalising=self_normalising, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
            pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
            include_preprocessing=include_preprocessing,
        )

    factory.__name__ = factory.__qualname__ = public_name
    factory.__doc__ = (doc or f"Instantiates {public_name}.") + f"""

    Arguments as `keras.applications` factories, plus `include_preprocessing`:
    include_preprocessing: True (default): the model takes RGB pixels in [0, 255] and normalises them
        inside (layers `rescaling`, `normalization`); False: feed it `normalize(images)`.
    weights: None (random initialization), a built-in preset name (`effconv presets` lists them), a
        preset directory (`save_preset`), a `.weights.h5` path, or an http(s)/file URL.
    classes: default {default_classes}, or the preset's class count when loading a preset with the top.
    """
    return register_model(public_name, factory, twin=twin, default_size=default_size)
