"""The keras.applications models the Eff models are compared with, on the same factory shape.

`get_model("ResNet50", ...)` builds `keras.applications.ResNet50(weights=None)` behind the package's
input contract (raw RGB in [0, 255], normalised inside), so that training, export and benchmarks treat
every model alike; it takes the same `weights=` values as the Eff factories (presets, files, URLs) and
declares its feature levels. EfficientNetB0 keeps keras' own in-model normalisation.
"""

import keras

from keras_effconv.applications import _builder


def _body(x, *, include_top, pooling, classes, classifier_activation, application):
    model = getattr(keras.applications, application)(
        include_top=include_top, weights=None, input_tensor=x, input_shape=tuple(x.shape[1:]), pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
    )
    return model.output


def _resnet_levels(blocks):
    return {f"C{stage}": f"conv{stage}_block{count}_out" for stage, count in zip((2, 3, 4, 5), blocks)}


_VGG_LEVELS = {f"C{stage}": f"block{stage}_pool" for stage in (2, 3, 4, 5)}
_MOBILENET_V2_LEVELS = {"C2": "block_2_add", "C3": "block_5_add", "C4": "block_12_add", "C5": "out_relu"}
_MOBILENET_LEVELS = {"C2": "conv_pw_3_relu", "C3": "conv_pw_5_relu", "C4": "conv_pw_11_relu", "C5": "conv_pw_13_relu"}

TWINS = {  # name -> feature levels
    "ResNet50": _resnet_levels((3, 4, 6, 3)),
    "ResNet101": _resnet_levels((3, 4, 23, 3)),
    "ResNet152": _resnet_levels((3, 8, 36, 3)),
    "VGG16": _VGG_LEVELS,
    "VGG19": _VGG_LEVELS,
    "MobileNet": _MOBILENET_LEVELS,
    "MobileNetV2": _MOBILENET_V2_LEVELS,
    "EfficientNetB0": None,
}

for _name, _levels in TWINS.items():
    _builder.make_factory(
        _name, _body, application=_name, feature_levels=_levels, self_normalising=_name.startswith("EfficientNet"),
        doc=f"`keras.applications.{_name}(weights=None)` behind the package's input contract.",
    )
