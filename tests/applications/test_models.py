"""Every registered model: the factory contract (signature, input contract, round trip, export, jit),
parametrized over the registry so a new model cannot skip it; plus the Eff families' budgets."""

import inspect

import keras
import numpy as np
import pytest

from keras_effconv import applications
from keras_effconv.analysis import count_macs
from tests import helpers

MODELS = applications.available_models()
# One model per family runs each contract check in the default suite (32x32 inputs); every other
# registered model runs the same checks under -m slow, so none can skip them.
FAMILIES = ["EffResNet18", "EffVGG16", "EffResNet20", "ResNet20", "ChannelNetV1", "DemoCNN", "MobileNetV2",
            "MobileNetV2CIFAR", "EffSICNet8"]
FAST = ["EffResNet20", "DemoCNN"]  # + round trip and export (the rest are slow)
FAST_JIT = ["DemoCNN"]  # + an XLA training step: its compile dominates (EffResNet20 ~16 s), the rest are slow


def _split(fast):
    return [*fast, *(pytest.param(n, marks=pytest.mark.slow) for n in MODELS if n not in fast)]


def pixels(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _small(name, **kwargs):
    return applications.get_model(name, input_shape=(32, 32, 3), classes=3, **kwargs)


@pytest.mark.parametrize("name", MODELS)
def test_signature_is_keras_applications_plus_include_preprocessing(name):
    expected = list(inspect.signature(keras.applications.ResNet50).parameters) + ["include_preprocessing"]
    factory = getattr(applications, name, None) or applications.registry._FACTORIES[name]
    assert list(inspect.signature(factory).parameters) == expected


@pytest.mark.parametrize("name", _split(FAMILIES + ["EfficientNetB0"]))
def test_raw_pixel_contract_matches_explicit_normalisation(name):
    """Same weights: the default model on raw pixels == include_preprocessing=False on normalize(pixels)."""
    if name.startswith("EfficientNet"):  # keras' own in-model normalisation: no bare variant
        with pytest.raises(ValueError, match="include_preprocessing=False"):
            _small(name, include_preprocessing=False)
        return
    raw, bare = _small(name), _small(name, include_preprocessing=False)
    assert {"rescaling", "normalization"} <= {layer.name for layer in raw.layers}
    assert not {"rescaling", "normalization"} & {layer.name for layer in bare.layers}
    bare.set_weights(raw.get_weights())
    x = pixels((2, 32, 32, 3))
    expected = bare(applications.normalize(x.copy()))
    np.testing.assert_allclose(raw(x), expected, atol=2e-5, rtol=1e-4)
    assert applications.preprocess_input(x) is x  # a documented pass-through


@pytest.mark.parametrize("name", _split(FAST))
def test_contract_roundtrip_export(name, tmp_path):
    model, x = _small(name), pixels((2, 32, 32, 3))
    helpers.assert_keras_roundtrip(model, x, tmp_path)
    ops = helpers.assert_tflite_parity(model, x)
    assert "FlexRealDiv" not in ops
    helpers.assert_savedmodel_parity(model, x, tmp_path)


@pytest.mark.parametrize("name", _split(FAST_JIT))
def test_contract_trains_under_xla(name):
    model, x = _small(name), pixels((2, 32, 32, 3))
    y = keras.utils.to_categorical(np.arange(len(x)) % 3, 3)
    helpers.assert_trains(model, x, y, jit_compile=True, loss="categorical_crossentropy")


@pytest.mark.parametrize("name", _split(FAMILIES))
def test_include_top_pooling_classes_and_spec(name):
    features = applications.get_model(name, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    assert len(features.output.shape) == 2
    model = _small(name, classifier_activation=None)
    assert model.output.shape == (None, 3)
    spec = applications._builder.spec(model)
    assert spec["factory"] == name and spec["config"]["classes"] == 3 and spec["config"]["input_shape"] == [32, 32, 3]


def test_twins_are_stored_in_the_registry():
    assert applications.twin_of("EffResNet50") == "ResNet50"
    assert applications.twin_of("EffVGG16") == "VGG16"
    assert applications.twin_of("EffResNet20") == "ResNet20"
    assert applications.twin_of("ChannelNetV1") == "MobileNet"
    assert applications.twin_of("ResNet50") is None
    for name in MODELS:
        twin = applications.twin_of(name)
        assert twin is None or twin in MODELS


@pytest.mark.parametrize(
    "name, twin, budget",
    [("EffResNet50", "ResNet50", 0.85e9),  # the 101-layer and VGG twins take ~4x longer to build: slow run
     pytest.param("EffResNet101", "ResNet101", 1.18e9, marks=pytest.mark.slow),
     pytest.param("EffVGG16", "VGG16", 15.47e9 / 42, marks=pytest.mark.slow)],
)
def test_paper_budgets_at_224(name, twin, budget):
    macs = count_macs(applications.get_model(name))
    assert macs <= budget, f"{name}: {macs / 1e9:.3f} G MACs > {budget / 1e9:.3f} G"
    assert count_macs(keras.applications.__dict__[twin](weights=None)) / macs >= 4.5


@pytest.mark.parametrize("depth", [20, pytest.param(32, marks=pytest.mark.slow), pytest.param(56, marks=pytest.mark.slow)])
def test_cifar_eff_models_cost_a_quarter_of_their_twins(depth):
    twin = count_macs(applications.get_model(f"ResNet{depth}"))
    assert twin / count_macs(applications.get_model(f"EffResNet{depth}")) >= 4


@pytest.mark.parametrize("name, widths, steps, macs", [("EffSICNet8", (64, 256, 256), 2, 10.72e6),
                                                        ("EffSICNet11", (96, 256, 512), 3, 28.39e6)])
def test_sic_cifar_nets_layout_and_budget(name, widths, steps, macs):
    """Three pooled stages (32 -> 4x4) of a transition step + SIConv2D(depth=steps - 1) at `widths`."""
    from keras_effconv.layers import SIConv2D

    model = applications.get_model(name)
    assert count_macs(model) == pytest.approx(macs, rel=1e-3)
    assert count_macs(applications.ResNet20()) / count_macs(model) >= (3.5 if name == "EffSICNet8" else 1.4)
    sics = [layer for layer in model.layers if isinstance(layer, SIConv2D)]
    assert [(s.filters, s.depth) for s in sics] == [(w, steps - 1) for w in widths]
    pools = [model.get_layer(f"stage{i}_transition_pool").output.shape[1:] for i in (1, 2, 3)]
    assert [tuple(p) for p in pools] == [(16, 16, 32), (8, 8, widths[0]), (4, 4, widths[1])]  # stem: 32
    assert applications.registry.default_size(name) == 32 and applications.twin_of(name) is None


def test_mobilenet_v2_cifar_budget_layers_and_feature_levels():
    model = applications.MobileNetV2CIFAR()
    assert 25e6 <= count_macs(model) <= 30e6 and model.count_params() < 1e6
    assert model.get_layer("out_relu").output.shape[1:3] == (4, 4)  # 32x32 -> 4x4, strides at stages 3, 4, 6
    core = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization, keras.layers.ReLU,
            keras.layers.Add, keras.layers.InputLayer, keras.layers.Rescaling, keras.layers.Normalization,
            keras.layers.GlobalAveragePooling2D, keras.layers.Dense)
    assert all(isinstance(layer, core) for layer in model.layers)
    assert applications.twin_of("MobileNetV2CIFAR") is None and applications.registry.default_size("ResNet20") == 32
    backbone = applications.MobileNetV2CIFAR(include_top=False, input_shape=(64, 64, 3))
    features = applications.feature_extractor(backbone, levels=("C2", "C3"))
    assert [tuple(o.shape[1:3]) for o in features.outputs] == [(16, 16), (8, 8)]
    with pytest.raises(ValueError, match="declares the feature levels C2, C3 only"):
        applications.feature_extractor(backbone)


def test_deterministic_layer_names_follow_keras():
    names = {layer.name for layer in applications.EffResNet50(input_shape=(64, 64, 3), include_top=False).layers}
    assert {"rescaling", "normalization", "conv1_conv", "pool1_pool", "conv2_block1_1_conv", "conv2_block1_0_conv",
            "conv3_block4_out", "conv5_block3_out"} <= names
    vgg = {layer.name for layer in applications.EffVGG16(input_shape=(32, 32, 3)).layers}  # 224: 100M-weight fc1
    assert {"block1_conv1", "block3_conv3", "block5_pool", "fc1", "fc2", "predictions"} <= vgg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights="imagenet"), "No pretrained ImageNet weights are published yet for EffResNet50"),
        (dict(weights="/no/such/file.weights.h5"), "weights"),
        (dict(include_top=False, input_shape=(16, 16, 3)), "input"),
        (dict(include_top=False, pooling="mean"), "pooling"),
        (dict(classes=0), "classes"),
        (dict(include_preprocessing="yes"), "include_preprocessing='yes'"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        applications.EffResNet50(**kwargs)


def test_grouped_convs_refuse_groups_that_do_not_divide():
    from keras_effconv.applications import resnet

    with pytest.raises(ValueError, match="groups=3"):
        resnet._grouped(64, 64, 3, name="conv2_block1_1_conv")


@pytest.mark.parametrize("name", ["EffResNet18", "EffVGG16", "ChannelNetV1", "MobileNetV2",
                                  pytest.param("EffResNet50", marks=pytest.mark.slow),
                                  pytest.param("ResNet50", marks=pytest.mark.slow)])
def test_feature_extractor_gives_c2_to_c5_from_declared_levels(name):
    backbone = applications.get_model(name, include_top=False, input_shape=(64, 64, 3))
    shapes = [tuple(o.shape[1:3]) for o in applications.feature_extractor(backbone).outputs]
    assert shapes == [(16, 16), (8, 8), (4, 4), (2, 2)]
    c4 = applications.feature_extractor(backbone, levels=("C4",))
    assert [tuple(o.shape[1:3]) for o in c4.outputs] == [(4, 4)]


def test_feature_extractor_errors():
    with pytest.raises(ValueError, match="EffResNet20 declares no feature levels"):
        applications.feature_extractor(applications.EffResNet20(include_top=False))
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="not built by a keras_effconv factory"):
        applications.feature_extractor(plain)
    with pytest.raises(ValueError, match="levels="):
        applications.feature_extractor(applications.DemoCNN(include_top=False), levels=("C6",))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["EffResNet50", "EffVGG16"])
def test_full_size_tflite_parity(name):
    model = applications.get_model(name)
    helpers.assert_tflite_parity(model, pixels((1, 224, 224, 3)), atol=2e-4)
