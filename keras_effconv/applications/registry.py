"""Name -> model factory (`get_model`, `effconv train --model NAME`), each Eff model's keras twin,
and each model's default input size.

The twin relation (the keras.applications model an Eff model is compared with) is stored here only:
`register_model(name, factory, twin=...)`, read with `twin_of(name)`; `effconv bench` pairs models
from it. Importing `keras_effconv.applications` registers every family (the keras twins in
`keras_twins.py`).
"""

_FACTORIES = {}
_TWINS = {}
_DEFAULT_SIZES = {}


def register_model(name, factory, twin=None, default_size=None):
    """Register `factory(**kwargs) -> keras.Model` under `name` (keras.applications-style kwargs);
    `default_size`: the input side it is built for (224, or 32 for the CIFAR-size families)."""
    _FACTORIES[name] = factory
    if twin is not None:
        _TWINS[name] = twin
    if default_size is not None:
        _DEFAULT_SIZES[name] = int(default_size)
    return factory


def available_models():
    return sorted(_FACTORIES)


def twin_of(name):
    """The registered keras twin of model `name` (e.g. "EffResNet50" -> "ResNet50"), or None."""
    return _TWINS.get(name)


def default_size(name):
    """The registered default input side of model `name` (e.g. 224, 32 for "ResNet20"), or None."""
    return _DEFAULT_SIZES.get(name)


def get_model(name, **kwargs):
    """Build a registered model, e.g. get_model("EffResNet50", weights=None, input_shape=(64, 64, 3))."""
    if name not in _FACTORIES:
        raise ValueError(f"Unknown model name={name!r}; available: {', '.join(available_models())}")
    return _FACTORIES[name](**kwargs)
