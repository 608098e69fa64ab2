"""Multi-scale features (C2..C5) for detection and segmentation heads."""

import keras


def _last_block_name(model, stage):
    names = [layer.name for layer in model.layers if layer.name.startswith(f"conv{stage}_block") and layer.name.endswith("_out")]
    return names[-1] if names else None


def feature_extractor(model, levels=("C2", "C3", "C4", "C5")):
    """A keras.Model mapping the image to the stage outputs `levels` (strides 4, 8, 16, 32).

    Works for EffResNet (outputs ``convK_blockN_out``), EffVGG (``blockK_pool``) and their keras twins.
    Build the backbone with ``include_top=False`` and any input size, e.g.
    ``feature_extractor(EffResNet50(include_top=False, input_shape=(512, 512, 3)))``.
    """
    outputs = []
    for level in levels:
        if level not in ("C2", "C3", "C4", "C5"):
            raise ValueError(f"`levels` entries must be C2..C5; received levels={levels!r}")
        stage = int(level[1])
        name = _last_block_name(model, stage)
        if name is None:
            name = f"block{stage}_pool"
        try:
            outputs.append(model.get_layer(name).output)
        except ValueError:
            raise ValueError(f"Model {model.name!r} has no stage output {name!r} for {level}") from None
    return keras.Model(model.inputs, outputs, name=model.name + "_features")
