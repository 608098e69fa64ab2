"""Name -> model factory, for the CLI and the benchmarks (`effconv train --model NAME`)."""

import keras

_FACTORIES = {}


def register_model(name, factory):
    """Register `factory(**kwargs) -> keras.Model` under `name` (keras.applications-style kwargs)."""
    _FACTORIES[name] = factory
    return factory


def available_models():
    return sorted(_FACTORIES)


def get_model(name, **kwargs):
    """Build a registered model, e.g. get_model("EffResNet50", weights=None, input_shape=(64, 64, 3))."""
    if name not in _FACTORIES:
        raise ValueError(f"Unknown model name={name!r}; available: {', '.join(available_models())}")
    return _FACTORIES[name](**kwargs)


# The keras.applications twins that every Eff model is compared against.
for _name in ("ResNet50", "ResNet101", "VGG16", "MobileNetV2", "EfficientNetB0"):
    register_model(_name, getattr(keras.applications, _name))
