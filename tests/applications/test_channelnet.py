"""ChannelNetV1: small-input forward, round trip, TFLite parity, argument checks; the 224x224
parameter/MAC budget (build only, no forward pass)."""

import keras
import numpy as np
import pytest

from keras_effconv.applications.channelnet import ChannelNetV1
from keras_effconv.layers.channelnets import GroupChannelWiseConv
from tests import helpers


@pytest.fixture(scope="module")
def small():
    return ChannelNetV1(input_shape=(64, 64, 3), classes=10)


def test_forward(small):
    x = helpers.random_input((2, 64, 64, 3))
    y = np.asarray(small(x))
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert sum(isinstance(layer, GroupChannelWiseConv) for layer in small.layers) == 2


def test_keras_roundtrip_and_tflite(small, tmp_path):
    x = helpers.random_input((2, 64, 64, 3))
    helpers.assert_keras_roundtrip(small, x, tmp_path)
    helpers.assert_tflite_parity(small, x)


def test_paper_budget_at_224():
    """Paper: 3.7M parameters. MACs: see the module docstring for the 407M vs 468.5M gap."""
    model = ChannelNetV1()
    assert model.output_shape == (None, 1000)
    assert abs(model.count_params() - 3.7e6) < 0.05e6
    try:
        from keras_effconv.analysis import count_macs
    except ImportError:
        pytest.skip("keras_effconv.analysis.count_macs is not available")
    assert abs(count_macs(model) - 468.5e6) < 1e6  # 468,488,704 with the counting rules of today


def test_headless_pooling_and_input_tensor():
    inputs = keras.Input((32, 32, 3))
    model = ChannelNetV1(include_top=False, input_tensor=inputs, pooling="max")
    assert model.output_shape == (None, 1024)
    assert ChannelNetV1(include_top=False, input_shape=(64, 64, 3)).output_shape == (None, 2, 2, 1024)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weights="imagenet"), "weights='imagenet'"),
        (dict(classes=0), "classes=0"),
        (dict(pooling="sum", include_top=False), "pooling='sum'"),
        (dict(input_shape=(16, 16, 3)), "input_shape"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChannelNetV1(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_training_step(jit_compile):
    model = ChannelNetV1(input_shape=(64, 64, 3), classes=10)
    x = helpers.random_input((4, 64, 64, 3))
    y = np.eye(10, dtype="float32")[[0, 1, 2, 3]]
    helpers.assert_trains(model, x, y, jit_compile=jit_compile, loss="categorical_crossentropy")


def test_registered():
    from keras_effconv.applications import available_models
    from keras_effconv.applications import get_model

    assert "ChannelNetV1" in available_models()
    assert get_model("ChannelNetV1", input_shape=(32, 32, 3), classes=3).output_shape == (None, 3)
