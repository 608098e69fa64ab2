"""The fine-tuning recipe: the head trains with a frozen backbone; unfreezing keeps BN in inference mode."""

import importlib.util
import pathlib

import numpy as np

from keras_effconv import data as data_lib

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "fine_tune.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("fine_tune", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
