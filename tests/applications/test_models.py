"""EffResNet / EffVGG / CIFAR factories: keras.applications API, budgets, export and training."""

import inspect

import keras
import numpy as np
import pytest

from keras_effconv import applications
from keras_effconv.analysis import count_macs
from tests import helpers

IMAGENET = ["EffResNet18", "EffResNet34", "EffResNet50", "EffResNet101", "EffResNet152", "EffVGG16", "EffVGG19"]
CIFAR = ["ResNet20", "ResNet32", "ResNet56", "EffResNet20", "EffResNet32", "EffResNet56"]
# Export, round trip and a jit training step in the default run; the rest are marked slow.
FULL_CHECKS = ["EffResNet20"]  # EffResNet50/101, EffVGG16 (~40-140 s each) run with -m slow


def _factory(name):
    return getattr(applications, name)


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_signature_matches_keras_resnet50(name):
    expected = list(inspect.signature(keras.applications.ResNet50).parameters)
    assert list(inspect.signature(_factory(name)).parameters) == expected


@pytest.mark.parametrize(
    "name, twin, budget",
    [("EffResNet50", "ResNet50", 0.85e9), ("EffResNet101", "ResNet101", 1.18e9), ("EffVGG16", "VGG16", 15.47e9 / 42)],
)
def test_paper_budgets_at_224(name, twin, budget):
    macs = count_macs(_factory(name)())
    assert macs <= budget, f"{name}: {macs / 1e9:.3f} G MACs > {budget / 1e9:.3f} G"
    assert count_macs(getattr(keras.applications, twin)(weights=None)) / macs >= 4.5


def test_cifar_eff_models_cost_a_quarter_of_their_twins():
    for depth in (20, 32, 56):
        twin = count_macs(_factory(f"ResNet{depth}")())
        assert twin / count_macs(_factory(f"EffResNet{depth}")()) >= 4


def test_deterministic_layer_names_follow_keras():
    names = {layer.name for layer in applications.EffResNet50(input_shape=(64, 64, 3), include_top=False).layers}
    assert {"conv1_conv", "pool1_pool", "conv2_block1_1_conv", "conv2_block1_0_conv", "conv3_block4_out",
            "conv5_block3_out"} <= names
    vgg = {layer.name for layer in applications.EffVGG16().layers}
    assert {"block1_conv1", "block3_conv3", "block5_pool", "fc1", "fc2", "predictions"} <= vgg


@pytest.mark.parametrize("name", IMAGENET)
def test_include_top_pooling_and_classes(name):
    factory = _factory(name)
    features = factory(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    assert len(features.output.shape) == 2
    assert factory(include_top=False, input_shape=(64, 64, 3)).output.shape[1:3] == (2, 2)
    model = factory(input_shape=(64, 64, 3), classes=7, classifier_activation=None)
    assert model.output.shape == (None, 7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights="imagenet"), "No pretrained ImageNet weights are published yet for EffResNet50"),
        (dict(weights="/no/such/file.weights.h5"), "weights"),
        (dict(include_top=False, input_shape=(16, 16, 3)), "input"),
        (dict(include_top=False, pooling="mean"), "pooling"),
        (dict(classes=0), "classes"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        applications.EffResNet50(**kwargs)


def test_feature_extractor_gives_c2_to_c5():
    backbone = applications.EffResNet50(include_top=False, input_shape=(64, 64, 3))
    shapes = [tuple(o.shape[1:3]) for o in applications.feature_extractor(backbone).outputs]
    assert shapes == [(16, 16), (8, 8), (4, 4), (2, 2)]
    vgg = applications.feature_extractor(applications.EffVGG16(include_top=False, input_shape=(64, 64, 3)))
    assert [tuple(o.shape[1:3]) for o in vgg.outputs] == [(16, 16), (8, 8), (4, 4), (2, 2)]


def _small(name, **kwargs):
    size = 32
    return _factory(name)(input_shape=(size, size, 3), classes=5, **kwargs), helpers.random_input((2, size, size, 3))


@pytest.mark.parametrize("name", FULL_CHECKS)
def test_export_roundtrip_and_training(name, tmp_path):
    model, x = _small(name)
    helpers.assert_keras_roundtrip(model, x, tmp_path)
    helpers.assert_tflite_parity(model, x)
    helpers.assert_savedmodel_parity(model, x, tmp_path)
    y = keras.utils.to_categorical(np.arange(len(x)) % 5, 5)
    helpers.assert_trains(model, x, y, jit_compile=True, loss="categorical_crossentropy")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(IMAGENET + CIFAR) - set(FULL_CHECKS)))
def test_export_roundtrip_and_training_slow(name, tmp_path):
    test_export_roundtrip_and_training(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["EffResNet50", "EffVGG16"])
def test_full_size_tflite_parity(name):
    model = _factory(name)()
    helpers.assert_tflite_parity(model, helpers.random_input((1, 224, 224, 3)), atol=2e-4)
