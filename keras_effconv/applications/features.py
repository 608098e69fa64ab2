"""Multi-scale features (C2..C5) for detection and segmentation heads."""

import keras

from keras_effconv.applications import _builder

LEVELS = ("C2", "C3", "C4", "C5")


def feature_extractor(model, levels=LEVELS):
    """A keras.Model mapping the image to the stage outputs `levels` (strides 4, 8, 16, 32).

    The layers come from the feature levels the factory declared and recorded on `model` (EffResNet:
    ``convK_blockN_out``, EffVGG: ``blockK_pool``, ChannelNetV1, the keras twins); a family without
    them (CIFAR ResNets, DemoCNN), a level it does not declare (MobileNetV2CIFAR has C2, C3 only) or a
    model not built by a factory gives a ValueError. Build the
    backbone with ``include_top=False`` and any input size, e.g.
    ``feature_extractor(EffResNet50(include_top=False, input_shape=(512, 512, 3)))``.
    """
    if isinstance(levels, str) or any(level not in LEVELS for level in levels):
        raise ValueError(f"`levels` entries must be C2..C5; received levels={levels!r}")
    spec = _builder.spec(model)
    if spec is None:
        raise ValueError(
            f"model={model.name!r} was not built by a keras_effconv factory in this process (a model loaded "
            "from a file does not carry its feature levels); build the backbone with its factory"
        )
    declared = spec["feature_levels"]
    if not declared:
        raise ValueError(f"{spec['factory']} declares no feature levels (C2..C5); received model={model.name!r}")
    missing = [level for level in levels if level not in declared]
    if missing:  # a CIFAR-size family stops at a smaller stride (MobileNetV2CIFAR: C2, C3)
        raise ValueError(f"{spec['factory']} declares the feature levels {', '.join(declared)} only; "
                         f"received levels={tuple(levels)!r}")
    return keras.Model(model.inputs, [model.get_layer(declared[level]).output for level in levels],
                       name=model.name + "_features")
