"""The fine-tuning recipe: the head trains with a frozen backbone; unfreezing keeps BN in inference mode."""

import importlib.util
import pathlib

import numpy as np
import pytest

from keras_effconv import data as data_lib

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "fine_tune.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("fine_tune", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # EffResNet18 (BN nested in SIC layers): the DemoCNN test below covers the path by default
def test_fine_tune_freezes_then_unfreezes_with_frozen_batchnorm_stats():
    recipe = _recipe()
    data = data_lib.load("synthetic:64", batch_size=16, image_size=(32, 32), val_split=0.25)
    model, backbone = recipe.build("EffResNet18", None, (32, 32), data.num_classes)
    bn = next(layer for layer in backbone.layers if "bn" in layer.name and hasattr(layer, "moving_mean"))
    stats = np.array(bn.moving_mean)
    kernel = np.array(backbone.get_layer("conv1_conv").kernel)
    history = recipe.fine_tune(model, backbone, data, head_epochs=1, fine_epochs=1)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    assert backbone.trainable
    # Unfrozen: the backbone's weights moved; BatchNorm in inference mode: its statistics did not.
    assert not np.allclose(kernel, np.array(backbone.get_layer("conv1_conv").kernel))
    np.testing.assert_array_equal(stats, np.array(bn.moving_mean))


def test_compare_fine_tunes_a_preset_and_trains_the_same_model_from_scratch(tmp_path):
    """The transfer path on tiny synthetic data: a preset's backbone loads, its BN statistics stay
    frozen while its weights move, and the scratch baseline runs for the same epochs."""
    from keras_effconv import applications

    recipe = _recipe()
    source = applications.DemoCNN(input_shape=(16, 16, 3), classes=5)
    rng = np.random.default_rng(3)
    for w in source.weights:
        w.assign((rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.normal(0, 0.1, w.shape)).astype("float32"))
    preset = applications.save_preset(source, tmp_path / "preset", dataset="synthetic", accuracy=0.5,
                                      accuracy_split="validation", training_command="test")
    assert recipe._image_size("DemoCNN", preset.path, None) == (16, 16)
    data = recipe.small_set("synthetic:80", train_examples=32, val_examples=16, image_size=(16, 16), batch_size=16)
    assert (data.num_train, data.num_validation) == (32, 16)
    result, tuned = recipe.compare("DemoCNN", preset.path, data, (16, 16), head_epochs=1, fine_epochs=1, verbose=0)
    assert result["epochs"] == 2
    for key in ("fine_tuned_val_accuracy", "scratch_val_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    backbone = tuned.get_layer("democnn")
    bn = backbone.get_layer("bn0_0")
    np.testing.assert_array_equal(np.array(bn.moving_mean), np.array(source.get_layer("bn0_0").moving_mean))
    assert not np.allclose(np.array(backbone.get_layer("conv0_0").kernel), np.array(source.get_layer("conv0_0").kernel))
    with pytest.raises(ValueError, match="train_examples"):
        recipe.small_set("synthetic:20", train_examples=30, val_examples=5, image_size=(16, 16))
